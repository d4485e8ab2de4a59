"""Published human data as input: Stein et al.'s files, the generic layout, checks, CLI, report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from analysis.exclusions import ExclusionRules
from analysis.human import analyse as analyse_study
from analysis.published import SummaryFile, analyse
from analysis.simulation import simulate
from percept.cli import cli
from percept.errors import PerceptError

RESAMPLES = 2000


def stein_row(pid: str, model: str, fakes_wrong: int, reals_wrong: int) -> dict:
    """One row of a Stein et al. per-participant file, every column consistent."""
    correct = 200 - fakes_wrong - reals_wrong
    return {
        "id": pid,
        "model": model,
        "num_correct": float(correct),  # the published files write counts as floats
        "err_rt": 1 - correct / 200,
        "f_err_rt": fakes_wrong / 100,
        "r_err_rt": reals_wrong / 100,
        "r_ans_rt": (fakes_wrong + 100 - reals_wrong) / 200,
        "resp_time": 150.5,
        "f_resp_time": 80.25,
        "r_resp_time": 70.25,
    }


# (model, fakes judged real, reals judged fake) per participant.
PEOPLE = [
    ("A", 10, 20),
    ("A", 30, 10),
    ("B", 40, 40),
    ("B", 50, 30),
    ("B", 45, 45),
    ("C", 25, 25),
    ("C", 25, 25),
    ("C", 25, 25),
]


def write_stein(path: Path, people=PEOPLE) -> Path:
    rows = [stein_row(f"participant_{i}", m, f, r) for i, (m, f, r) in enumerate(people)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def z(p: float) -> float:
    return float(norm.ppf(p))


def test_stein_participants_give_hand_computed_statistics(tmp_path):
    result = analyse(
        [SummaryFile.parse(str(write_stein(tmp_path / "cifar10.csv")))], resamples=RESAMPLES
    )
    human = result.human.set_index("model")
    assert set(human["dataset"]) == {"cifar10"}  # from the file name
    a, b, c = human.loc["A"], human.loc["B"], human.loc["C"]
    # A: errors (0.10 + 0.20) / 2 = 0.15 and (0.30 + 0.10) / 2 = 0.20.
    assert a["participants"] == 2 and a["trials"] == 400 and a["excluded_participants"] == 0
    assert a["error"] == pytest.approx(0.175)
    assert a["error_sem"] == pytest.approx(0.025)  # sd 0.0353553 / sqrt(2)
    assert a["fake_error"] == pytest.approx(0.20) and a["real_error"] == pytest.approx(0.15)
    # Two participants: a resample's mean is 0.15, 0.175 or 0.20 with chances 1/4, 1/2, 1/4,
    # so the 2.5% and 97.5% quantiles are the two errors themselves.
    assert (a["error_low"], a["error_high"]) == pytest.approx((0.15, 0.20))
    # d' and c with the log-linear correction, "fake" the signal.
    d1 = z(90.5 / 101) - z(20.5 / 101)
    d2 = z(70.5 / 101) - z(10.5 / 101)
    c1 = -(z(90.5 / 101) + z(20.5 / 101)) / 2
    c2 = -(z(70.5 / 101) + z(10.5 / 101)) / 2
    assert a["dprime"] == pytest.approx((d1 + d2) / 2)
    assert a["criterion"] == pytest.approx((c1 + c2) / 2)
    assert a["dprime_sem"] == pytest.approx(abs(d1 - d2) / 2)
    # B: 0.40, 0.40, 0.45.
    assert b["error"] == pytest.approx(1.25 / 3)
    assert b["error_sem"] == pytest.approx(np.std([0.4, 0.4, 0.45], ddof=1) / np.sqrt(3))
    # C: everyone alike, so no spread at all.
    assert (c["error"], c["error_sem"], c["error_low"], c["error_high"]) == pytest.approx(
        (0.25, 0.0, 0.25, 0.25)
    )
    # 25 of 100 wrong either way: H = 75.5/101, F = 25.5/101 = 1 - H, so c = 0.
    assert c["dprime"] == pytest.approx(2 * z(75.5 / 101))
    assert c["criterion"] == pytest.approx(0.0, abs=1e-12)
    # The mixed model is marked, not dropped.
    assert human["mixed_error"].isna().all()
    assert human["mixed_method"].str.startswith("not available").all()

    people = result.participants
    first = people[people["participant_id"] == "participant_0"].iloc[0]
    assert (first["fake_error"], first["real_error"], first["error"]) == pytest.approx(
        (0.10, 0.20, 0.15)
    )
    assert first["dprime"] == pytest.approx(d1) and first["criterion"] == pytest.approx(c1)


def test_pairs_from_summaries_are_hand_computable(tmp_path):
    result = analyse(
        [SummaryFile.parse(str(write_stein(tmp_path / "cifar10.csv")))], resamples=RESAMPLES
    )
    pairs = result.pairs.set_index(["model_a", "model_b"])
    ab = pairs.loc[("A", "B")]
    assert ab["difference"] == pytest.approx(0.175 - 1.25 / 3)
    # Every resampled A (0.15..0.20) is below every resampled B (0.40..0.45) and C (0.25),
    # and every B above C: each p is the smallest possible, 2 / (R + 1); Holm triples it.
    np.testing.assert_allclose(pairs["p"], 2 / (RESAMPLES + 1))
    np.testing.assert_allclose(pairs["p_holm"], 6 / (RESAMPLES + 1))
    assert pairs["significant"].all()
    assert ab["difference_low"] <= ab["difference"] <= ab["difference_high"]


def test_mean_and_sem_of_err_rt_equal_pandas(tmp_path):
    rng = np.random.default_rng(0)
    people = [
        (model, int(rng.integers(0, 101)), int(rng.integers(0, 101)))
        for model in ("GAN", "Diffusion", "VAE")
        for _ in range(int(rng.integers(5, 30)))
    ]
    path = write_stein(tmp_path / "lsun256.csv", people)
    human = analyse([SummaryFile.parse(str(path))], resamples=200).human.set_index("model")
    frame = pd.read_csv(path)
    by_model = frame.groupby("model")
    for ours, theirs in (
        ("error", "err_rt"),
        ("fake_error", "f_err_rt"),
        ("real_error", "r_err_rt"),
    ):
        np.testing.assert_allclose(
            human[ours], by_model[theirs].mean().loc[human.index], rtol=1e-12
        )
        np.testing.assert_allclose(
            human[f"{ours}_sem"], by_model[theirs].sem().loc[human.index], rtol=1e-12
        )
    assert (human["participants"] == by_model.size().loc[human.index]).all()
    assert (human["trials"] == 200 * human["participants"]).all()


def test_rounded_rates_are_accepted(tmp_path):
    path = tmp_path / "ffhq256.csv"
    frame = pd.DataFrame([stein_row("p1", "m", 9, 20), stein_row("p2", "m", 33, 17)])
    frame.round(3).to_csv(path, index=False)  # err_rt 0.145, 0.25; r_ans_rt 0.445, 0.58
    human = analyse([SummaryFile.parse(str(path))], resamples=200).human
    assert human.loc[0, "error"] == pytest.approx((0.145 + 0.25) / 2)


def test_generic_layout_with_and_without_the_fake_real_split(tmp_path):
    path = tmp_path / "other-study.csv"
    path.write_text(
        "dataset,model,participant,n_trials,n_correct,n_fake,n_fake_correct,n_real,n_real_correct\n"
        "faces,sg2,w1,100,60,60,30,40,30\n"
        "faces,sg2,w2,50,35,,,,\n"
        "faces,ldm,w1,20,10,10,5,10,5\n"
    )
    result = analyse([SummaryFile.parse(str(path))], resamples=200)
    people = result.participants.set_index(["model", "participant_id"])
    w1 = people.loc[("sg2", "w1")]
    # Balanced: fake error 30/60 = 0.5, real error 10/40 = 0.25, so 0.375 (overall would be 0.4).
    assert (w1["fake_error"], w1["real_error"], w1["error"]) == pytest.approx((0.5, 0.25, 0.375))
    assert w1["dprime"] == pytest.approx(z(30.5 / 61) - z(10.5 / 41))
    w2 = people.loc[("sg2", "w2")]
    assert w2["error"] == pytest.approx(0.3)  # no split: the overall share wrong, 15/50
    assert np.isnan(w2["fake_error"]) and np.isnan(w2["dprime"])
    sg2 = result.human.set_index("model").loc["sg2"]
    assert sg2["error"] == pytest.approx((0.375 + 0.3) / 2)
    assert sg2["fake_error"] == pytest.approx(0.5) and np.isnan(sg2["fake_error_sem"])
    assert sg2["trials"] == 150 and sg2["participants"] == 2
    missing = [item["statistic"] for item in result.summary["not_available"]]
    assert any("without n_fake/n_real" in s for s in missing)


def write_images(path: Path) -> Path:
    """A Stein et al. per-image file, with its unnamed pandas index column."""
    path.write_text(
        ",model,generated,image_path,number_guesses,number_guesses_generated,soft_label\n"
        "0,A,0,9/2128.png,1,0,0.0\n"
        "1,A,0,0/0567.png,6,2,0.3333333333333333\n"
        "2,A,1,A/0001.png,4,1,0.25\n"
        "3,A,1,A/0002.png,0,0,0.0\n"
        "4,B,1,B/0001.png,5,5,1.0\n"
    )
    return path


def test_per_image_files_give_shares_with_wilson_intervals(tmp_path):
    path = write_images(tmp_path / "ffhq_labeled_data.csv")
    result = analyse([], [SummaryFile.parse(str(path))])
    images = result.images.set_index("image_id")
    assert set(images["dataset"]) == {"ffhq256"}  # Stein's per-image name mapped
    assert "A/0002.png" not in images.index  # never shown
    assert result.summary["published"]["images_never_judged"] == 1
    row = images.loc["0/0567.png"]
    assert row["source"] == "real" and row["judgements"] == 6
    assert row["share_fake"] == pytest.approx(2 / 6) and row["share_real"] == pytest.approx(4 / 6)
    low, high = proportion_confint(2, 6, method="wilson")
    assert (row["share_fake_low"], row["share_fake_high"]) == pytest.approx((low, high))
    low, high = proportion_confint(4, 6, method="wilson")
    assert (row["share_real_low"], row["share_real_high"]) == pytest.approx((low, high))
    fakes = result.images[(result.images["source"] == "fake")]
    assert list(fakes["image_id"]) == ["A/0001.png", "B/0001.png"]
    # Without per-participant files there is no human.csv, and the summary says why.
    assert result.human is None and "human.csv" not in result.outputs()
    assert any("per-model" in i["statistic"] for i in result.summary["not_available"])
    renamed = analyse([], [SummaryFile.parse(f"faces={path}")]).images
    assert set(renamed["dataset"]) == {"faces"}


# --- Checks: one message naming the file and line, nothing written ----------------------------


def stein_text(tmp_path: Path, name: str, edit) -> Path:
    """A consistent Stein file, with one edit applied to its frame before writing."""
    frame = pd.DataFrame([stein_row(f"p{i}", m, f, r) for i, (m, f, r) in enumerate(PEOPLE)])
    frame = edit(frame)
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def set_cell(row: int, column: str, value):
    def edit(frame):
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame

    return edit


@pytest.mark.parametrize(
    "edit, line, message",
    [
        (set_cell(1, "f_err_rt", 1.2), 3, r"f_err_rt = 1\.2 is outside \[0, 1\]"),
        (set_cell(0, "err_rt", 0.2), 2, r"err_rt = 0\.2 but 1 - num_correct/200 = 0\.15"),
        (
            lambda f: set_cell(2, "err_rt", 0.395)(set_cell(2, "num_correct", 121.0)(f)),
            4,
            r"num_correct = 121 but f_err_rt and r_err_rt give 100 - 40 \+ 100 - 40 = 120",
        ),
        (set_cell(0, "f_err_rt", 0.123), 2, r"f_err_rt = 0\.123 is not a whole number of its 100"),
        (set_cell(0, "r_ans_rt", 0.5), 2, r"r_ans_rt = 0\.5 but .* give 0\.45 answers 'real'"),
        (set_cell(3, "r_err_rt", "n/a"), 5, r"r_err_rt = 'n/a' is not a number"),
        (set_cell(0, "num_correct", 170.5), 2, r"num_correct = 170\.5 is not a whole number"),
        (set_cell(4, "model", ""), 6, r"model is empty"),
        (set_cell(0, "resp_time", -1), 2, r"resp_time = -1 is negative"),
        (set_cell(3, "id", "p2"), 4, r"this participant id within this model appears more than "),
    ],
)
def test_bad_stein_values_name_the_file_and_line(tmp_path, edit, line, message):
    path = stein_text(tmp_path, "cifar10.csv", edit)
    with pytest.raises(PerceptError, match=message) as caught:
        analyse([SummaryFile.parse(str(path))], resamples=200)
    text = str(caught.value)
    assert text.startswith(f"{path}, line {line} (")
    assert "docs/published-data.md" in text and "\n" not in text


def test_duplicates_are_per_model_and_across_files(tmp_path):
    # The same id under two models is two people (rows 0 and 2: models A and B).
    fine = stein_text(tmp_path, "cifar10.csv", set_cell(2, "id", "p0"))
    analyse([SummaryFile.parse(str(fine))], resamples=200)
    # Rows 2 and 4 are both model B.
    twice = stein_text(tmp_path, "lsun256.csv", set_cell(4, "id", "p2"))
    with pytest.raises(PerceptError, match=r"line 4 .*appears more than once \(lines 4, 6\)"):
        analyse([SummaryFile.parse(str(twice))], resamples=200)
    # One dataset split over two files must not hold the same person twice.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = (
        write_stein(tmp_path / "a" / "cifar10.csv"),
        write_stein(tmp_path / "b" / "cifar10.csv"),
    )
    with pytest.raises(PerceptError, match=r"participant participant_0 of model A .*more than one"):
        analyse([SummaryFile.parse(str(first)), SummaryFile.parse(str(second))], resamples=200)


@pytest.mark.parametrize(
    "text, message",
    [
        ("foo,bar\n1,2\n", r"unknown column layout \(columns found: foo, bar\); expected"),
        (
            "id,model,num_correct,err_rt,f_err_rt,r_err_rt\np,m,171,0.145,0.09,0.2\n",
            r"looks like Stein et al.'s per-participant file but lacks r_ans_rt",
        ),
        ("id,model,num_correct,err_rt,f_err_rt,r_err_rt,r_ans_rt\n", r"no rows below the header"),
        (
            "dataset,model,participant,n_trials,n_correct\nd,m,w,10,11\n",
            r"line 2 \(participant w, model m\): n_correct = 11 is more than n_trials = 10",
        ),
        (
            "dataset,model,participant,n_trials,n_correct,n_fake\nd,m,w,10,5,5\n",
            r"has n_fake but not n_fake_correct, n_real, n_real_correct",
        ),
        (
            "dataset,model,participant,n_trials,n_correct,n_fake,n_fake_correct,n_real,"
            "n_real_correct\nd,m,w,10,5,5,2,4,3\n",
            r"line 2 .*n_fake \+ n_real = 9 but n_trials = 10",
        ),
        (
            "dataset,model,participant,n_trials,n_correct,n_fake,n_fake_correct,n_real,"
            "n_real_correct\nd,m,w,10,5,5,2,5,\n",
            r"must be all given or all empty",
        ),
        (
            "dataset,model,participant,n_trials,n_correct,n_fake,n_fake_correct,n_real,"
            "n_real_correct\nd,m,w,10,5,5,2,5,2\n",
            r"n_fake_correct \+ n_real_correct = 4 but n_correct = 5",
        ),
    ],
)
def test_bad_layouts_and_generic_counts(tmp_path, text, message):
    path = tmp_path / "study.csv"
    path.write_text(text)
    with pytest.raises(PerceptError, match=message):
        analyse([SummaryFile.parse(str(path))], resamples=200)


@pytest.mark.parametrize(
    "row, message",
    [
        ("0,A,0,x.png,4,1,0.5", r"line 2 .*soft_label = 0\.5 but .* = 0\.25"),
        ("0,A,2,x.png,4,1,0.25", r"generated = '2' is neither 0 nor 1"),
        ("0,A,1,x.png,4,5,1.0", r"number_guesses_generated = 5 is more than number_guesses = 4"),
        ("0,A,1,x.png,4,1,1.25", r"soft_label = 1\.25 is outside \[0, 1\]"),
    ],
)
def test_bad_per_image_values(tmp_path, row, message):
    path = tmp_path / "cifar10_labeled_data.csv"
    path.write_text(
        f",model,generated,image_path,number_guesses,number_guesses_generated,soft_label\n{row}\n"
    )
    with pytest.raises(PerceptError, match=message):
        analyse([], [SummaryFile.parse(str(path))])
    path.write_text(
        ",model,generated,image_path,number_guesses,number_guesses_generated\n"
        "0,A,1,x.png,4,1\n1,A,1,x.png,2,1\n"
    )
    with pytest.raises(
        PerceptError,
        match=r"line 2 .*this image within this model appears more than once \(lines 2, 3\)",
    ):
        analyse([], [SummaryFile.parse(str(path))])


# --- The command, its outputs, and the report on them ------------------------------------------


def run(*args: str):
    return CliRunner().invoke(cli, ["human", *args])


def test_cli_writes_the_tables_of_a_full_study(tmp_path):
    stein = write_stein(tmp_path / "cifar10.csv")
    images = write_images(tmp_path / "cifar10_labeled_data.csv")
    out = tmp_path / "human"
    result = run(
        "--summary",
        str(stein),
        "--image-summary",
        str(images),
        "--out",
        str(out),
        "--resamples",
        "300",
    )
    assert result.exit_code == 0, result.output
    assert "8 participants, 3 models" in result.output and "mixed model" in result.output
    for name in ("human.csv", "pairs.csv", "participant_errors.csv", "images.csv"):
        assert (out / name).is_file(), name
    # The same columns as the human.csv of a full study (with its mixed model).
    sim = simulate(
        [("d", "a", 0.0), ("d", "b", 0.5)],
        participants_per_model=3,
        real_trials=10,
        fake_trials=10,
        seed=0,
    )
    study = analyse_study(sim.trials, ExclusionRules(), resamples=100, mixed=True)
    assert list(pd.read_csv(out / "human.csv").columns) == list(study.human.columns)
    people = pd.read_csv(out / "participant_errors.csv")
    assert {
        "dataset",
        "model",
        "participant_id",
        "error",
        "fake_error",
        "real_error",
        "dprime",
        "criterion",
    } <= set(people.columns)
    summary = json.loads((out / "human_summary.json").read_text())
    assert summary["source"] == "published summaries"
    assert summary["counts"]["included_participants"] == 8
    assert summary["counts"]["included_trials"] == 1600
    reasons = {i["statistic"]: i["reason"] for i in summary["not_available"]}
    assert any("mixed model" in s for s in reasons) and any("exclusions" in s for s in reasons)
    assert all(reasons.values())
    # A dataset name given on the command line wins over the file name.
    named = run(
        "--summary", f"bedrooms={stein}", "--out", str(tmp_path / "h2"), "--resamples", "100"
    )
    assert named.exit_code == 0, named.output
    assert set(pd.read_csv(tmp_path / "h2" / "human.csv")["dataset"]) == {"bedrooms"}


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give SOURCE (an export folder or database URL), or published summaries"),
        (["export/", "--summary", "{stein}"], "not both"),
        (["--summary", "{stein}", "--joint"], "--joint: not available with published summaries"),
        (["--summary", "{stein}", "--min-median-rt", "200"], "--min-median-rt: not available"),
        (["--summary", "{images}"], "per-image file; give it with --image-summary"),
        (["--image-summary", "{stein}"], "per-participant file"),
        (["--summary", "{bad}"], "f_err_rt = 1.2 is outside [0, 1]"),
        (["--summary", "{missing}"], "file not found"),
    ],
)
def test_cli_errors_are_one_line_and_write_nothing(tmp_path, args, message):
    paths = {
        "stein": write_stein(tmp_path / "cifar10.csv"),
        "images": write_images(tmp_path / "cifar10_labeled_data.csv"),
        "bad": stein_text(tmp_path, "lsun256.csv", set_cell(1, "f_err_rt", 1.2)),
        "missing": tmp_path / "nowhere.csv",
    }
    out = tmp_path / "out"
    result = run(*[a.format(**paths) for a in args], "--out", str(out))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_report_runs_on_human_csv_from_summaries(tmp_path):
    people = [
        (model, fakes, reals)
        for model, base in (("m1", 10), ("m2", 20), ("m3", 30), ("m4", 40))
        for fakes, reals in ((base, base + 4), (base + 6, base), (base + 2, base + 2))
    ]
    human_dir = tmp_path / "human"
    made = run(
        "--summary",
        str(write_stein(tmp_path / "cifar10.csv", people)),
        "--out",
        str(human_dir),
        "--resamples",
        "200",
    )
    assert made.exit_code == 0, made.output
    errors = pd.read_csv(human_dir / "human.csv").set_index("model")["error"]
    rows = [
        {
            "dataset": "cifar10",
            "model": model,
            "encoder": "dinov2-vitl14",
            "encoder_pretrained": True,
            "metric": metric,
            "value": value,
            "std": "",
        }
        for model, error in errors.items()
        # FD falls as people are fooled more (agrees); recall rises with it (agrees).
        for metric, value in (("fd", 100 - 100 * error), ("prdc.recall", error))
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "metrics.csv", index=False)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        cli,
        [
            "report",
            "--human",
            str(human_dir / "human.csv"),
            "--metrics",
            str(tmp_path / "metrics.csv"),
            "--out",
            str(out),
            "--resamples",
            "200",
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "correlations.csv")
    assert (table["status"] == "ok").all()
    np.testing.assert_allclose(table["kendall"], 1.0)
    # The participant bootstrap ran on participant_errors.csv.
    assert table["kendall_participants_low"].notna().all()
    page = (out / "index.html").read_text()
    assert "published summaries (cifar10.csv), not from a study run with percept" in page
    assert "12 participants with" in page and "percept applied none" in page
    assert "were excluded" not in page


def test_blank_lines_are_skipped_and_lines_still_counted(tmp_path):
    path = write_stein(tmp_path / "cifar10.csv")
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:3], "", *lines[3:], ""]) + "\n")
    assert analyse([SummaryFile.parse(str(path))], resamples=100).human["participants"].sum() == 8
    lines[4] = lines[4].replace("participant_3,B", "participant_3,")
    path.write_text("\n".join([*lines[:3], "", *lines[3:]]) + "\n")
    with pytest.raises(PerceptError, match=r"cifar10\.csv, line 6 \(id participant_3, model \): "):
        analyse([SummaryFile.parse(str(path))], resamples=100)
