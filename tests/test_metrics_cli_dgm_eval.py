"""`percept metrics` with FLS, IS-infinity and CMMD: which encoders give them, and user errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from imagefiles import make_folder

from analysis import metrics_cli
from percept.cli import cli
from percept.errors import PerceptError

pytest.importorskip("torch")


def invoke(*args):
    return CliRunner().invoke(cli, ["metrics", *map(str, args)])


@pytest.fixture
def folders(tmp_path):
    real = make_folder(tmp_path / "real", 12, size=(32, 32), seed=1)
    near = make_folder(tmp_path / "near", 8, size=(32, 32), seed=2)
    return real, near


@pytest.mark.slow
def test_fls_and_inception_score_infinity_from_the_cli(folders, tmp_path):
    real, near = folders
    out = tmp_path / "m.csv"
    result = invoke(
        "--encoder", "random:inception-clean", "--real", real, "--model", f"near={near}",
        "--metric", "inception_score_infinity", "--metric", "fd",
        "--out", out, "--workers", "0", "--no-cache",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table["metric"]) == ["inception_score_infinity", "fd"]
    assert set(table["encoder"]) == {"random:inception-clean"}
    assert all(math.isfinite(v) for v in table["value"])
    # FLS on pixels (a random Inception's ReLU features are often all 0 on 20 images,
    # and a constant feature cannot be standardised: see the next test).
    result = invoke(
        "--encoder", "pixel", "--real", real, "--model", f"near={near}",
        "--metric", "fls", "--metric", "fls_overfit",
        "--out", out, "--workers", "0", "--no-cache",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table["metric"]) == ["fls", "fls_overfit"]
    assert all(math.isfinite(v) for v in table["value"])


@pytest.mark.slow
def test_constant_features_stop_fls_with_one_line(folders, tmp_path):
    real, near = folders
    result = invoke(
        "--encoder", "random:inception-clean", "--real", real, "--model", f"near={near}",
        "--metric", "fls", "--out", tmp_path / "m.csv", "--workers", "0", "--no-cache",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "metric fls: fls: " in result.output and "features are constant" in result.output
    assert "Traceback" not in result.output


def test_cmmd_needs_the_clip_336_encoder(folders, tmp_path):
    real, near = folders
    result = invoke(
        "--encoder", "pixel", "--real", real, "--model", f"near={near}", "--metric", "cmmd",
        "--out", tmp_path / "m.csv", "--workers", "0", "--no-cache",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--metric cmmd is defined on clip-vitl14-336 embeddings" in result.output
    assert "add --encoder clip-vitl14-336" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "m.csv").exists()


def test_cmmd_runs_on_clip_336_features_only():
    rng = np.random.default_rng(0)
    real = {"features": rng.normal(size=(20, 768))}
    fake = {"features": rng.normal(size=(15, 768))}

    def rows(encoder):
        base = {"dataset": "d", "model": "m", "encoder": encoder, "encoder_pretrained": "true"}
        return metrics_cli.measure(
            "cmmd", real, fake, explicit=True, seed=0, where="here", base=base
        )

    assert rows("pixel") == []
    [row] = rows("random:clip-vitl14-336")
    assert row["metric"] == "cmmd" and float(row["value"]) > 0
    assert rows("clip-vitl14-336") == [row | {"encoder": "clip-vitl14-336"}]


def test_a_default_run_mentions_where_cmmd_is_computed(capsys):
    both = ("inception", "clip-vitl14-336")
    assert metrics_cli.check_encoder_bound_metrics(["fd", "cmmd"], both, False) == ["fd", "cmmd"]
    assert "note: cmmd is computed on clip-vitl14-336 only" in capsys.readouterr().err
    # A default run without the encoder leaves cmmd out, and says nothing of it.
    assert metrics_cli.check_encoder_bound_metrics(["fd", "cmmd"], ("inception",), False) == ["fd"]
    assert capsys.readouterr().err == ""
    with pytest.raises(PerceptError, match="add --encoder clip-vitl14-336"):
        metrics_cli.check_encoder_bound_metrics(["cmmd"], ("inception",), explicit=True)


def test_too_few_images_for_fls_is_one_line_naming_the_model(folders, tmp_path):
    real, _ = folders
    one = make_folder(tmp_path / "one", 1, size=(32, 32), seed=7)
    result = invoke(
        "--encoder", "pixel", "--real", real, "--model", f"one={one}", "--metric", "fls",
        "--out", tmp_path / "m.csv", "--workers", "0", "--no-cache",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "dataset real, model one, encoder pixel, metric fls: fls needs at least 2" in (
        result.output
    )
    assert "Traceback" not in result.output
