"""The report's join audit on a published-data case: names spelled as a paper prints them.

The fixture is our own, shaped like Stein et al. 2023's leaderboard typed into a
metrics.csv (`PFGM++`, `Diff-ProjGAN`, capitalised dataset names) against a
human.csv whose names follow another spelling, over three datasets.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from analysis.join import Source, audit, closest, read_renames, rename
from analysis.report import build
from percept.cli import cli
from percept.errors import PerceptError

# (dataset in human.csv, dataset in metrics.csv): {model in human.csv: model in metrics.csv}
NAMES = {
    ("cifar10", "cifar10"): {
        "pfgmpp": "PFGM++",
        "diffusion-projected-gan": "Diff-ProjGAN",
        "unleashing-transformers": "Unleash-Trans",
        "adm_dropout": "ADM-dropout",
        "consistency": "Consistency",
        "stylegan-xl": "StyleGAN-XL",
    },
    ("lsun256", "LSUN-Bedroom"): {
        "diffusion-projected-gan": "Diff-ProjGAN",
        "unleashing-transformers": "Unleash-Trans",
        "consistency-cd": "Consistency",
        "stylegan2": "StyleGAN2",
        "ddpm": "DDPM",
    },
    ("ffhq256", "FFHQ"): {
        "unleashing-transformers": "Unleash-Trans",
        "stylegan-xl": "StyleGAN-XL",
        "projected-gan": "ProjGAN",
        "ldm": "LDM",
        "insgen": "InsGen",
    },
}
# What an analyst writes once the audit has named the mismatches.
RENAMES = """from,to,dataset
LSUN-Bedroom,lsun256,
FFHQ,ffhq256,
PFGM++,pfgmpp,
Diff-ProjGAN,diffusion-projected-gan,
Unleash-Trans,unleashing-transformers,
ADM-dropout,adm_dropout,
Consistency,consistency,cifar10
Consistency,consistency-cd,lsun256
StyleGAN-XL,stylegan-xl,
StyleGAN2,stylegan2,
DDPM,ddpm,
ProjGAN,projected-gan,
LDM,ldm,
InsGen,insgen,
"""


@pytest.fixture
def published(tmp_path) -> Path:
    """human.csv with one spelling, metrics.csv with the paper's, over three datasets."""
    rng = np.random.default_rng(7)
    human, metrics = [], []
    for (h_dataset, m_dataset), models in NAMES.items():
        errors = np.sort(rng.uniform(0.05, 0.45, len(models)))
        for error, (h_model, m_model) in zip(errors, models.items(), strict=True):
            human.append({"dataset": h_dataset, "model": h_model, "error": error})
            for encoder, fd in (("dinov2-vitl14", 900 - 1000 * error), ("inception", 30.0)):
                metrics.append(
                    {
                        "dataset": m_dataset,
                        "model": m_model,
                        "encoder": encoder,
                        "encoder_pretrained": True,
                        "metric": "fd",
                        "value": fd + rng.normal(0, 5),
                        "better": "",
                    }
                )
            # A metric outside percept's registry, with its direction given.
            metrics.append(
                {
                    "dataset": m_dataset,
                    "model": m_model,
                    "encoder": "dinov2-vitl14",
                    "encoder_pretrained": True,
                    "metric": "lab_score",
                    "value": 50 - 40 * error,
                    "better": "lower",
                }
            )
    pd.DataFrame(human).to_csv(tmp_path / "human.csv", index=False)
    pd.DataFrame(metrics).to_csv(tmp_path / "metrics.csv", index=False)
    (tmp_path / "rename.csv").write_text(RENAMES)
    return tmp_path


def run_report(folder: Path, *extra: str):
    return CliRunner().invoke(
        cli,
        [
            "report",
            "--human",
            str(folder / "human.csv"),
            "--metrics",
            str(folder / "metrics.csv"),
            "--out",
            str(folder / "report"),
            "--resamples",
            "200",
            *extra,
        ],
    )


