"""The encoder comparison headline and honest uncertainty: planted datasets, the CLI, the page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import kendalltau

from analysis import report as reporting
from analysis import uncertainty
from analysis.by_encoder import POOLED
from analysis.correlate import CONSTANT, correlations, kendall, measures
from percept.cli import cli

GOOD, FLAT, RANDOM = "dinov2-vitl14", "inception", "random:inception"
DATASETS = ("cifar10", "imagenet", "lsun")


def untied_order(n: int, seed: int) -> np.ndarray:
    """A permutation of range(n) whose Kendall tau with range(n) is as near 0 as can be
    (exactly 0 when n(n-1)/2 is even)."""
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(n) for _ in range(500)]
    taus = [abs(kendall(np.arange(n)[None], order[None])[0]) for order in orders]
    return orders[int(np.argmin(taus))]


def planted(folder: Path, n_models: int = 8, datasets=DATASETS, seed: int = 0) -> Path:
    """human.csv + participant_errors.csv + metrics.csv: FD on GOOD tracks people (tau 1),
    FD on FLAT does not (tau exactly 0), FD on a random-weight encoder tracks them too (it
    must still never be "best"), prdc.recall is constant in the first dataset only and
    prdc.density constant everywhere."""
    rng = np.random.default_rng(seed)
    human, people, rows = [], [], []
    for k, dataset in enumerate(datasets):
        errors = np.sort(rng.uniform(0.1, 0.45, n_models))
        flat = untied_order(n_models, seed + k)
        for i, error in enumerate(errors):
            model = f"model-{i}"
            human.append({"dataset": dataset, "model": model, "error": error})
            people += [
                {"dataset": dataset, "model": model, "participant_id": f"{model}-{p}", "error": e}
                for p, e in enumerate(error + rng.normal(0, 0.01, 30))
            ]
            values = {
                (GOOD, "fd"): 100 - 200 * error,
                (FLAT, "fd"): 50.0 + flat[i],
                (RANDOM, "fd"): 300 - 400 * error,
                (GOOD, "prdc.recall"): 1.0 if k == 0 else error,
                (GOOD, "prdc.density"): 0.5,
                (FLAT, "kd"): -error + rng.normal(0, 0.01),
            }
            rows += [
                {
                    "dataset": dataset,
                    "model": model,
                    "encoder": encoder,
                    "encoder_pretrained": not encoder.startswith("random:"),
                    "metric": metric,
                    "value": value,
                }
                for (encoder, metric), value in values.items()
            ]
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(human).to_csv(folder / "human.csv", index=False)
    pd.DataFrame(people).to_csv(folder / "participant_errors.csv", index=False)
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)
    return folder


def run_report(inputs: Path, out: Path, *extra: str):
    result = CliRunner().invoke(
        cli,
        [
            "report",
            "--human",
            str(inputs / "human.csv"),
            "--metrics",
            str(inputs / "metrics.csv"),
            "--out",
            str(out),
            "--resamples",
            "400",
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uncertainty")
    inputs = planted(folder / "in")
    result = run_report(inputs, folder / "report")
    return folder / "report", result.output


def test_by_encoder_puts_the_tracking_encoder_above_the_flat_one_everywhere(made):
    out, _ = made
    table = pd.read_csv(out / "by_encoder.csv", keep_default_na=False, na_values=[""])
    expected = {
        "dataset",
        "metric",
        "encoder",
        "pretrained",
        "kendall",
        "kendall_low",
        "kendall_high",
        "spearman",
        "n_models",
    }
    assert expected <= set(table.columns)
    assert set(table["dataset"]) == {*DATASETS, POOLED}
    fd = table[table["metric"] == "fd"].set_index(["dataset", "encoder"])
    for dataset in (*DATASETS, POOLED):
        good, flat = fd.loc[(dataset, GOOD)], fd.loc[(dataset, FLAT)]
        assert good["kendall"] >= 0.8 and abs(flat["kendall"]) <= 0.05, dataset
        # Not just the estimates: the intervals do not even touch.
        assert good["kendall_low"] > flat["kendall_high"], dataset
        assert good["kendall_low"] <= good["kendall"] <= good["kendall_high"]
        assert bool(good["pretrained"]) and not bool(fd.loc[(dataset, RANDOM), "pretrained"])
    assert (fd.xs(GOOD, level="encoder").loc[list(DATASETS), "n_models"] == 8).all()
    assert fd.loc[(POOLED, GOOD), "n_models"] == 24 and fd.loc[(POOLED, GOOD), "datasets"] == 3


def test_the_flat_encoders_tau_is_exactly_zero_where_planted(made):
    out, _ = made
    table = pd.read_csv(out / "correlations.csv").set_index(["dataset", "measure"])
    human = pd.read_csv(out.parent / "in" / "human.csv")
    metrics = pd.read_csv(out.parent / "in" / "metrics.csv")
    for dataset in DATASETS:
        assert table.loc[(dataset, f"{FLAT}/fd"), "kendall"] == pytest.approx(0, abs=1e-12)
        mine = human[human["dataset"] == dataset].merge(
            metrics[(metrics["encoder"] == FLAT) & (metrics["metric"] == "fd")]
        )
        assert kendalltau(mine["error"], mine["value"]).statistic == pytest.approx(0, abs=1e-12)
        assert table.loc[(dataset, f"{GOOD}/fd"), "kendall"] == pytest.approx(1)


def test_a_constant_metric_is_not_computed_and_pools_over_no_dataset(made):
    out, _ = made
    table = pd.read_csv(out / "correlations.csv")
    density = table[table["measure"] == f"{GOOD}/prdc.density"]
    assert len(density) == 3 and (density["status"] == CONSTANT).all()
    for column in ("kendall", "kendall_p", "rank", "kendall_low", "agreement"):
        assert density[column].isna().all(), column
    recall = table[table["measure"] == f"{GOOD}/prdc.recall"].set_index("dataset")
    assert recall.loc["cifar10", "status"] == CONSTANT and pd.isna(recall.loc["cifar10", "rank"])
    assert (recall.loc[["imagenet", "lsun"], "status"] == "ok").all()
    pooled = pd.read_csv(out / "pooled.csv").set_index("measure")
    assert f"{GOOD}/prdc.density" not in pooled.index
    assert pooled.loc[f"{GOOD}/prdc.recall", "datasets"] == 2
    by_encoder = pd.read_csv(out / "by_encoder.csv").set_index(["dataset", "metric", "encoder"])
    assert by_encoder.loc[(POOLED, "prdc.density", GOOD), "status"] == "not computed in any dataset"
    assert by_encoder.loc[("cifar10", "prdc.recall", GOOD), "status"] == CONSTANT


def test_a_random_weight_encoder_is_never_best(made):
    out, output = made
    table = pd.read_csv(out / "correlations.csv", keep_default_na=False, na_values=[""])
    pooled = pd.read_csv(out / "pooled.csv", keep_default_na=False, na_values=[""])
    for frame in (table, pooled):
        random = frame[frame["measure"] == f"{RANDOM}/fd"]
        assert len(random) and (random["versus_best"] == uncertainty.RANDOM).all()
        # It tracks people as well as the best does: only the rule keeps it out.
        np.testing.assert_allclose(random["kendall"], 1.0)
        best = set(frame.loc[frame["versus_best"] == uncertainty.BEST, "measure"])
        assert f"{GOOD}/fd" in best and f"{RANDOM}/fd" not in best
        # A control, not a candidate: it has no rank either.
        assert random["rank"].isna().all()
    lines = [line for line in output.splitlines() if ": Best" in line]
    assert len(lines) == len(DATASETS) + 1
    for line in lines:
        assert RANDOM not in line.split("Not eligible")[0], line
        assert f"{GOOD}/fd, τ = +1.00 [" in line.split("Not distinguishable")[0]
        assert "Not eligible: 1 measure from random-weight encoders." in line


def test_best_lists_the_measures_it_cannot_be_told_from(made):
    out, _ = made
    table = pd.read_csv(out / "correlations.csv", keep_default_na=False, na_values=[""])
    for dataset, frame in table.groupby("dataset"):
        best = frame[frame["versus_best"] == uncertainty.BEST]
        low, high = best["kendall_low"].min(), best["kendall_high"].max()
        eligible = frame[
            (frame["versus_best"] != "") & (frame["versus_best"] != uncertainty.RANDOM)
        ]
        for row in eligible.itertuples():
            overlaps = row.kendall_low <= high and row.kendall_high >= low
            if row.versus_best != uncertainty.BEST:
                assert (row.versus_best == uncertainty.SAME) == overlaps, (dataset, row.measure)
        # The flat FD (tau 0) is told apart from the best; the noisy KD (tau ~1) is not.
        labels = frame.set_index("measure")["versus_best"]
        assert labels[f"{FLAT}/fd"] == uncertainty.BELOW
        assert labels[f"{FLAT}/kd"] in (uncertainty.SAME, uncertainty.BEST)


def test_pooled_interval_is_the_per_dataset_one_for_a_single_dataset(tmp_path):
    inputs = planted(tmp_path, datasets=("only",))
    human, metrics, scores, participants, summary = reporting.read_inputs(
        inputs / "human.csv", inputs / "metrics.csv", None
    )
    report = reporting.build(human, metrics, scores, participants, summary, resamples=300)
    per = report.correlations.set_index("measure")
    pooled = report.pooled.set_index("measure")
    for measure in pooled.index:
        for column in ("kendall", "kendall_low", "kendall_high"):
            assert pooled.loc[measure, column] == pytest.approx(per.loc[measure, column])


def test_pooled_interval_averages_the_resamples_of_each_dataset():
    # Hand-made samples: the pooled interval is the percentile interval of the row means.
    table = pd.DataFrame(
        {
            "dataset": ["a", "b"],
            "measure": ["m", "m"],
            "status": ["ok", "ok"],
            "models": [8, 5],
            "pearson": [0.5, 0.1],
            "spearman": [0.5, 0.1],
            "kendall": [0.4, 0.2],
            "pretrained": [True, True],
        }
    )
    a = np.linspace(0, 1, 1001)
    b = np.linspace(-1, 0, 1001)[::-1]
    b[5] = np.nan  # a resample with no ordering: its mean is dataset a's alone
    pooled = uncertainty.pooled(table, {("a", "m"): a, ("b", "m"): b}).iloc[0]
    means = np.where(np.isnan(b), a, (a + b) / 2)
    assert pooled["kendall"] == pytest.approx(0.3)
    assert pooled["kendall_low"] == pytest.approx(np.quantile(means, 0.025))
    assert pooled["kendall_high"] == pytest.approx(np.quantile(means, 0.975))
    assert pooled["models"] == 13 and pooled["few_models"]  # b has 5 models


def test_five_models_carry_the_few_models_mark(tmp_path, browser):
    inputs = planted(tmp_path / "in", n_models=5, datasets=("small",))
    big = planted(tmp_path / "big", n_models=6, datasets=("large",), seed=1)
    for name in ("human.csv", "participant_errors.csv", "metrics.csv"):
        both = pd.concat([pd.read_csv(inputs / name), pd.read_csv(big / name)])
        both.to_csv(inputs / name, index=False)
    run_report(inputs, tmp_path / "report")
    table = pd.read_csv(tmp_path / "report" / "correlations.csv")
    computed = table[table["status"] == "ok"].set_index(["dataset", "measure"])
    assert computed.loc["small", "few_models"].all()
    assert not computed.loc["large", "few_models"].any()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto((tmp_path / "report" / "index.html").as_uri())
    panels = page.eval_on_selector_all(
        "div.panel", "els => els.map(e => [e.querySelector('h3').innerText, e.innerText])"
    )
    text = dict(panels)
    assert "few models" in text["small (5 models)"]
    assert "few models" not in text["large (6 models)"]
    assert "few models" in text["Pooled: mean over datasets (2 at most)"]
    best = page.eval_on_selector_all("table.best tr", "rows => rows.map(r => r.innerText)")
    small = next(row for row in best if row.startswith("small"))
    assert f"{GOOD}/fd τ = +1.00" in small and "few models" in small
    large = next(row for row in best if row.startswith("large"))
    assert f"{GOOD}/fd τ = +1.00" in large and "few models" not in large
    page.close()


def test_constant_human_error_is_not_computed():
    human = pd.DataFrame({"dataset": "d", "model": list("abcd"), "error": 0.3})
    metrics = pd.DataFrame(
        {
            "dataset": "d",
            "model": list("abcd"),
            "encoder": "enc",
            "metric": "fd",
            "value": [1.0, 2.0, 3.0, 4.0],
        }
    )
    table = correlations(measures(human, metrics), resamples=100, permutations=100)
    assert table["status"].iloc[0] == "human error constant over models: not computed"
    assert "kendall" not in table or table["kendall"].isna().all()


def test_headline_on_the_page_shows_the_tracking_encoder_first(made, browser):
    out, _ = made
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto((out / "index.html").as_uri())
    headings = page.eval_on_selector_all("h2", "els => els.map(e => e.innerText)")
    assert headings[0] == "The same metric on each encoder"
    panels = page.eval_on_selector_all(
        "div.panel table",
        """tables => tables.map(t => {
            const head = [...t.rows[0].cells].map(c => c.innerText.split('\\n')[0]);
            const fd = [...t.rows].find(r => r.cells[0].innerText === 'fd');
            return [t.closest('div').querySelector('h3').innerText, head,
                    [...fd.cells].map(c => c.innerText)];
        })""",
    )
    assert len(panels) == len(DATASETS) + 1
    for title, head, fd in panels:
        good, flat = fd[head.index(GOOD)], fd[head.index(FLAT)]
        assert good.startswith("+1.00 ★"), (title, good)
        assert float(flat.split()[0]) == pytest.approx(0, abs=0.05), (title, flat)
        assert head.index(RANDOM) > head.index(FLAT)  # random-weight encoders come last
    widths = page.eval_on_selector_all("div.panel", "els => els.map(e => e.scrollWidth)")
    assert max(widths) <= 1280
    page.close()


def test_a_dataset_named_pooled_is_refused(tmp_path):
    inputs = planted(tmp_path, datasets=("pooled",), n_models=4)
    result = CliRunner().invoke(
        cli,
        [
            "report",
            "--human",
            str(inputs / "human.csv"),
            "--metrics",
            str(inputs / "metrics.csv"),
            "--out",
            str(tmp_path / "out"),
            "--resamples",
            "100",
        ],
    )
    assert result.exit_code == 2 and "a dataset is named 'pooled'" in result.output


def test_headline_interval_covers_the_planted_tau():
    # metric = error + normal noise over uniform errors: population tau = (2/pi) arcsin(rho).
    sd_error, sd_noise = np.sqrt((0.5 - 0.1) ** 2 / 12), 0.08
    tau = 2 / np.pi * np.arcsin(sd_error / np.hypot(sd_error, sd_noise))
    covered = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        errors = rng.uniform(0.1, 0.5, 12)
        models = [f"m{i}" for i in range(12)]
        human = pd.DataFrame({"dataset": "a", "model": models, "error": errors})
        people = pd.DataFrame(
            {
                "dataset": "a",
                "model": np.repeat(models, 20),
                "error": np.repeat(errors, 20) + rng.normal(0, 0.02, 240),
            }
        )
        metrics = pd.DataFrame(
            {
                "dataset": "a",
                "model": models,
                "encoder": "enc",
                "metric": "prdc.precision",
                "value": errors + rng.normal(0, sd_noise, 12),
            }
        )
        samples = uncertainty.kendall_samples(
            measures(human, metrics), people, resamples=1000, seed=seed
        )
        low, high = np.nanquantile(samples["a", "enc/prdc.precision"], [0.025, 0.975])
        covered += low <= tau <= high
    assert covered >= 32, covered  # nominal 95%; 40 tries
