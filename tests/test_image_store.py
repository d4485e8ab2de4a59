"""A study owns its images: a padded, content-addressed copy of each, checked on every read."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_study_config
from imagefiles import save
from participants import join, session
from PIL import Image
from sqlalchemy import select, update

from percept.cli import cli
from percept.errors import PerceptError
from stimuli import ingest
from stimuli.demo import make_demo
from stimuli.leaks import served_problems
from stimuli.manifest import MANIFEST, read_manifest
from stimuli.padding import CHUNK_OVERHEAD, pad_png, padded_length, unpad_png
from study_server.db import db
from study_server.imagestore import STORE_MTIME, check_study, restore_study, store_dir
from study_server.models import Image as ImageRow
from study_server.models import Study
from study_server.studies import create_study
from study_server.studyconfig import load_config

# --- Padding ----------------------------------------------------------------------------------


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_padding_keeps_the_pixels_and_comes_off_exactly():
    rng = np.random.default_rng(0)
    noisy = png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    flat = png(np.full((32, 32, 3), 90, dtype=np.uint8))
    length = padded_length([len(noisy), len(flat)])
    assert length == len(noisy) + CHUNK_OVERHEAD
    for original in (noisy, flat):
        padded = pad_png(original, length)
        assert len(padded) == length
        assert unpad_png(padded) == original
        with Image.open(io.BytesIO(padded)) as img:
            img.verify()  # every chunk's CRC, ours included
        with Image.open(io.BytesIO(padded)) as img, Image.open(io.BytesIO(original)) as ref:
            assert np.array_equal(np.asarray(img), np.asarray(ref))
    with pytest.raises(ValueError, match="do not fit"):
        pad_png(noisy, len(noisy) + CHUNK_OVERHEAD - 1)
    with pytest.raises(ValueError, match="already padded"):
        pad_png(pad_png(flat, length), length + 100)
    with pytest.raises(ValueError):
        unpad_png(flat)
    # The audit of served images sees a size that differs, and a padding that carries data.
    padded = {"a": pad_png(noisy, length), "b": pad_png(flat, length), "c": pad_png(flat, length)}
    assert served_problems(padded) == []
    odd = {**padded, "c": pad_png(flat, length + 1)}
    assert [p.path for p in served_problems(odd)] == ["c"]
    smuggled = {**padded, "b": padded["b"][:-40] + b"\x01" + padded["b"][-39:]}
    assert "more than zero bytes" in str(served_problems(smuggled)[0])


# --- The store --------------------------------------------------------------------------------


@pytest.fixture
def own_stimuli(demo_stimuli, tmp_path) -> Path:
    """A copy of the demo set that the test may regenerate, edit or delete."""
    copy = tmp_path / "mine"
    shutil.copytree(demo_stimuli, copy)
    return copy


def create(app, tmp_path: Path, stimdir: Path, **options) -> str:
    path = write_study_config(tmp_path, stimdir, **options)
    with app.app_context():
        slug = create_study(load_config(path)).slug
        db.session.remove()
    return slug


def served_images(app, client) -> dict[str, tuple[int, dict[str, str], bytes]]:
    """Every image of every study as a participant's browser gets it: status, headers, bytes."""
    with app.app_context():
        ids = db.session.scalars(select(ImageRow.public_id).order_by(ImageRow.id)).all()
    seen = {}
    for public_id in ids:
        r = client.get(f"/i/{public_id}.png")
        seen[public_id] = (r.status_code, dict(r.headers), r.data)
    return seen


def test_a_changed_or_deleted_folder_changes_nothing_a_participant_sees(app, tmp_path, own_stimuli):
    create(app, tmp_path, own_stimuli)
    client = app.test_client()
    token = join(client, client_id="before-1").json["token"]
    trials = session(client, token)["trials"]
    before = served_images(app, client)
    assert {status for status, _, _ in before.values()} == {200}

    # Regenerated with another seed: other pixels, other files, same folder.
    make_demo(own_stimuli, seed=7, size=32)
    assert served_images(app, client) == before
    shutil.rmtree(own_stimuli)
    assert served_images(app, client) == before
    # Sign-ups and sessions go on as before.
    assert session(client, token)["trials"] == trials
    assert join(client, client_id="after-1").status_code == 201