def test_mismatched_names_stop_the_report_with_close_name_hints(published):
    result = run_report(published)
    assert result.exit_code == 2, result.output
    out = result.output
    assert "nothing was computed" in out and "--rename" in out and "--allow-missing" in out
    # One line per dataset: whole datasets spelled differently, with the closest name.
    assert (
        "dataset 'LSUN-Bedroom' (5 models) is only in metrics.csv (human.csv has 'lsun256'?)" in out
    )
    assert "dataset 'FFHQ' (5 models) is only in metrics.csv (human.csv has 'ffhq256'?)" in out
    assert (
        "dataset 'lsun256' (5 models) is only in human.csv (metrics.csv has 'LSUN-Bedroom'?)" in out
    )
    # Models on each side, each with the closest name on the other.
    cifar = next(line for line in out.splitlines() if line.strip().startswith("cifar10:"))
    for h_model, m_model in NAMES["cifar10", "cifar10"].items():
        assert f"'{m_model}' (human.csv has '{h_model}'?)" in cifar, (m_model, cifar)
        assert f"'{h_model}' (metrics.csv has '{m_model}'?)" in cifar, (h_model, cifar)
    assert cifar.index("metrics.csv has 'ADM-dropout'") < cifar.index("; human.csv has")
    assert not (published / "report").exists()


def test_rename_file_recovers_every_model(published):
    result = run_report(published, "--rename", str(published / "rename.csv"))
    assert result.exit_code == 0, result.output
    table = pd.read_csv(published / "report" / "correlations.csv")
    assert sorted(table["dataset"].unique()) == ["cifar10", "ffhq256", "lsun256"]
    models = table.groupby("dataset")["models"].max().to_dict()
    assert models == {"cifar10": 6, "lsun256": 5, "ffhq256": 5}
    assert set(table["measure"]) == {"dinov2-vitl14/fd", "inception/fd", "dinov2-vitl14/lab_score"}
    # lab_score (not in the registry) is lower-is-better: aligned, it agrees with people.
    lab = table[table["measure"] == "dinov2-vitl14/lab_score"]
    assert (lab["kendall"] == 1.0).all() and set(lab["better"]) == {"lower"}
    assert pd.read_csv(published / "report" / "left_out.csv").empty
    page = (published / "report" / "index.html").read_text()
    assert "Left out" not in page and "rename.csv (--rename)" in page


def test_allow_missing_lists_what_was_left_out(published):
    # Datasets and three models mapped, the rest not: those are left out, and recorded.
    mapped = {"Consistency": "consistency", "StyleGAN-XL": "stylegan-xl"}
    mapped["Unleash-Trans"] = "unleashing-transformers"
    renames = published / "some.csv"
    renames.write_text(
        "from,to,dataset\nLSUN-Bedroom,lsun256,\nFFHQ,ffhq256,\n"
        + "".join(f"{a},{b},\n" for a, b in mapped.items())
    )
    result = run_report(published, "--rename", str(renames), "--allow-missing")
    assert result.exit_code == 0, result.output
    assert "pair(s) left out" in result.output
    assert "human.csv has 'diffusion-projected-gan'?" in result.output
    left = pd.read_csv(published / "report" / "left_out.csv")
    expected = {
        (h_d, m)
        for (h_d, _), models in NAMES.items()
        for h_m, m_m in models.items()
        for m in (h_m, mapped.get(m_m, m_m))
        if mapped.get(m_m) != h_m
    }
    assert set(zip(left["dataset"], left["model"], strict=True)) == expected
    row = left[(left["dataset"] == "cifar10") & (left["model"] == "PFGM++")].iloc[0]
    assert row["present_in"] == "metrics.csv" and row["missing_from"] == "human.csv"
    assert row["closest"] == "human.csv has 'pfgmpp'"
    assert row["left_out_of"] == "every correlation"
    page = (published / "report" / "index.html").read_text()
    assert "Left out (--allow-missing)" in page
    methods = page[page.index("<h2>Methods</h2>") :]
    for dataset, model in expected:
        assert f"{dataset}/{model} (only in" in html.escape(methods) or (
            f"{dataset}/{html.escape(model)} (only in" in methods
        ), (dataset, model)
    # What remains: cifar10 on 3 models; ffhq256 (2) and lsun256 (1) too few, and said so.
    table = pd.read_csv(published / "report" / "correlations.csv")
    assert table.groupby("dataset")["models"].max().to_dict() == {
        "cifar10": 3,
        "ffhq256": 2,
        "lsun256": 1,
    }
    assert table.loc[table["dataset"] != "cifar10", "status"].str.startswith("too few").all()
    not_computed = page[page.index("<h2>Not computed</h2>") : page.index("<h2>Methods</h2>")]
    assert not_computed.count("too few models") == 6  # every measure of both datasets


