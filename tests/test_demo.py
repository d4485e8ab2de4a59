"""The demo stimulus folder: two datasets, five planted models, reproducible, graded as planted."""

from __future__ import annotations

import csv
import hashlib
import itertools
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from percept.cli import cli
from percept.errors import PerceptError
from stimuli.demo import (
    DATASETS,
    FAKE_PER_MODEL,
    GROUND_TRUTH,
    GROUND_TRUTH_COLUMNS,
    MODELS,
    SOURCE_SCALE,
    _fresh_crops,
    _plan,
    _rng,
    make_demo,
)
from stimuli.manifest import image_path, read_manifest

NAMES = [name for name, _ in DATASETS]
MODEL_NAMES = [m.name for m in MODELS]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo at its default size and seed, made once for the module."""
    out = tmp_path_factory.mktemp("demo") / "stimuli"
    make_demo(out)
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """The demo at 32 px (faster) with seed 0, for the reproducibility tests."""
    out = tmp_path_factory.mktemp("small") / "stimuli"
    make_demo(out, seed=0, size=32)
    return out


def files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def pixels(stimdir: Path, dataset: str, model: str, roles=("main",)) -> np.ndarray:
    """The images of one model ("" for the reals) as float64, one flattened image per row."""
    rows = [
        r
        for r in read_manifest(stimdir)
        if r["dataset"] == dataset and r["model"] == model and r["role"] in roles
    ]
    return np.stack(
        [np.asarray(Image.open(image_path(stimdir, r["sha256"])), np.float64).ravel() for r in rows]
    )


def nearest_mse(fakes: np.ndarray, reals: np.ndarray) -> np.ndarray:
    """Per fake image, the pixel mean squared error to its nearest real image."""
    squared = (fakes**2).sum(1)[:, None] + (reals**2).sum(1)[None, :] - 2 * fakes @ reals.T
    return np.maximum(squared.min(axis=1), 0) / fakes.shape[1]


def log_spectrum(images: np.ndarray, side: int, bands: int = 6) -> np.ndarray:
    """Mean log power of the luminance in `bands` radial frequency bands, averaged over images."""
    grey = images.reshape(len(images), side, side, 3).mean(axis=3)
    grey -= grey.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(grey)) ** 2
    freq = np.fft.fftfreq(side)
    radius = np.hypot(*np.meshgrid(freq, freq))
    edges = np.linspace(0, 0.5, bands + 1)
    edges[0] = 1e-9  # leave out the constant term
    masks = [(radius >= lo) & (radius < hi) for lo, hi in itertools.pairwise(edges)]
    return np.log(np.stack([power[:, m].mean(axis=1) for m in masks], axis=1)).mean(axis=0)


def chroma(images: np.ndarray) -> float:
    """Mean distance of the pixels from grey: how colourful the images are."""
    rgb = images.reshape(len(images), -1, 3)
    return float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean())


def test_two_datasets_with_enough_distinct_reals_and_five_models(demo):
    rows = read_manifest(demo)
    assert sorted({r["dataset"] for r in rows}) == NAMES
    shas = [r["sha256"] for r in rows]
    assert len(set(shas)) == len(shas)
    for row in rows:
        data = image_path(demo, row["sha256"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        assert (row["width"], row["height"]) == ("64", "64")
        # The temporary folder the sources were written to leaves no trace.
        assert row["original_path"].startswith(f"demo/{row['dataset']}/")
    for name in NAMES:
        mine = [r for r in rows if r["dataset"] == name]
        reals = {r["sha256"] for r in mine if r["source"] == "real" and r["role"] == "main"}
        assert len(reals) >= 200
        assert {r["model"] for r in mine if r["model"]} == set(MODEL_NAMES)
        for model in MODEL_NAMES:
            main = [r for r in mine if r["model"] == model and r["role"] == "main"]
            assert len(main) >= 200, (name, model)
        assert sum(r["role"] == "catch" for r in mine) == 10
    assert sorted(p.name for p in demo.iterdir()) == ["ground_truth.csv", "images", "manifest.csv"]
    assert len(list((demo / "images").iterdir())) == len(rows)


def test_ground_truth_ranks_and_planted_realism(demo):
    with open(demo / GROUND_TRUTH, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == GROUND_TRUTH_COLUMNS
        rows = list(reader)
    assert sorted({r["dataset"] for r in rows}) == NAMES
    for name in NAMES:
        mine = sorted(
            (r for r in rows if r["dataset"] == name), key=lambda r: int(r["realism_rank"])
        )
        assert [int(r["realism_rank"]) for r in mine] == list(range(1, len(mine) + 1))
        assert {r["model"] for r in mine} == set(MODEL_NAMES)
        realism = [float(r["planted_realism"]) for r in mine]
        assert all(0 < value <= 1 for value in realism)
        assert all(a > b for a, b in itertools.pairwise(realism))
        assert mine[0]["model"] == "memoriser" and mine[-1]["model"] == "pca-gauss"
        assert all(r["recipe"] and r["seed"] == "0" for r in mine)


def test_same_seed_gives_a_byte_identical_folder(small, tmp_path):
    again = tmp_path / "again"
    make_demo(again, seed=0, size=32, workers=1)  # one process, unlike the fixture
    assert files(again) == files(small)


def test_another_seed_gives_other_images(small, tmp_path):
    other = tmp_path / "other"
    make_demo(other, seed=1, size=32)
    assert (other / "manifest.csv").read_bytes() != (small / "manifest.csv").read_bytes()
    reals = [
        {r["sha256"] for r in read_manifest(folder) if r["source"] == "real"}
        for folder in (small, other)
    ]
    assert not reals[0] & reals[1]
    with open(other / GROUND_TRUTH, newline="", encoding="utf-8") as f:
        assert {r["seed"] for r in csv.DictReader(f)} == {"1"}


@pytest.mark.parametrize("dataset", NAMES)
def test_memoriser_copies_reals_and_the_others_do_not(demo, dataset):
    # The memoriser copies practice reals too.
    reals = pixels(demo, dataset, "", roles=("main", "practice"))
    distance = {m: nearest_mse(pixels(demo, dataset, m), reals) for m in MODEL_NAMES}
    # Every memorised image has a real image within PSNR 28 dB: a copy, not a lookalike.
    assert distance["memoriser"].max() < 100
    for model in MODEL_NAMES[1:]:
        assert distance[model].mean() > 10 * distance["memoriser"].mean(), model


@pytest.mark.parametrize("dataset", NAMES)
def test_planted_grading_shows_in_the_spectrum(demo, dataset):
    real = log_spectrum(pixels(demo, dataset, ""), 64)
    gap = {
        m: np.linalg.norm(log_spectrum(pixels(demo, dataset, m), 64) - real) for m in MODEL_NAMES
    }
    assert min(gap, key=gap.get) == "memoriser"
    assert max(gap, key=gap.get) == "pca-gauss"
    assert gap["mild-degrade"] < gap["strong-degrade"] < gap["pca-gauss"]


@pytest.mark.parametrize("dataset", NAMES)
def test_colour_shift_changes_colour_most(demo, dataset):
    real = chroma(pixels(demo, dataset, ""))
    shift = {m: abs(chroma(pixels(demo, dataset, m)) - real) for m in MODEL_NAMES}
    assert max(shift, key=shift.get) == "colour-shift"


@pytest.mark.parametrize("index", range(len(DATASETS)))
def test_fresh_fakes_never_show_what_a_real_shows(index):
    src = round(64 * SOURCE_SCALE)
    plan = _plan(index, 0, src)
    fresh = ("mild-degrade", "colour-shift", "strong-degrade")
    streams = [i for i, m in enumerate(MODELS, start=1) if m.name in fresh]
    fakes = [
        c
        for stream in streams
        for c in _fresh_crops(
            plan.images, plan.fake_regions, src, FAKE_PER_MODEL, _rng(0, index, stream)
        )
    ]

    def inside(box, region):
        return (
            region[0] <= box[0]
            and region[1] <= box[1]
            and box[2] <= region[2]
            and box[3] <= region[3]
        )

    for real, fake in zip(plan.real_regions, plan.fake_regions, strict=True):
        overlap = (
            min(real[2], fake[2]) - max(real[0], fake[0]),
            min(real[3], fake[3]) - max(real[1], fake[1]),
        )
        assert min(overlap) <= 0
    assert all(inside(c.box, plan.real_regions[c.source]) for c in plan.real_crops)
    assert all(inside(c.box, plan.fake_regions[c.source]) for c in fakes)


def test_cli_prints_the_summary_and_writes_the_same_folder(small, tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(cli, ["stimuli", "demo", "--out", str(out), "--size", "32"])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if line.startswith("dataset"))
    assert header.split()[:4] == ["dataset", "size", "source", "model"]
    for name in NAMES:
        assert any(line.startswith(name) for line in result.output.splitlines())
    assert "ground_truth.csv" in result.output
    assert files(out) == files(small)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"size": 16}, "--size 16"), ({"seed": -1}, "--seed -1")]
)
def test_bad_arguments_are_user_errors(tmp_path, kwargs, message):
    with pytest.raises(PerceptError, match=message):
        make_demo(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
