"""`percept metrics` on tiny generated images, with randomly initialised encoders."""

from __future__ import annotations

import hashlib
import math

import pandas as pd
import pytest
from click.testing import CliRunner
from imagefiles import make_folder, pattern, save

from percept.cli import cli
from stimuli.manifest import MANIFEST, MANIFEST_COLUMNS, image_path, write_csv

pytest.importorskip("torch")

COLUMNS = ["dataset", "model", "encoder", "encoder_pretrained", "metric", "value", "std"]


def invoke(*args):
    return CliRunner().invoke(cli, ["metrics", *map(str, args)])


@pytest.fixture
def folders(tmp_path):
    real = make_folder(tmp_path / "real", 12, size=(32, 32), seed=1)
    near = make_folder(tmp_path / "near", 10, size=(32, 32), seed=2)
    far = tmp_path / "far"
    for i in range(10):  # flat grey squares: nothing like the real images
        save(far / f"{i}.png", pattern(32, 32, seed=900 + i) // 8 + 100)
    return real, near, far


def test_folders_give_one_tidy_row_per_model_encoder_and_metric(folders, tmp_path):
    real, near, far = folders
    out = tmp_path / "out" / "metrics.csv"
    result = invoke(
        "--encoder", "random:dinov2-vits14", "--real", real,
        "--model", f"near={near}", "--model", f"far={far}",
        "--metric", "fd", "--metric", "kd", "--metric", "prdc", "--metric", "vendi",
        "--out", out, "--workers", "0", "--cache-dir", tmp_path / "cache",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "RANDOMLY INITIALISED" in result.output and "not pretrained" in result.output
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == COLUMNS
    assert set(table["dataset"]) == {"real"}  # the --real folder's name
    assert set(table["encoder"]) == {"random:dinov2-vits14"}
    assert set(table["encoder_pretrained"].astype(str).str.lower()) == {"false"}
    metrics = ["fd", "kd", "prdc.precision", "prdc.recall", "prdc.density", "prdc.coverage"]
    for model in ("near", "far"):
        rows = table[table["model"] == model]
        assert list(rows["metric"]) == [*metrics, "vendi"]
        assert all(math.isfinite(float(v)) for v in rows["value"])
        kd = rows[rows["metric"] == "kd"].iloc[0]
        assert float(kd["std"]) >= 0  # KD has a spread over subsets; FD has none
        assert rows[rows["metric"] == "fd"].iloc[0]["std"] == ""
    fd = table[table["metric"] == "fd"].set_index("model")["value"].astype(float)
    assert fd["far"] > fd["near"]

    # Again with the default metrics: features now come from the cache.
    again = invoke(
        "--encoder", "random:dinov2-vits14", "--real", real, "--model", f"near={near}",
        "--out", out, "--workers", "0", "--cache-dir", tmp_path / "cache", "--seed", "3",
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    names = set(pd.read_csv(out)["metric"])
    assert {"fd", "kd", "prdc.recall", "realism", "authpct", "sw", "sw_approx"} <= names
    assert "fd_infinity" not in names and "inception_score" not in names


def _stimulus_folder(root, datasets=("a", "b"), models=("m1", "m2"), n=8):
    """A stimulus folder by hand: real and model images per dataset, plus catch images."""
    (root / "images").mkdir(parents=True)
    rows, seed = [], 0
    for dataset in datasets:
        for source, model in [("real", ""), *(("fake", m) for m in models), ("fake", "catch")]:
            for _ in range(n if model != "catch" else 2):
                seed += 1
                tmp = save(root / "tmp.png", pattern(32, 32, seed=seed))
                sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
                tmp.rename(image_path(root, sha))
                rows.append(
                    dict(
                        image_id=sha[:16], sha256=sha, dataset=dataset, source=source,
                        model="" if model == "catch" else model,
                        role="catch" if model == "catch" else "main",
                        original_path=f"{seed}.png", width=32, height=32,
                    )
                )  # fmt: skip
    write_csv(root / MANIFEST, MANIFEST_COLUMNS, rows)
    return root


def test_a_stimulus_folder_gives_every_dataset_and_model(tmp_path):
    stimdir = _stimulus_folder(tmp_path / "stim")
    out = tmp_path / "metrics.csv"
    result = invoke(
        "--encoder", "pixel", "--encoder", "random:dinov2-vits14", "--real", stimdir,
        "--metric", "fd", "--metric", "sw_approx", "--out", out,
        "--workers", "0", "--no-cache",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert len(table) == 2 * 2 * 2 * 2  # datasets x models x encoders x metrics
    assert set(zip(table["dataset"], table["model"], strict=True)) == {
        (d, m) for d in "ab" for m in ("m1", "m2")
    }
    pretrained = dict(zip(table["encoder"], table["encoder_pretrained"], strict=False))
    assert pretrained == {"pixel": True, "random:dinov2-vits14": False}
    # --dataset picks one; the manifest file itself may be given.
    one = invoke(
        "--encoder", "pixel", "--real", stimdir / MANIFEST, "--dataset", "b",
        "--metric", "fd", "--out", out, "--workers", "0", "--no-cache",
    )  # fmt: skip
    assert one.exit_code == 0, one.output
    assert set(pd.read_csv(out)["dataset"]) == {"b"}


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "nofolder"], "write it as NAME=DIR"),
        ([], "give each model's images with --model NAME=DIR"),
        (["--model", "x=/no/such/folder"], "no such folder"),
        (["--metric", "fid"], "Invalid value for '--metric'"),
    ],
)
def test_user_errors_are_one_line(folders, tmp_path, args, message):
    real, _, _ = folders
    result = invoke("--encoder", "pixel", "--real", real, *args, "--out", tmp_path / "m.csv")
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_too_few_images_for_a_metric_say_where(folders, tmp_path):
    real, near, _ = folders
    few = make_folder(tmp_path / "few", 4, size=(32, 32), seed=7)
    result = invoke(
        "--encoder", "pixel", "--real", real, "--model", f"few={few}", "--model", f"near={near}",
        "--metric", "prdc", "--out", tmp_path / "m.csv", "--workers", "0", "--no-cache",
    )  # fmt: skip
    assert result.exit_code == 2
    assert (
        "dataset real, model few, encoder pixel, metric prdc: fake has 4 samples" in result.output
    )
    assert not (tmp_path / "m.csv").exists()


def test_metrics_csv_keeps_every_value_to_the_last_bit(folders, tmp_path, monkeypatch):
    # Record what the metrics returned, then read metrics.csv back: equal, bit for bit.
    import analysis.metrics

    computed = []
    evaluate = analysis.metrics.evaluate

    def recording(*args, **kwargs):
        rows = evaluate(*args, **kwargs)
        computed.extend(rows)
        return rows

    monkeypatch.setattr(analysis.metrics, "evaluate", recording)
    real, near, far = folders
    out = tmp_path / "metrics.csv"
    result = invoke(
        "--encoder", "pixel", "--real", real, "--model", f"near={near}", "--model", f"far={far}",
        "--metric", "fd", "--metric", "kd", "--metric", "sw_approx", "--metric", "vendi",
        "--out", out, "--workers", "0", "--no-cache",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert len(table) == len(computed) == 2 * 4
    for (metric, value, std), row in zip(computed, table.itertuples(index=False), strict=True):
        assert row.metric == metric
        assert row.value == value  # exact: no rounding on the way to the file
        assert (math.isnan(std) and math.isnan(row.std)) or row.std == std
    assert any(len(repr(v)) > 12 for _, v, _ in computed)  # values that %.6g would cut
