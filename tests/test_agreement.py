"""Pairwise agreement: the share of the model pairs people tell apart that a metric orders alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import kendalltau

from analysis.agreement import agreement_table, check_pairs, share_samples
from analysis.correlate import measures
from analysis.human import pairs_table
from percept.cli import cli
from percept.errors import PerceptError


def four_models():
    """Human errors A < B < C < D; people tell apart AB, AC, BC and BD (not AD, CD)."""
    human = pd.DataFrame({"dataset": "d", "model": list("ABCD"), "error": [0.1, 0.2, 0.3, 0.4]})
    told = {("A", "B"), ("A", "C"), ("B", "C"), ("B", "D")}
    pairs = pd.DataFrame(
        [
            {"dataset": "d", "model_a": a, "model_b": b, "difference": ea - eb}
            for i, (a, ea) in enumerate(zip("ABCD", human["error"], strict=True))
            for b, eb in zip("ABCD"[i + 1 :], human["error"][i + 1 :], strict=True)
        ]
    )
    pairs["significant"] = [
        (a, b) in told for a, b in zip(pairs["model_a"], pairs["model_b"], strict=True)
    ]
    metric_values = {
        # Higher is better. AB: 1<3 agrees; AC: 1<2 agrees; BC: 3>2 disagrees; BD: 3<4 agrees.
        "prdc.precision": [1.0, 3.0, 2.0, 4.0],
        # Lower is better, aligned -5,-5,-3,-6. AB: tie, does not count as agreeing;
        # AC: -5<-3 agrees; BC: -5<-3 agrees; BD: -5>-6 disagrees.
        "fd": [5.0, 5.0, 3.0, 6.0],
    }
    metrics = pd.DataFrame(
        [
            {"dataset": "d", "model": m, "encoder": "enc", "metric": metric, "value": v}
            for metric, values in metric_values.items()
            for m, v in zip("ABCD", values, strict=True)
        ]
    )
    return human, metrics, check_pairs(pairs, human, "pairs.csv")


def test_four_models_by_hand():
    human, metrics, pairs = four_models()
    table = agreement_table(measures(human, metrics), pairs, resamples=500).set_index("measure")
    assert table.loc["enc/prdc.precision", "agreement"] == 3 / 4
    assert table.loc["enc/fd", "agreement"] == 2 / 4
    assert (table["agreement_pairs"] == 4).all()
    for row in table.itertuples():
        assert 0 <= row.agreement_low <= row.agreement <= row.agreement_high <= 1


def test_the_bootstrap_weights_each_pair_by_how_often_its_models_were_drawn():
    # Pairs AB, AC, BC, BD as model indices; agree as for prdc.precision above.
    a, b = np.array([0, 0, 1, 1]), np.array([1, 2, 2, 3])
    agree = np.array([True, True, False, True])
    got = share_samples(agree, a, b, 4, 50, np.random.default_rng(3))
    counts = np.random.default_rng(3).multinomial(4, [0.25] * 4, size=50)
    for draw, value in zip(counts, got, strict=True):
        weights = [draw[i] * draw[j] for i, j in zip(a, b, strict=True)]
        if sum(weights) == 0:
            assert np.isnan(value)  # no told-apart pair survived this draw
        else:
            assert value == pytest.approx(np.dot(weights, agree) / sum(weights))
    # A draw of A, B, B, C: AB twice, AC once, BC twice; BD never. (2 + 1) / 5.
    assert share_samples(agree, a, b, 4, 1, FixedDraw([1, 2, 1, 0]))[0] == pytest.approx(3 / 5)


class FixedDraw:
    """Stands in for a Generator: always the given model counts."""

    def __init__(self, counts):
        self.counts = np.array(counts)

    def multinomial(self, n, p, size):
        return np.tile(self.counts, (size, 1))


def clustered_study(folder: Path) -> Path:
    """Three clusters of three models: people tell the clusters apart, not the models within
    one. human.csv and pairs.csv come from percept human's own pairs_table."""
    rng = np.random.default_rng(0)
    centres, offsets = (0.1, 0.25, 0.4), (0.0, 0.001, 0.002)
    rows, samples = [], {}
    for c, centre in enumerate(centres):
        for k, offset in enumerate(offsets):
            model = f"m{c}{k}"
            rows.append({"dataset": "faces", "model": model, "error": centre + offset})
            samples["faces", model] = centre + offset + rng.normal(0, 0.01, 5000)
    human = pd.DataFrame(rows)
    pairs = pairs_table(human, samples)
    between = pairs["model_a"].str[1] != pairs["model_b"].str[1]
    assert (pairs["significant"] == between).all()  # the plant worked
    # Aligned values: "matches" keeps the cluster order and reverses the order inside each
    # cluster; "reverses" does the opposite. Both have tau = +-0.5, far from 0 and 1.
    matches = [10 * c - k for c in range(3) for k in range(3)]
    reverses = [-10 * c + k for c in range(3) for k in range(3)]
    metrics = pd.DataFrame(
        [
            {"dataset": "faces", "model": r["model"], "encoder": "enc", "metric": metric, **v}
            for r, m, x in zip(rows, matches, reverses, strict=True)
            for metric, v in (("prdc.precision", {"value": m}), ("fd", {"value": -x}))
        ]
    )
    folder.mkdir(parents=True, exist_ok=True)
    human.to_csv(folder / "human.csv", index=False)
    pairs.to_csv(folder / "pairs.csv", index=False)
    metrics.to_csv(folder / "metrics.csv", index=False)
    return folder