def test_every_served_image_of_the_demo_set_has_one_byte_length(app, tmp_path, own_stimuli):
    create(app, tmp_path, own_stimuli, models='"all"')
    client = app.test_client()
    served = served_images(app, client)
    rows = {r["sha256"]: r for r in read_manifest(own_stimuli)}
    with app.app_context():
        images = db.session.execute(select(ImageRow.public_id, ImageRow.sha256)).all()
    assert len(images) == len(rows) == len(served)
    lengths = {len(data) for _, _, data in served.values()}
    assert len(lengths) == 1, sorted(lengths)
    assert {h["Content-Length"] for _, h, _ in served.values()} == {str(lengths.pop())}
    originals = {p.name: p.read_bytes() for p in (own_stimuli / "images").iterdir()}
    raw = {len(data) for data in originals.values()}
    assert max(raw) > 3 * min(raw), "the demo set should differ in size before padding"
    for public_id, sha in images:
        data = served[public_id][2]
        assert unpad_png(data) == originals[f"{sha}.png"]
    assert served_problems({k: v[2] for k, v in served.items()}) == []


def test_a_mixed_size_ingest_is_served_at_one_length(app, tmp_path):
    rng = np.random.default_rng(3)
    # Noise barely compresses, flat colour almost entirely: kilobytes apart before padding.
    for i in range(12):
        save(tmp_path / "in" / "real" / f"r{i}.png", rng.integers(0, 256, (48, 60, 3), np.uint8))
    for i in range(8):
        save(tmp_path / "in" / "flat" / f"f{i}.jpg", np.full((64, 64, 3), 20 * i, np.uint8))
        save(tmp_path / "in" / "noise" / f"n{i}.png", rng.integers(0, 256, (80, 80, 3), np.uint8))
    stimdir = tmp_path / "stim"
    models = {"flat": tmp_path / "in" / "flat", "noise": tmp_path / "in" / "noise"}
    ingest(tmp_path / "in" / "real", models, stimdir, practice=2, catch=3)
    create(app, tmp_path, stimdir, models='["default/flat", "default/noise"]', real=6, fake=4)
    raw = {p.stat().st_size for p in (stimdir / "images").iterdir()}
    assert max(raw) > 5 * min(raw)
    served = served_images(app, app.test_client())
    assert {status for status, _, _ in served.values()} == {200}
    assert len({len(data) for _, _, data in served.values()}) == 1
    with app.app_context():
        result = check_study(db.session.scalar(select(Study)), store_dir())
    assert result.problems == [] and result.length == max(raw) + CHUNK_OVERHEAD


def test_an_edited_manifest_cannot_reach_outside_the_store(app, tmp_path, own_stimuli):
    secret = tmp_path / "elsewhere.png"
    secret.write_bytes(b"not yours")
    manifest = own_stimuli / MANIFEST
    text = manifest.read_text()
    first_sha = read_manifest(own_stimuli)[0]["sha256"]
    manifest.write_text(text.replace(first_sha, "../../elsewhere", 1))
    with pytest.raises(PerceptError, match="audit"):
        create(app, tmp_path, own_stimuli)
    with app.app_context():
        assert db.session.scalar(select(Study)) is None

    manifest.write_text(text)
    create(app, tmp_path, own_stimuli)
    client = app.test_client()
    # Even a database row edited by hand names only files in the store.
    shutil.copy(secret, Path(app.config["IMAGE_STORE"]) / "elsewhere.png")
    with app.app_context():
        public_id = db.session.scalar(select(ImageRow.public_id).limit(1))
        for name in ("../../elsewhere", "elsewhere", "../" + "0" * 61):
            db.session.execute(
                update(ImageRow).where(ImageRow.public_id == public_id).values(served_sha256=name)
            )
            db.session.commit()
            r = client.get(f"/i/{public_id}.png")
            assert (r.status_code, r.json["error"]) == (503, "image_unavailable"), name
            assert b"not yours" not in r.data


def test_a_changed_store_file_is_never_served(app, tmp_path, own_stimuli, caplog):
    create(app, tmp_path, own_stimuli)
    client = app.test_client()
    with app.app_context():
        public_id, served = db.session.execute(
            select(ImageRow.public_id, ImageRow.served_sha256).limit(1)
        ).one()
    path = Path(app.config["IMAGE_STORE"]) / f"{served}.png"
    good = path.read_bytes()
    path.write_bytes(good[:-1] + b"\x00")
    r = client.get(f"/i/{public_id}.png")
    assert (r.status_code, r.json["error"]) == (503, "image_unavailable")
    assert "percept study check" in caplog.text
    path.unlink()
    assert client.get(f"/i/{public_id}.png").status_code == 503
    path.write_bytes(good)
    assert client.get(f"/i/{public_id}.png").data == good