def test_conflicting_duplicates_are_an_error_and_exact_ones_a_note(published):
    metrics = pd.read_csv(published / "metrics.csv")
    twice = pd.concat([metrics, metrics.iloc[[0]]], ignore_index=True)
    twice.to_csv(published / "metrics.csv", index=False)
    result = run_report(published, "--rename", str(published / "rename.csv"))
    assert result.exit_code == 0, result.output
    assert "metrics.csv: 1 exact duplicate row(s) dropped" in result.output
    page = (published / "report" / "index.html").read_text()
    assert "1 exact duplicate row(s) dropped" in page

    changed = metrics.iloc[[0]].assign(value=metrics["value"].iloc[0] + 1)
    pd.concat([metrics, changed], ignore_index=True).to_csv(published / "metrics.csv", index=False)
    result = run_report(published, "--rename", str(published / "rename.csv"))
    assert result.exit_code == 2
    line = len(metrics) + 2
    assert "metrics.csv: rows with the same dataset, model, encoder, metric" in result.output
    # The key after renaming, the lines as in the file.
    assert "cifar10/pfgmpp/dinov2-vitl14/fd: line 2 " in result.output
    assert f"line {line} " in result.output


def test_unknown_metric_needs_a_direction(published):
    metrics = pd.read_csv(published / "metrics.csv", keep_default_na=False)
    metrics.loc[metrics["metric"] == "lab_score", "better"] = ""
    metrics.to_csv(published / "metrics.csv", index=False)
    result = run_report(published, "--rename", str(published / "rename.csv"))
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert "unknown metric 'lab_score'" in result.output and "`better` column" in result.output
    metrics.loc[metrics["metric"] == "fd", "better"] = "higher"
    metrics.loc[metrics["metric"] == "lab_score", "better"] = "lower"
    metrics.to_csv(published / "metrics.csv", index=False)
    result = run_report(published, "--rename", str(published / "rename.csv"))
    assert result.exit_code == 2 and "metric 'fd' has better='higher'" in result.output


def test_scores_files_are_audited_each(published):
    metrics = pd.read_csv(published / "metrics.csv")
    pairs = metrics[metrics["dataset"] == "cifar10"][["dataset", "model"]].drop_duplicates()
    # Values that differ between models: a constant score is "not computed" anyway.
    scores = pairs.assign(score="reverse_kl", value=range(len(pairs)), direction="lower")
    scores.iloc[1:].to_csv(published / "kl.csv", index=False)  # one model missing
    result = run_report(
        published, "--rename", str(published / "rename.csv"), "--scores", str(published / "kl.csv")
    )
    assert result.exit_code == 2
    assert "dataset 'lsun256' (5 models) is only in human.csv and metrics.csv" in result.output
    assert "cifar10: human.csv and metrics.csv have 'pfgmpp'" in result.output
    result = run_report(
        published,
        "--rename",
        str(published / "rename.csv"),
        "--scores",
        str(published / "kl.csv"),
        "--allow-missing",
    )
    assert result.exit_code == 0, result.output
    left = pd.read_csv(published / "report" / "left_out.csv")
    assert (left["left_out_of"] == "the measures of kl.csv").all()
    assert len(left) == 1 + 5 + 5  # one cifar10 model, and lsun256 and ffhq256 whole
    table = pd.read_csv(published / "report" / "correlations.csv")
    kl = table[table["measure"] == "reverse_kl"]
    computed = kl[kl["status"] == "ok"]
    assert computed["dataset"].tolist() == ["cifar10"] and computed["models"].tolist() == [5]
    assert kl.loc[kl["status"] != "ok", "status"].str.startswith("too few models (0").all()
    # The pairs without scores keep their metrics.
    assert table.groupby("dataset")["models"].max().to_dict()["lsun256"] == 5


