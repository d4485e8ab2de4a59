"""Feature extraction and its cache: hits, misses, partial reuse, untrusted files, concurrent
runs, corrupt images, and the `percept features` command.

Most tests use the `pixel` encoder (no network: fast); the DataLoader worker
path and the CLI also run the randomly initialised Inception.
"""

from __future__ import annotations

import multiprocessing
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from imagefiles import make_folder, pattern, save
from PIL import Image

import analysis.encoders as enc
import analysis.feature_cache as cache_module
import analysis.features as feat
from analysis.encoders import Encoder, resolve
from analysis.features import (
    CacheWarning,
    FeatureCache,
    cache_key,
    collect_images,
    compute,
    extract,
    load_features,
    save_features,
)
from percept.cli import cli
from percept.errors import PerceptError
from stimuli.manifest import MANIFEST, MANIFEST_COLUMNS, image_path, write_csv


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    # Never the developer's cache or weights; never a download.
    monkeypatch.setenv("PERCEPT_CACHE_DIR", str(tmp_path / "default-cache"))
    monkeypatch.setenv("PERCEPT_WEIGHTS_DIR", str(tmp_path / "weights"))

    def no_network(url, dest):
        raise AssertionError(f"a test tried to download {url}")

    monkeypatch.setattr(enc, "_fetch", no_network)


@pytest.fixture
def images(tmp_path) -> list[Path]:
    return sorted(make_folder(tmp_path / "images", 9, size=(40, 36)).iterdir())


def pixel_rows(paths) -> np.ndarray:
    """The pixel encoder's features computed directly, without extract or its cache."""
    spec = enc.ENCODERS["pixel"]
    return np.stack([spec.preprocess(Image.open(p)).flatten().numpy() for p in paths])


def test_extract_returns_float32_rows_in_input_order(images, tmp_path):
    features = extract("pixel", images, batch_size=4, workers=0, cache_dir=tmp_path / "c")
    assert features.dtype == np.float32 and features.shape == (9, 3072)
    assert np.array_equal(features, pixel_rows(images))
    reversed_ = extract("pixel", images[::-1], batch_size=4, workers=0, cache_dir=False)
    assert np.array_equal(reversed_, features[::-1])


def test_worker_processes_give_the_same_features_as_decoding_in_process(images, tmp_path):
    encoder = resolve("random:inception")
    several = compute(encoder, images[:3], batch_size=2, workers=2, cache_dir=False)
    inline = compute(encoder, images[:3], batch_size=2, workers=0, cache_dir=False)
    assert np.array_equal(several.features, inline.features)
    assert np.array_equal(several.outputs["logits_unbiased"], inline.outputs["logits_unbiased"])
    assert several.features.shape == (3, 2048) and several.encoder == "random:inception"
    assert not several.pretrained and several.weights_id.startswith("random:seed=0")


def test_cache_misses_then_hits(images, tmp_path):
    first = compute("pixel", images, workers=0, cache_dir=tmp_path / "c")
    assert (first.computed, first.cached) == (9, 0)
    again = compute("pixel", images, workers=0, cache_dir=tmp_path / "c")
    assert (again.computed, again.cached) == (0, 9)
    assert np.array_equal(again.features, first.features)


def test_a_run_with_a_few_new_images_computes_only_those(images, tmp_path):
    compute("pixel", images[:6], workers=0, cache_dir=tmp_path / "c")
    more = compute("pixel", images, workers=0, cache_dir=tmp_path / "c")
    assert (more.computed, more.cached) == (3, 6)
    assert np.array_equal(more.features, pixel_rows(images))


def test_a_fully_cached_run_builds_no_network(images, tmp_path, monkeypatch):
    encoder = resolve("random:inception")
    compute(encoder, images[:2], workers=0, cache_dir=tmp_path / "c")

    def no_build():
        raise AssertionError("the network was built although every row was cached")

    again = resolve("random:inception")
    monkeypatch.setattr(again, "module", no_build)
    assert compute(again, images[:2], workers=0, cache_dir=tmp_path / "c").cached == 2


def test_the_same_content_twice_is_computed_once(images, tmp_path):
    copy = tmp_path / "copy.png"
    shutil.copy(images[0], copy)
    result = compute("pixel", [images[0], copy, images[1]], workers=0, cache_dir=tmp_path / "c")
    assert result.computed == 2
    assert np.array_equal(result.features[0], result.features[1])