def check(app, *args: str):
    env = {
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "PERCEPT_IMAGE_STORE": app.config["IMAGE_STORE"],
    }
    return CliRunner().invoke(cli, ["study", "check", *args], env=env)


def test_study_check_finds_a_lost_image_and_restores_it(app, tmp_path, own_stimuli):
    create(app, tmp_path, own_stimuli)
    ok = check(app, "t")
    assert ok.exit_code == 0, ok.output
    assert "images are in" in ok.output and "bytes each" in ok.output
    store = Path(app.config["IMAGE_STORE"])
    victim = sorted(store.iterdir())[0]
    victim.unlink()
    lost = check(app, "t")
    assert lost.exit_code == 2 and f"{victim}: missing or changed" in lost.output
    assert check(app, "nope").exit_code == 2
    # A regenerated folder is not the study's: nothing changes.
    other = tmp_path / "other"
    make_demo(other, seed=5, size=32)
    assert check(app, "t", "--restore-from", str(other)).exit_code == 2
    fixed = check(app, "t", "--restore-from", str(own_stimuli))
    assert fixed.exit_code == 0, fixed.output
    assert victim.is_file()


def test_a_study_from_before_the_store_is_restored_into_it(app, tmp_path, own_stimuli):
    create(app, tmp_path, own_stimuli)
    client = app.test_client()
    before = served_images(app, client)
    store = Path(app.config["IMAGE_STORE"])
    shutil.rmtree(store)
    with app.app_context():
        db.session.execute(update(ImageRow).values(served_sha256=None))
        db.session.commit()
        study = db.session.scalar(select(Study))
        result = check_study(study, store)
        assert "created before the image store" in result.problems[0]
        assert {s for s, _, _ in served_images(app, client).values()} == {404}
        restore_study(study, own_stimuli, store)
        assert check_study(study, store).problems == []
    assert served_images(app, client) == before
    assert hashlib.sha256(before[next(iter(before))][2]).hexdigest() in {
        p.stem for p in store.iterdir()
    }


# --- Behind nginx: X-Accel-Redirect ------------------------------------------------------------


def test_behind_nginx_the_app_names_the_file_and_reads_nothing(app, tmp_path, own_stimuli):
    create(app, tmp_path, own_stimuli)
    client = app.test_client()
    before = served_images(app, client)
    store = Path(app.config["IMAGE_STORE"])
    # Every stored file has one modification time: a web server sending the files derives
    # Last-Modified and ETag from it, and when an image was written must not show.
    assert {p.stat().st_mtime for p in store.glob("*.png")} == {STORE_MTIME}
    app.config["IMAGE_ACCEL_PREFIX"] = "/_store/"
    shutil.rmtree(store)  # nginx reads the store; the app does not
    with app.app_context():
        rows = dict(db.session.execute(select(ImageRow.public_id, ImageRow.served_sha256)).all())
    for public_id, (_, headers, data) in before.items():
        r = client.get(f"/i/{public_id}.png")
        assert r.status_code == 200 and r.data == b""
        assert r.headers["X-Accel-Redirect"] == f"/_store/{rows[public_id]}.png"
        assert hashlib.sha256(data).hexdigest() == rows[public_id]
        expected = {k: v for k, v in headers.items() if k != "Content-Length"}
        assert {
            k: v for k, v in r.headers.items() if k not in ("Content-Length", "X-Accel-Redirect")
        } == expected
    assert client.get("/i/nosuchimage000.png").status_code == 404


@pytest.mark.parametrize("prefix", ["_store/", "/_store", "/../etc/", "/a b/"])
def test_a_malformed_accel_prefix_is_refused_at_start(tmp_path, prefix):
    from study_server import create_app

    with pytest.raises(PerceptError, match="IMAGE_ACCEL_PREFIX"):
        create_app(
            {"SQLALCHEMY_DATABASE_URI": "sqlite://", "IMAGE_ACCEL_PREFIX": prefix}, str(tmp_path)
        )
