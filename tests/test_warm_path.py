"""The warm path of `percept features`: all rows cached, so torch and the network never load."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from imagefiles import make_folder

from analysis import warm
from percept.cli import cli

# Runs the CLI in a fresh interpreter and says whether torch was imported.
PROBE = """
import sys
from percept.cli import cli
try:
    cli.main(sys.argv[1:], prog_name="percept")
except SystemExit as e:
    code = e.code
print("torch imported:", "torch" in sys.modules, "exit:", code)
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PERCEPT_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)


def probe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )


def test_a_fully_cached_run_imports_no_torch_and_writes_the_same_file(tmp_path):
    images = make_folder(tmp_path / "images", 4, size=(24, 24))
    args = ["features", "--encoder", "random:dinov2-vits14", str(images), "--workers", "0"]
    cold = probe(*args, "--out", str(tmp_path / "cold.npz"))
    assert "torch imported: True exit: 0" in cold.stdout, cold.stderr
    warm_run = probe(*args, "--out", str(tmp_path / "warm.npz"))
    assert "torch imported: False exit: 0" in warm_run.stdout, warm_run.stderr
    assert "(0 computed, 4 from the cache)" in warm_run.stdout
    assert "RANDOMLY INITIALISED" in warm_run.stderr and "note:" in warm_run.stderr
    assert (tmp_path / "cold.npz").read_bytes() == (tmp_path / "warm.npz").read_bytes()

    # One new image: the warm path does not apply, the ordinary one computes only it.
    make_folder(tmp_path / "images", 1, size=(24, 24), seed=9, ext=".jpg")
    more = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "more.npz")])
    assert more.exit_code == 0 and "(1 computed, 4 from the cache)" in more.output, more.output


def test_a_record_is_not_trusted_once_what_it_depended_on_changes(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"weights one")
    key = {"encoder": "x", "weights": "sha256:1", "preprocess": "v1", "outputs": {"features": 2}}

    def remember() -> None:
        warm.remember(
            root, "x", weights, key, pretrained=True, describe="x", weight_candidates=[weights]
        )

    remember()
    assert warm.lookup(root, "x", weights)["key"] == key
    assert warm.lookup(root, "x", None) is None  # another --weights: another record
    assert warm.lookup(root, "y", weights) is None

    os.utime(weights, ns=(1, 1))  # the weight file changed (its time, as a copy over it would)
    assert warm.lookup(root, "x", weights) is None
    remember()
    weights.write_bytes(b"weights two, longer")
    os.utime(weights, ns=(1, 1))  # same time, another size
    assert warm.lookup(root, "x", weights) is None
    remember()
    monkeypatch.setattr(warm, "code_fingerprint", lambda: "other code or library versions")
    assert warm.lookup(root, "x", weights) is None
    monkeypatch.undo()
    remember()
    assert warm.lookup(root, "x", weights) is not None
    monkeypatch.setenv("PERCEPT_WEIGHTS_DIR", str(tmp_path / "elsewhere"))
    assert warm.lookup(root, "x", weights) is None  # another weights folder: another record

    monkeypatch.undo()
    assert warm.lookup(root, "x", weights) is not None
    for record in (root / warm.KEYS_DIR).glob("*.json"):
        record.write_text("{not json")
    assert warm.lookup(root, "x", weights) is None  # a damaged record: the ordinary path


def test_an_expected_weight_file_that_appears_invalidates_the_record(tmp_path):
    root = tmp_path / "cache"
    expected = warm.weights_dir() / "model.pth"
    key = {"encoder": "x", "weights": "sha256:1", "preprocess": "v1", "outputs": {"features": 2}}
    warm.remember(root, "x", None, key, pretrained=True, describe="x", weight_candidates=[expected])
    assert warm.lookup(root, "x", None) is not None
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"new")
    assert warm.lookup(root, "x", None) is None


def test_cache_stats_ignores_the_key_records(tmp_path):
    images = make_folder(tmp_path / "images", 2, size=(24, 24))
    runner = CliRunner()
    out = str(tmp_path / "f.npz")
    args = ["features", "--encoder", "pixel", str(images), "--out", out]
    assert runner.invoke(cli, args).exit_code == 0
    assert (tmp_path / "cache" / warm.KEYS_DIR).is_dir()
    stats = runner.invoke(cli, ["features", "--cache-stats"])
    assert "2 cached images over 1 encoder settings" in stats.output, stats.output
    pruned = runner.invoke(cli, ["features", "--cache-prune"])
    assert pruned.exit_code == 0 and (tmp_path / "cache" / warm.KEYS_DIR).is_dir()
    assert "(0 computed, 2 from the cache)" in runner.invoke(cli, args).output