def test_cache_keys_separate_encoders_weights_and_preprocessing(images, tmp_path):
    pixel = resolve("pixel")
    other_weights = Encoder("pixel", pixel.spec, None, "sha256:" + "b" * 64)
    assert cache_key(pixel) != cache_key(other_weights)
    assert cache_key(resolve("random:inception"))["encoder"] == "random:inception"
    compute(pixel, images[:2], workers=0, cache_dir=tmp_path / "c")
    assert compute(other_weights, images[:2], workers=0, cache_dir=tmp_path / "c").computed == 2
    folders = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert len(folders) == 2 and all(name.startswith("pixel-") for name in folders)


def _only_chunk(cache_root: Path) -> Path:
    [chunk] = [p for p in cache_root.rglob("*.npz")]
    return chunk


@pytest.mark.parametrize("damage", ["truncated", "bytes flipped", "not a zip"])
def test_a_damaged_cache_file_is_detected_removed_and_recomputed(images, tmp_path, damage):
    first = compute("pixel", images[:4], workers=0, cache_dir=tmp_path / "c")
    chunk = _only_chunk(tmp_path / "c")
    data = bytearray(chunk.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "bytes flipped":
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    else:
        data = bytearray(b"this is not what percept wrote")
    chunk.write_bytes(bytes(data))
    with pytest.warns(CacheWarning, match=r"not used, removed; its images are computed again"):
        again = compute("pixel", images[:4], workers=0, cache_dir=tmp_path / "c")
    assert again.computed == 4 and np.array_equal(again.features, first.features)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the damaged file is gone; the new one is trusted
        assert compute("pixel", images[:4], workers=0, cache_dir=tmp_path / "c").cached == 4


def test_a_valid_file_with_altered_values_is_not_trusted(images, tmp_path):
    compute("pixel", images[:3], workers=0, cache_dir=tmp_path / "c")
    chunk = _only_chunk(tmp_path / "c")
    with np.load(chunk) as data:
        arrays = dict(data)
    arrays["out_features"] = arrays["out_features"] + 1  # a well-formed file, wrong numbers
    with open(chunk, "wb") as f:
        np.savez(f, **arrays)
    with pytest.warns(CacheWarning, match="does not match its digest"):
        again = compute("pixel", images[:3], workers=0, cache_dir=tmp_path / "c")
    assert again.computed == 3 and np.array_equal(again.features, pixel_rows(images[:3]))


def test_a_foreign_cache_file_is_not_trusted(images, tmp_path):
    """A chunk of another encoder copied into this key's folder (a stale or foreign file)."""
    pixel = resolve("pixel")
    other = Encoder("pixel", pixel.spec, None, "sha256:" + "c" * 64)
    compute(other, images[:3], workers=0, cache_dir=tmp_path / "c")
    foreign = _only_chunk(tmp_path / "c")
    mine = FeatureCache(tmp_path / "c", cache_key(pixel))
    mine.dir.mkdir(parents=True)
    shutil.copy(foreign, mine.dir / foreign.name)
    with pytest.warns(CacheWarning, match="belongs to other settings"):
        result = compute(pixel, images[:3], workers=0, cache_dir=tmp_path / "c")
    assert result.computed == 3
    assert foreign.exists()  # the other key's own file is untouched


def test_many_small_chunks_are_merged_without_losing_rows(images, tmp_path, monkeypatch):
    monkeypatch.setattr(feat, "MAX_SMALL_CHUNKS", 3)
    for i in range(len(images)):  # one run, one chunk per image
        compute("pixel", [images[i]], workers=0, cache_dir=tmp_path / "c")
    chunks = list((tmp_path / "c").rglob("*.npz"))
    assert 1 <= len(chunks) <= 4
    result = compute("pixel", images, workers=0, cache_dir=tmp_path / "c")
    assert result.cached == 9 and np.array_equal(result.features, pixel_rows(images))


def test_long_runs_write_the_cache_as_they_go(images, tmp_path, monkeypatch):
    monkeypatch.setattr(feat, "FLUSH_ROWS", 4)
    compute("pixel", images, batch_size=2, workers=0, cache_dir=tmp_path / "c")
    rows = []
    for chunk in (tmp_path / "c").rglob("*.npz"):
        with np.load(chunk) as data:
            rows.append(len(data["sha256"]))
    assert sorted(rows) == [1, 4, 4]


def _run_concurrently(args: tuple[list[str], str]) -> int:
    paths, cache = args
    return compute("pixel", paths, batch_size=2, workers=0, cache_dir=cache).computed


def test_concurrent_runs_on_one_cache_leave_it_consistent(tmp_path, monkeypatch):
    paths = [str(p) for p in sorted(make_folder(tmp_path / "many", 40, size=(24, 24)).iterdir())]
    cache = str(tmp_path / "c")
    # Overlapping image sets, many small chunks, merges (MAX_SMALL_CHUNKS is small in the
    # children too: they are forked from this process) all at once.
    monkeypatch.setattr(feat, "FLUSH_ROWS", 3)
    monkeypatch.setattr(feat, "MAX_SMALL_CHUNKS", 2)
    jobs = [(paths[i : i + 20], cache) for i in range(0, 24, 3)] * 2
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_run_concurrently, jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no file any run wrote is found damaged
        result = compute("pixel", paths, workers=0, cache_dir=cache)
    assert result.cached == 40 and np.array_equal(result.features, pixel_rows(paths))
    assert not list(Path(cache).rglob(".tmp-*"))


@pytest.mark.parametrize("workers", [0, 1])
def test_a_corrupt_image_is_one_clear_error_naming_it(images, tmp_path, workers):
    bad = tmp_path / "images" / "zz_bad.png"
    bad.write_bytes(images[0].read_bytes()[:300])  # a truncated PNG
    paths = [*images[:4], bad]
    with pytest.raises(PerceptError) as e:
        compute("pixel", paths, batch_size=2, workers=workers, cache_dir=tmp_path / "c")
    message = str(e.value)
    assert message.startswith(f"{bad}: ") and "truncated or corrupt" in message
    assert "Traceback" not in message and "\n" not in message
    # The rows computed before the bad file are kept.
    assert compute("pixel", images[:4], workers=0, cache_dir=tmp_path / "c").cached == 4


def test_a_missing_image_is_a_clear_error(images, tmp_path):
    with pytest.raises(PerceptError, match=r"nope\.png: file not found"):
        compute("pixel", [images[0], tmp_path / "nope.png"], workers=0, cache_dir=False)


def test_given_sha256s_are_used_and_checked(images, tmp_path, monkeypatch):
    monkeypatch.setattr(feat, "hash_files", lambda paths: pytest.fail("files were hashed"))
    shas = [f"{i:064x}" for i in range(3)]
    result = compute("pixel", images[:3], sha256s=shas, workers=0, cache_dir=tmp_path / "c")
    assert result.sha256 == shas
    with pytest.raises(PerceptError, match="2 SHA-256s given for 3 images"):
        compute("pixel", images[:3], sha256s=shas[:2], workers=0, cache_dir=False)
    with pytest.raises(PerceptError, match="is not a SHA-256"):
        compute("pixel", images[:1], sha256s=["abc"], workers=0, cache_dir=False)


def _stimulus_folder(root: Path, n: int) -> tuple[Path, list[str]]:
    """A minimal stimulus folder: images named by their hash and a manifest."""
    import hashlib

    (root / "images").mkdir(parents=True)
    rows, shas = [], []
    for i in range(n):
        tmp = save(root / f"tmp{i}.png", pattern(32, 32, seed=50 + i))
        sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
        tmp.rename(image_path(root, sha))
        shas.append(sha)
        rows.append(
            dict(
                image_id=sha[:16], sha256=sha, dataset="d", source="real", model="",
                role="main", original_path=f"x{i}.png", width=32, height=32,
            )
        )  # fmt: skip
    write_csv(root / MANIFEST, MANIFEST_COLUMNS, rows)
    return root, shas


def test_stimulus_folders_give_manifest_order_and_hashes(tmp_path, images, monkeypatch):
    stimdir, shas = _stimulus_folder(tmp_path / "stim", 3)
    hashed = []
    real_hash = cache_module.hash_files  # collect_images lives in analysis.feature_cache
    monkeypatch.setattr(
        cache_module, "hash_files", lambda paths: hashed.extend(paths) or real_hash(paths)
    )
    paths, got = collect_images([stimdir, images[0], tmp_path / "images"])
    assert got[:3] == shas and paths[:3] == [str(image_path(stimdir, s)) for s in shas]
    assert paths[3] == str(images[0]) and len(paths) == 3 + 1 + 9
    assert str(image_path(stimdir, shas[0])) not in hashed  # the manifest's hashes are used
    assert str(images[0]) in hashed  # plain files are hashed
    with pytest.raises(PerceptError, match="no image files found"):
        (tmp_path / "empty").mkdir()
        collect_images([tmp_path / "empty"])


def test_feature_files_round_trip(images, tmp_path):
    result = compute("random:inception", images[:2], workers=0, cache_dir=False)
    save_features(result, tmp_path / "f.npz")
    back = load_features(tmp_path / "f.npz")
    assert back.encoder == "random:inception" and not back.pretrained
    assert back.paths == result.paths and back.sha256 == result.sha256
    assert np.array_equal(back.outputs["logits_unbiased"], result.outputs["logits_unbiased"])
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(PerceptError, match="not a features file"):
        load_features(tmp_path / "bad.npz")


def test_no_gpu_is_a_clear_error_and_devices_are_checked(images):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(PerceptError, match="no CUDA GPU is visible"):
        compute("pixel", images[:1], device="cuda", workers=0, cache_dir=False)
    with pytest.raises(PerceptError, match="is not a device name"):
        compute("pixel", images[:1], device="gpu0", workers=0, cache_dir=False)


# --- percept features ---------------------------------------------------------------------------


def invoke(*args: str):
    return CliRunner().invoke(cli, ["features", *map(str, args)])


def test_cli_writes_features_and_says_when_the_encoder_is_random(images, tmp_path):
    out = tmp_path / "out" / "f.npz"
    result = invoke(
        "--encoder", "random:inception", images[0], images[1], "--out", out,
        "--workers", "0", "--cache-dir", tmp_path / "c",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "RANDOMLY INITIALISED" in result.output and "not pretrained" in result.output
    assert "2 images x (features 2048, logits_unbiased 1008)" in result.output
    assert "(2 computed, 0 from the cache)" in result.output
    saved = load_features(out)
    assert saved.features.shape == (2, 2048) and saved.encoder == "random:inception"
    again = invoke("--encoder", "random:inception", images[0], images[1], "--out", out,
                   "--workers", "0", "--cache-dir", tmp_path / "c")  # fmt: skip
    assert "(0 computed, 2 from the cache)" in again.output


def test_cli_reads_stimulus_folders(tmp_path):
    stimdir, shas = _stimulus_folder(tmp_path / "stim", 4)
    out = tmp_path / "f.npz"
    result = invoke("--encoder", "pixel", stimdir, "--out", out, "--no-cache", "--workers", "0")
    assert result.exit_code == 0, result.output
    assert load_features(out).sha256 == shas
    assert not (tmp_path / "default-cache").exists()  # --no-cache writes nothing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--encoder", "dinov3"], "unknown encoder 'dinov3'"),
        (["--encoder", "inception"], "pt_inception-2015-12-05-6726825d.pth"),
        (["--encoder", "pixel", "--weights", "w.pth"], "takes no weight file"),
        (["--encoder", "pixel", "--device", "cuda:7"], "cuda"),
    ],
)
def test_cli_user_errors_are_one_line_and_exit_2(images, tmp_path, args, message):
    if "cuda:7" in args and torch.cuda.device_count() > 7:
        pytest.skip("eight GPUs are visible")
    result = invoke(*args, images[0], "--out", tmp_path / "f.npz", "--workers", "0")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.output.startswith("Error: ") or "Error: " in result.output.splitlines()[-1]


def test_cli_names_the_corrupt_image_and_refuses_other_outputs(images, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = invoke("--encoder", "pixel", images[0], bad, "--out", tmp_path / "f.npz")
    assert result.exit_code == 2 and f"Error: {bad}: " in result.output
    result = invoke("--encoder", "pixel", images[0], "--out", tmp_path / "f.csv")
    assert result.exit_code == 2 and "the output is an .npz file" in result.output


def test_the_npz_holds_no_pickles(images, tmp_path):
    out = tmp_path / "f.npz"
    assert invoke("--encoder", "pixel", images[0], "--out", out, "--no-cache").exit_code == 0
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
    assert names == {"meta.npy", "sha256.npy", "path.npy", "features.npy"}
    with np.load(out, allow_pickle=False) as data:  # raises if anything needed pickling
        assert data["features"].dtype == np.float32
