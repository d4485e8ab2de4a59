"""Pilot then main: `percept study create --pilot`, `percept study copy PILOT NEW [--open]`.

The copy is a main study with the pilot's config under a new slug, serving the pilot's
images from the image store (the stimulus folder may be gone). The export, the
dashboard, `percept study list` and `percept human` name each study's kind. Every test
runs on SQLite and PostgreSQL (the db_url fixture).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil

from click.testing import CliRunner
from conftest import write_study_config
from participants import join, session
from sqlalchemy import func, select
from test_lifecycle import admin_client, audit, finish, percept

from percept.cli import cli
from study_server.db import db
from study_server.models import Generator, Image, Study


def listed(app) -> dict[str, str]:
    """{slug: "[platform, state, kind]"} from `percept study list`."""
    result = percept(app, "study", "list")
    assert result.exit_code == 0, result.output
    return {
        line.split()[0]: line.split("]")[0].split("[")[1] for line in result.output.splitlines()
    }


def stored(app, slug: str) -> dict:
    """The study's kind, state, config, generators and images as stored."""
    with app.app_context():
        study = db.session.scalar(select(Study).where(Study.slug == slug))
        images = db.session.execute(
            select(Image.public_id, Image.sha256, Image.served_sha256, Image.role, Image.source)
            .where(Image.study_id == study.id)
            .order_by(Image.id)
        ).all()
        out = {
            "kind": study.kind,
            "state": study.state,
            "config": study.config,
            "salt": study.salt,
            "models": [(g.name, g.target) for g in study.generators],
            "images": images,
        }
        db.session.remove()
    return out


def test_copy_makes_a_main_study_that_serves_the_pilots_images(app, demo_stimuli, tmp_path):
    # The pilot is made from a folder of its own, deleted before the copy.
    folder = tmp_path / "stimuli"
    shutil.copytree(demo_stimuli, folder)
    config = write_study_config(tmp_path, folder, target=2)
    created = percept(app, "study", "create", str(config), "--pilot")
    assert created.exit_code == 0, created.output
    assert "Pilot study 't' created" in created.output
    assert "percept study copy t NEW-SLUG" in created.output
    client = app.test_client()
    finish(client, join(client, client_id="pilot-1").json["token"])
    shutil.rmtree(folder)

    copied = percept(app, "study", "copy", "t", "main-1")
    assert copied.exit_code == 0, copied.output
    assert "Main study 'main-1' copied from 't' (draft)" in copied.output
    assert listed(app) == {"t": "link, open, pilot", "main-1": "link, draft, main"}
    pilot, main = stored(app, "t"), stored(app, "main-1")
    assert pilot["kind"] == "pilot" and main["kind"] == "main" and main["state"] == "draft"
    assert pilot["config"]["pilot"] is True
    assert main["config"] == {**pilot["config"], "slug": "main-1", "pilot": False}
    assert main["models"] == pilot["models"]
    assert main["salt"] != pilot["salt"]
    # The same images, as served, under new public ids.
    assert [row[1:] for row in main["images"]] == [row[1:] for row in pilot["images"]]
    assert not {row[0] for row in main["images"]} & {row[0] for row in pilot["images"]}
    assert audit(app, "t")[-1] == ("cli", "copy", "main study main-1")
    assert audit(app, "main-1") == [("cli", "create", "draft, copy of t")]

    # A draft takes nobody; opened, it serves every image of a session from the store.
    r = join(client, "main-1", client_id="main-1")
    assert r.status_code == 409 and r.json["error"] == "study_draft", r.json
    assert percept(app, "study", "open", "main-1").exit_code == 0
    r = join(client, "main-1", client_id="main-1")
    assert r.status_code == 201, r.json
    served = {row[0]: row[2] for row in main["images"]}
    trials = session(client, r.json["token"])["trials"]
    for trial in trials:
        image = client.get(trial["image"])
        assert image.status_code == 200, trial["image"]
        public_id = trial["image"].removeprefix("/i/").removesuffix(".png")
        assert hashlib.sha256(image.data).hexdigest() == served[public_id]
    finish(client, r.json["token"])

    # The dashboard names each kind.
    admin = admin_client(app)
    assert '<span class="admin-kind">Pilot</span> study' in admin.get("/admin/studies/t").text
    assert '<span class="admin-kind">Main</span> study' in admin.get("/admin/studies/main-1").text
    index = admin.get("/admin/").text
    assert '(t, <span class="admin-kind">pilot</span>' in index
    assert '(main-1, <span class="admin-kind">main</span>' in index

    # The export says which is which; `percept human` names the kind it analyses.
    export = tmp_path / "export"
    assert percept(app, "export", "--out", str(export)).exit_code == 0
    with open(export / "participants.csv", newline="") as f:
        kinds = {(p["study"], p["study_kind"]) for p in csv.DictReader(f)}
    assert kinds == {("t", "pilot"), ("main-1", "main")}
    assert "`study_kind`" in (export / "data_dictionary.md").read_text()
    quick = ["--resamples", "200", "--no-mixed"]
    for slug, kind in (("t", "pilot"), ("main-1", "main")):
        out = tmp_path / f"human-{slug}"
        human = CliRunner().invoke(
            cli, ["human", str(export), "--study", slug, "--out", str(out), *quick]
        )
        assert human.exit_code == 0, human.output
        assert human.output.splitlines()[0] == f"Study: {slug} ({kind})"
        summary = json.loads((out / "human_summary.json").read_text())
        assert summary["design"]["study_kinds"] == {slug: kind}


def test_copy_open_and_its_refusals(app, make_study):
    make_study()
    opened = percept(app, "study", "copy", "t", "t2", "--open")
    assert opened.exit_code == 0, opened.output
    assert stored(app, "t2")["state"] == "open"
    assert audit(app, "t2") == [("cli", "create", "open, copy of t")]
    assert join(app.test_client(), "t2", client_id="x").status_code == 201

    taken = percept(app, "study", "copy", "t", "t2")
    assert taken.exit_code == 2
    assert "a study called 't2' already exists; choose another slug" in taken.output
    bad = percept(app, "study", "copy", "t", "Not A Slug")
    assert bad.exit_code == 2 and "slug: must be lower-case letters" in bad.output
    unknown = percept(app, "study", "copy", "nope", "t3")
    assert unknown.exit_code == 2 and "no study 'nope'" in unknown.output

    # An image missing from the store: the copy says how to restore it, and writes nothing.
    with app.app_context():
        from study_server.imagestore import store_dir, stored_path

        served = db.session.scalar(select(Image.served_sha256).limit(1))
        stored_path(store_dir(), served).unlink()
        before = db.session.scalar(select(func.count()).select_from(Generator))
        db.session.remove()
    broken = percept(app, "study", "copy", "t", "t3")
    assert broken.exit_code == 2, broken.output
    assert "are not in the image store" in broken.output
    assert "percept study check t --restore-from STIMDIR" in broken.output
    assert "t3" not in listed(app)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Generator)) == before
        db.session.remove()


def test_pilot_in_the_config_marks_a_pilot(app, demo_stimuli, tmp_path):
    path = write_study_config(tmp_path, demo_stimuli)
    path.write_text("pilot = true\n" + path.read_text())
    created = percept(app, "study", "create", str(path))
    assert created.exit_code == 0, created.output
    assert listed(app) == {"t": "link, open, pilot"}
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace("pilot = true", 'pilot = "yes"'))
    refused = percept(app, "study", "create", str(bad))
    assert refused.exit_code == 2 and "pilot: must be true or false" in refused.output
