"""Distributed extraction under torchrun (CPU, gloo) and a cache shared by many writers.

The torchrun tests start real `torchrun --nproc-per-node 2` process groups over
64 small images with a randomly initialised DINOv2 ViT-S/14 (the cheapest
network of the registry here), and compare with a single process.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from imagefiles import make_folder
from PIL import Image

import analysis.encoders as enc
import analysis.features as feat
from analysis.distributed import CRASH_ENV, Ranks, rank_device, ranks_from_env, shard
from analysis.features import (
    CacheWarning,
    FeatureCache,
    cache_key,
    cache_stats,
    compute,
    load_features,
    prune_cache,
)
from percept.cli import cli
from percept.errors import PerceptError

ENCODER = "random:dinov2-vits14"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEPT_CACHE_DIR", str(tmp_path / "default-cache"))
    monkeypatch.setenv("PERCEPT_WEIGHTS_DIR", str(tmp_path / "weights"))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", CRASH_ENV):
        monkeypatch.delenv(name, raising=False)


def pixel_rows(paths) -> np.ndarray:
    spec = enc.ENCODERS["pixel"]
    return np.stack([spec.preprocess(Image.open(p)).flatten().numpy() for p in paths])


# --- Sharding and ranks ----------------------------------------------------------------------


def test_shards_cover_each_distinct_image_once_and_ignore_repeats():
    shas = [f"{i % 7:064x}" for i in range(20)]  # 7 distinct images, repeated
    shards = [shard(shas, r, 3) for r in range(3)]
    firsts = sorted(p for s in shards for p in s)
    assert firsts == list(range(7))  # each distinct image once, at its first position
    assert [len(s) for s in shards] == [3, 2, 2]
    assert shard(shas, 1, 3) == shard(list(shas), 1, 3)  # depends only on the list
    assert shard([], 0, 2) == [] and shard(shas[:1], 1, 2) == []


def test_ranks_come_from_torchrun_variables(monkeypatch):
    assert ranks_from_env() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert ranks_from_env() is None  # one process: the single-process path
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert ranks_from_env() == Ranks(3, 4, 1, 2)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(PerceptError, match="outside WORLD_SIZE"):
        ranks_from_env()


def test_each_rank_takes_its_own_device():
    ranks = Ranks(3, 4, 1, 2)
    assert rank_device("cpu", ranks).type == "cpu"
    with pytest.raises(PerceptError, match="cuda:LOCAL_RANK"):
        rank_device("cuda:0", ranks)
    if not enc.torch.cuda.is_available():
        assert rank_device("auto", ranks).type == "cpu"
        with pytest.raises(PerceptError, match="no CUDA GPU"):
            rank_device("cuda", ranks)


# --- torchrun ----------------------------------------------------------------------------------


def torchrun(
    tmp_path: Path, *args: str, crash: str | None = None, restarts: int = 0
) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if crash:
        env[CRASH_ENV] = crash
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--max-restarts", str(restarts), "--nproc-per-node", "2", "-m", "percept", *args]
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )


def features_args(images: Path, out: Path, cache: Path) -> list[str]:
    args = ["features", "--encoder", ENCODER, str(images), "--out", str(out)]
    return [*args, "--cache-dir", str(cache), "--workers", "0", "--batch-size", "8"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_torchrun_equals_one_process_and_a_killed_rank_resumes(tmp_path):
    images = make_folder(tmp_path / "images", 64, size=(24, 24))
    single = tmp_path / "single.npz"
    result = CliRunner().invoke(cli, features_args(images, single, tmp_path / "c1"))
    assert result.exit_code == 0, result.output
    expected = load_features(single)

    # Rank 1 dies abruptly after 2 batches of 8 (its unwritten rows are lost); torchrun
    # then stops rank 0 with SIGTERM, which writes what it computed before exiting.
    cache = tmp_path / "c2"
    out = tmp_path / "dist.npz"
    crashed = torchrun(tmp_path, *features_args(images, out, cache), crash="1:2")
    assert crashed.returncode != 0 and not out.exists(), crashed.stdout + crashed.stderr
    shards = [{expected.sha256[i] for i in shard(expected.sha256, r, 2)} for r in range(2)]
    stored = set()
    for chunk in cache.rglob("*.npz"):
        with np.load(chunk) as data:
            stored |= set(data["sha256"].tolist())
    assert stored <= shards[0]  # rank 1's rows died with it

    again = torchrun(tmp_path, *features_args(images, out, cache))
    assert again.returncode == 0, again.stdout + again.stderr
    # Only what the crash lost is computed: rank 1 its whole shard, rank 0 the rest of its own.
    assert f"{64 - len(stored)} computed on 2 ranks: {32 - len(stored)}, 32, " in again.stdout
    assert f"{len(stored)} from the cache" in again.stdout
    merged = load_features(out)
    assert merged.paths == expected.paths and merged.sha256 == expected.sha256
    np.testing.assert_allclose(merged.features, expected.features, rtol=0, atol=1e-6)
    assert merged.encoder == ENCODER and not merged.pretrained

    # Everything cached: a third run computes nothing and writes the same file.
    third = torchrun(tmp_path, *features_args(images, out, cache))
    assert "0 computed on 2 ranks: 0, 0, 64 from the cache" in third.stdout, third.stderr
    assert np.array_equal(load_features(out).features, merged.features)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_torchrun_max_restarts_resumes_within_the_job(tmp_path):
    images = make_folder(tmp_path / "images", 16, size=(24, 24))
    single = tmp_path / "single.npz"
    result = CliRunner().invoke(cli, features_args(images, single, tmp_path / "c1"))
    assert result.exit_code == 0, result.output
    out = tmp_path / "dist.npz"
    # Rank 1 dies after its first batch in the first attempt; torchrun restarts both ranks.
    run = torchrun(tmp_path, *features_args(images, out, tmp_path / "c2"), crash="1:1", restarts=1)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "exitcode: 17" in run.stderr  # the first attempt did fail
    assert "computed on 2 ranks: " in run.stdout and ", 8, " in run.stdout  # rank 1: all again
    np.testing.assert_allclose(
        load_features(out).features, load_features(single).features, rtol=0, atol=1e-6
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_torchrun_metrics_equal_one_process(tmp_path):
    real = make_folder(tmp_path / "real", 12, size=(24, 24), seed=1)
    fake = make_folder(tmp_path / "fake", 12, size=(24, 24), seed=2)
    args = ["metrics", "--encoder", ENCODER, "--real", str(real), "--model", f"m={fake}"]
    args += ["--metric", "fd", "--metric", "prdc", "--workers", "0", "--device", "cpu"]
    single = CliRunner().invoke(
        cli, [*args, "--out", str(tmp_path / "one.csv"), "--cache-dir", str(tmp_path / "c1")]
    )
    assert single.exit_code == 0, single.output
    dist = torchrun(
        tmp_path, *args, "--out", str(tmp_path / "two.csv"), "--cache-dir", str(tmp_path / "c2")
    )
    assert dist.returncode == 0, dist.stdout + dist.stderr
    one = (tmp_path / "one.csv").read_text().splitlines()
    two = (tmp_path / "two.csv").read_text().splitlines()
    assert len(one) > 2 and one[0] == two[0]
    for a, b in zip(one[1:], two[1:], strict=True):
        *key_a, value_a, std_a = a.split(",")
        *key_b, value_b, std_b = b.split(",")
        assert key_a == key_b and std_a == std_b == ""
        assert float(value_a) == pytest.approx(float(value_b), rel=1e-6, abs=1e-9)


def test_without_a_cache_torchrun_is_a_clear_error(tmp_path, monkeypatch):
    from analysis.distributed import compute_on_ranks

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    images = sorted(make_folder(tmp_path / "i", 2, size=(24, 24)).iterdir())
    with pytest.raises(PerceptError, match="drop --no-cache"):
        compute_on_ranks(enc.resolve("pixel"), images, sha256s=["a" * 64] * 2, cache_dir=False)


# --- A cache many writers share ----------------------------------------------------------------


def _write_at_once(args: tuple[list[str], str, object]) -> int:
    paths, cache, barrier = args
    barrier.wait()  # both processes start writing at the same moment
    return compute("pixel", paths, batch_size=1, workers=0, cache_dir=cache).computed


def test_two_processes_writing_at_once_leave_a_cache_that_reads_back_exactly(tmp_path, monkeypatch):
    paths = [str(p) for p in sorted(make_folder(tmp_path / "i", 30, size=(24, 24)).iterdir())]
    cache = str(tmp_path / "c")
    monkeypatch.setattr(feat, "FLUSH_ROWS", 1)  # a chunk per row: as many writes as can be
    monkeypatch.setattr(feat, "MAX_SMALL_CHUNKS", 4)  # and merges while the other writes
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    halves = [(paths[:20], cache, barrier), (paths[10:], cache, barrier)]  # 10 in common
    processes = [context.Process(target=_write_at_once, args=(job,)) for job in halves]
    for p in processes:
        p.start()
    for p in processes:
        p.join(120)
        assert p.exitcode == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing either wrote is found damaged
        result = compute("pixel", paths, workers=0, cache_dir=cache)
    assert result.cached == 30 and result.computed == 0
    assert np.array_equal(result.features, pixel_rows(paths))
    [folder] = cache_stats(cache)
    assert folder.entries == 30 and folder.encoder == "pixel"
    assert not list(Path(cache).rglob(".tmp-*"))


# --- Cache stats and prune ---------------------------------------------------------------------


def test_prune_keeps_every_trusted_row_and_removes_the_rest(tmp_path, monkeypatch):
    images = sorted(make_folder(tmp_path / "i", 6, size=(24, 24)).iterdir())
    root = tmp_path / "c"
    cache = FeatureCache(root, cache_key(enc.resolve("pixel")))
    rows = pixel_rows(images)
    shas = feat.hash_files([str(p) for p in images])
    cache.write(shas[:4], {"features": rows[:4]})
    cache.write(shas[2:], {"features": rows[2:]})  # 2 rows twice, as concurrent runs leave
    damaged = cache.dir / f"{'0' * 32}.npz"
    damaged.write_bytes(b"not a zip file")
    stale = cache.dir / ".tmp-killed.npz"
    stale.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = cache.dir / ".tmp-writing.npz"  # a writer may still be at work on it
    fresh.write_bytes(b"half")
    (root / "empty-folder").mkdir()

    with pytest.warns(CacheWarning, match="cannot be read"):
        report = prune_cache(root)
    assert (report.untrusted_chunks, report.stale_temporaries, report.duplicate_rows) == (1, 1, 2)
    assert report.empty_folders == 1 and report.bytes_after < report.bytes_before
    assert not damaged.exists() and not stale.exists() and fresh.exists()
    [folder] = cache_stats(root)
    assert (folder.entries, folder.rows, folder.chunks) == (6, 6, 1)
    result = compute("pixel", images, workers=0, cache_dir=root)
    assert result.cached == 6 and np.array_equal(result.features, rows)
    again = prune_cache(root)  # nothing left to do
    assert (again.merged_chunks, again.duplicate_rows, again.untrusted_chunks) == (0, 0, 0)


def test_cli_cache_stats_and_prune(tmp_path):
    images = make_folder(tmp_path / "i", 3, size=(24, 24))
    root = tmp_path / "c"
    runner = CliRunner()
    for encoder in ("pixel", "random:inception"):
        done = runner.invoke(
            cli,
            [
                "features",
                "--encoder",
                encoder,
                str(images),
                "--out",
                str(tmp_path / "f.npz"),
                "--cache-dir",
                str(root),
                "--workers",
                "0",
            ],
        )
        assert done.exit_code == 0, done.output
    stats = runner.invoke(cli, ["features", "--cache-stats", "--cache-dir", str(root)])
    assert stats.exit_code == 0, stats.output
    assert "6 cached images over 2 encoder settings (2 encoders)" in stats.output
    assert "pixel\t" in stats.output and "random:inception\t" in stats.output
    pruned = runner.invoke(cli, ["features", "--cache-prune", "--cache-dir", str(root)])
    assert pruned.exit_code == 0 and "pruned 0 untrusted chunks" in pruned.output
    for args, message in [
        (["--cache-stats", "--encoder", "pixel"], "take only --cache-dir"),
        (["--cache-stats", "--no-cache"], "need the cache"),
        (["--cache-stats", "--cache-dir", str(tmp_path / "none")], "no feature cache there"),
        (["--encoder", "pixel", str(images)], "give --out"),
        ([str(images)], "give --encoder and --out"),
    ]:
        bad = runner.invoke(cli, ["features", *args])
        assert bad.exit_code == 2 and message in bad.output, bad.output