def test_closest_and_rename_units():
    assert closest("Diff-ProjGAN", ["diffusion-projected-gan", "ddpm"]) == "diffusion-projected-gan"
    assert closest("PFGM++", ["pfgmpp", "pfgm"]) == "pfgm"  # the same normalised name first
    assert closest("PFGM++", ["ddpm", "pfgmpp"]) == "pfgmpp"
    assert closest("ADM-dropout", ["adm_dropout"]) == "adm_dropout"
    assert closest("LSUN-Bedroom", ["lsun256", "cifar10"]) == "lsun256"
    assert closest("xyz", ["cifar10"]) is None and closest("x", []) is None
    frame = pd.DataFrame({"dataset": ["a", "b", "B"], "model": ["M", "M", "M"]})
    table = pd.DataFrame(
        {"from": ["M", "B", "M"], "to": ["m-in-a", "b", "m"], "dataset": ["a", "", ""]}
    )
    assert rename(frame, table).values.tolist() == [["a", "m-in-a"], ["b", "m"], ["b", "m"]]


def test_rename_file_is_checked(tmp_path):
    bad = tmp_path / "r.csv"
    bad.write_text("from,to\nA,a\nA,b\n")
    with pytest.raises(PerceptError, match="lines 2, 3 map 'A' to different names"):
        read_renames(bad)
    bad.write_text("old,new\nA,a\n")
    with pytest.raises(PerceptError, match="missing column"):
        read_renames(bad)
    bad.write_text("from,to,dataset\nA,,x\n")
    with pytest.raises(PerceptError, match="line 2: `from` and `to`"):
        read_renames(bad)
    with pytest.raises(PerceptError, match="file not found"):
        read_renames(tmp_path / "nope.csv")


def test_a_collision_made_by_renaming_is_caught():
    human = pd.DataFrame({"dataset": ["d"] * 3, "model": ["a", "b", "c"], "error": [0.1, 0.2, 0.3]})
    renames = pd.DataFrame({"from": ["a"], "to": ["b"], "dataset": [""], "line": [2]})
    with pytest.raises(PerceptError, match=r"human\.csv: rows with the same dataset, model"):
        audit([Source("human.csv", human, ("dataset", "model"), "error")], renames)


def test_report_build_on_frames_keeps_full_precision(published, tmp_path):
    human = pd.read_csv(published / "human.csv")
    metrics = pd.read_csv(published / "metrics.csv")
    renames = read_renames(published / "rename.csv")
    result = build(human, metrics, renames=renames, resamples=200)
    from analysis.report import write

    write(result, tmp_path / "r")
    back = pd.read_csv(tmp_path / "r" / "correlations.csv")
    merged = back.merge(result.correlations, on=["dataset", "measure"], suffixes=("", "_mem"))
    for column in ("kendall", "pearson", "spearman", "pearson_models_low"):
        assert (merged[column] == merged[f"{column}_mem"]).all(), column


def test_a_report_where_every_dataset_is_too_small_is_still_written(tmp_path):
    from analysis.report import write

    human = pd.DataFrame({"dataset": "d", "model": ["a", "b"], "error": [0.1, 0.2]})
    metrics = pd.DataFrame(
        {"dataset": "d", "model": ["a", "b"], "encoder": "e", "metric": "fd", "value": [1.0, 2.0]}
    )
    write(build(human, metrics, resamples=100), tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert "too few models (2 &lt; 3): not computed" in page


def test_nothing_in_common_is_an_error_even_when_missing_is_allowed(published):
    result = run_report(published, "--allow-missing")
    assert result.exit_code == 2
    assert "no (dataset, model) pair is in both human.csv and metrics.csv" in result.output


def test_a_rename_row_that_matches_nothing_is_a_note(published):
    renames = published / "rename.csv"
    renames.write_text(RENAMES + "NoSuchModel,x,\n")
    result = run_report(published, "--rename", str(renames))
    assert result.exit_code == 0, result.output
    assert "line 16: 'NoSuchModel' is in no input; row ignored" in result.output