def report(folder: Path, out: Path, *extra: str):
    return CliRunner().invoke(
        cli,
        [
            "report",
            "--human",
            str(folder / "human.csv"),
            "--metrics",
            str(folder / "metrics.csv"),
            "--out",
            str(out),
            "--resamples",
            "300",
            *extra,
        ],
    )


def test_agreement_is_one_where_the_metric_matches_people_and_zero_where_it_reverses(tmp_path):
    folder = clustered_study(tmp_path / "in")
    result = report(folder, tmp_path / "out")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "out" / "correlations.csv").set_index("measure")
    match, reverse = table.loc["enc/prdc.precision"], table.loc["enc/fd"]
    assert match["agreement"] == 1 and reverse["agreement"] == 0
    assert (match["agreement_low"], match["agreement_high"]) == (1, 1)
    assert (reverse["agreement_low"], reverse["agreement_high"]) == (0, 0)
    assert match["agreement_pairs"] == reverse["agreement_pairs"] == 27
    # The correlation over all pairs cannot tell these two apart the same way.
    assert match["kendall"] == pytest.approx(0.5) and reverse["kendall"] == pytest.approx(-0.5)
    page = (tmp_path / "out" / "index.html").read_text()
    assert "Pairwise agreement where people disagree" in page
    assert "people tell apart 27 of 36 pairs" in page
    assert "No pairs.csv" not in result.output


def test_pairs_option_and_its_errors(tmp_path):
    folder = clustered_study(tmp_path / "in")
    elsewhere = tmp_path / "elsewhere.csv"
    (folder / "pairs.csv").rename(elsewhere)
    without = report(folder, tmp_path / "without")
    assert without.exit_code == 0 and "pairwise agreement not computed" in without.output
    table = pd.read_csv(tmp_path / "without" / "correlations.csv")
    assert table["agreement"].isna().all()
    assert "Not computed: no pairs.csv" in (tmp_path / "without" / "index.html").read_text()
    given = report(folder, tmp_path / "given", "--pairs", str(elsewhere))
    assert given.exit_code == 0, given.output
    assert (pd.read_csv(tmp_path / "given" / "correlations.csv")["agreement"].notna()).all()
    assert str(elsewhere) in (tmp_path / "given" / "index.html").read_text()
    missing = report(folder, tmp_path / "x", "--pairs", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 2 and "nope.csv: file not found" in missing.output
    stray = pd.read_csv(elsewhere).replace({"model_a": {"m00": "M00"}})
    stray.to_csv(elsewhere, index=False)
    wrong = report(folder, tmp_path / "x", "--pairs", str(elsewhere))
    assert wrong.exit_code == 2 and "faces/M00" in wrong.output and "--pairs" in wrong.output


def test_check_pairs_refuses_what_it_cannot_read():
    human, _, pairs = four_models()
    with pytest.raises(PerceptError, match="missing column"):
        check_pairs(pairs.drop(columns="difference"), human, "p.csv")
    with pytest.raises(PerceptError, match="significant must be true or false"):
        check_pairs(pairs.assign(significant="maybe"), human, "p.csv")
    text = check_pairs(pairs.assign(significant=pairs["significant"].map(str)), human, "p.csv")
    assert text["significant"].tolist() == pairs["significant"].tolist()


def test_pairs_of_models_without_the_measure_do_not_count():
    human, metrics, pairs = four_models()
    # D has no fd: pair BD drops out, leaving AB (tie), AC, BC: 2 of 3.
    metrics = metrics[~((metrics["model"] == "D") & (metrics["metric"] == "fd"))]
    table = agreement_table(measures(human, metrics), pairs, resamples=200).set_index("measure")
    assert table.loc["enc/fd", "agreement_pairs"] == 3
    assert table.loc["enc/fd", "agreement"] == pytest.approx(2 / 3)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=3, max_value=40).flatmap(
        lambda n: st.tuples(st.permutations(range(n)), st.permutations(range(n)))
    )
)
def test_with_every_pair_told_apart_agreement_is_the_concordant_share(orders):
    # No ties and every pair significant: agreement = concordant / all = (1 + tau) / 2.
    errors, values = (np.asarray(o, dtype=np.float64) for o in orders)
    n = errors.size
    models = [f"m{i}" for i in range(n)]
    human = pd.DataFrame({"dataset": "d", "model": models, "error": errors})
    i, j = np.triu_indices(n, k=1)
    pairs = pd.DataFrame(
        {
            "dataset": "d",
            "model_a": np.asarray(models)[i],
            "model_b": np.asarray(models)[j],
            "difference": errors[i] - errors[j],
            "significant": True,
        }
    )
    metrics = pd.DataFrame(
        {"dataset": "d", "model": models, "encoder": "e", "metric": "prdc.density", "value": values}
    )
    row = agreement_table(measures(human, metrics), check_pairs(pairs, human, "p"), resamples=100)
    tau = kendalltau(errors, values).statistic
    assert row["agreement"].iloc[0] == pytest.approx((1 + tau) / 2, abs=1e-12)
    assert row["agreement_pairs"].iloc[0] == n * (n - 1) // 2
