"""Correlation report: planted relations, alignment, small datasets, the HTML in Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import kendalltau

from analysis.correlate import correlations, kendall, kendall_matrix, measures
from analysis.exclusions import ExclusionRules
from analysis.human import analyse
from analysis.report import build, plain_ticks, styles, write
from analysis.simulation import simulate
from percept.cli import cli

SCREENS = Path(__file__).resolve().parent.parent / "docs" / "screens"


def planted(n_models: int = 10, datasets=("a", "b"), noise: float = 0.05, seed: int = 0):
    """human.csv, participant_errors.csv and metrics.csv with known relations."""
    rng = np.random.default_rng(seed)
    human, people, rows = [], [], []
    for dataset in datasets:
        errors = rng.uniform(0.1, 0.5, n_models)
        for i, error in enumerate(errors):
            model = f"m{i}"
            human.append({"dataset": dataset, "model": model, "error": error})
            people += [
                {
                    "dataset": dataset,
                    "model": model,
                    "participant_id": p,
                    "error": error + rng.normal(0, 0.02),
                }
                for p in range(20)
            ]
            values = {
                # Lower is better and falls as people are fooled more: agrees with people.
                "fd": 10 - 20 * error,
                # Higher is better, rises with human error: agrees.
                "prdc.precision": error,
                # Agrees, but noisily.
                "kd": -error + rng.normal(0, noise),
            }
            rows += [
                {
                    "dataset": dataset,
                    "model": model,
                    "encoder": "enc",
                    "encoder_pretrained": True,
                    "metric": metric,
                    "value": value,
                }
                for metric, value in values.items()
            ]
    return pd.DataFrame(human), pd.DataFrame(people), pd.DataFrame(rows)


def test_monotone_metrics_give_tau_one_after_alignment():
    human, people, metrics = planted()
    table = correlations(measures(human, metrics), people, resamples=500, permutations=500)
    exact = table[table["measure"].isin(["enc/fd", "enc/prdc.precision"])]
    assert len(exact) == 4
    np.testing.assert_allclose(exact["kendall"], 1.0)
    assert (exact["spearman"] > 0.999).all()
    # FD itself falls as human error rises: raw tau is -1, aligned it is +1.
    a = human[human["dataset"] == "a"].merge(metrics[metrics["metric"] == "fd"])
    assert kendalltau(a["error"], a["value"]).statistic == pytest.approx(-1.0)
    assert (exact["kendall_p"] < 0.01).all()
    assert set(table["convention"]) == {table["convention"].iloc[0]}


def test_kendall_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(50, 9)).astype(float)
    y = rng.integers(0, 4, size=(50, 9)).astype(float)
    ours = kendall(x, y)
    theirs = [kendalltau(a, b).statistic for a, b in zip(x, y, strict=True)]
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_noisy_metric_interval_contains_the_planted_value():
    # metric = error + normal noise: population tau = (2 / pi) arcsin(rho) (Greiner).
    sd_error, sd_noise = np.sqrt((0.5 - 0.1) ** 2 / 12), 0.08
    rho = sd_error / np.hypot(sd_error, sd_noise)
    tau = 2 / np.pi * np.arcsin(rho)
    covered = 0
    for seed in range(40):
        human, people, metrics = planted(n_models=12, datasets=("a",), noise=sd_noise, seed=seed)
        row = (
            correlations(
                measures(human, metrics), people, resamples=1000, permutations=200, seed=seed
            )
            .set_index("measure")
            .loc["enc/kd"]
        )
        covered += row["kendall_models_low"] <= tau <= row["kendall_models_high"]
    assert covered >= 32, covered  # nominal 95%; 40 tries


def test_datasets_with_fewer_than_three_models_are_too_small():
    human, people, metrics = planted(n_models=2, datasets=("tiny",))
    big_h, big_p, big_m = planted(n_models=6, datasets=("big",))
    data = measures(pd.concat([human, big_h]), pd.concat([metrics, big_m]))
    table = correlations(data, pd.concat([people, big_p]), resamples=200, permutations=200)
    tiny = table[table["dataset"] == "tiny"]
    assert tiny["status"].str.startswith("too few models").all() and tiny["kendall"].isna().all()
    assert (table.loc[table["dataset"] == "big", "status"] == "ok").all()
    assert set(kendall_matrix(data)["dataset"]) == {"big", "all"}


@pytest.fixture(scope="module")
def report_inputs(tmp_path_factory) -> Path:
    """percept human on a simulated study, and a metrics.csv with one random-weight encoder."""
    folder = tmp_path_factory.mktemp("report-inputs")
    models = [
        (d, f"model-{i}", q)
        for d in ("faces", "rooms")
        for i, q in enumerate(np.linspace(-1, 0.9, 5))
    ]
    # A dataset of two models: too few to correlate, listed under "Not computed".
    models += [("tiny", "model-0", -0.5), ("tiny", "model-1", 0.5)]
    sim = simulate(models, participants_per_model=8, real_trials=20, fake_trials=20, seed=0)
    result = analyse(sim.trials, ExclusionRules(), resamples=500, mixed=False)
    result.write(folder / "human")
    truth = sim.truth.set_index(["dataset", "model"])["error"]
    rng = np.random.default_rng(0)
    rows = []
    for (dataset, model), error in truth.items():
        for encoder, pretrained, noise in (
            ("dinov2-vitl14", True, 0.02),
            ("random:inception", False, 0.5),
            ("pixel", True, 0.3),
        ):
            for metric, sign in (("fd", -1), ("prdc.recall", 1)):
                rows.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "encoder": encoder,
                        "encoder_pretrained": pretrained,
                        "metric": metric,
                        "value": sign * error + rng.normal(0, noise),
                        "std": "",
                    }
                )
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)
    pd.DataFrame(
        [
            {
                "dataset": d,
                "model": m,
                "score": "reverse_kl",
                "value": -10 * e,
                "direction": "lower",
            }
            for (d, m), e in truth.items()
        ]
    ).to_csv(folder / "scores.csv", index=False)
    return folder


def test_report_command_and_html_in_chromium(report_inputs, browser, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(
        cli,
        [
            "report",
            "--human",
            str(report_inputs / "human" / "human.csv"),
            "--metrics",
            str(report_inputs / "metrics.csv"),
            "--scores",
            str(report_inputs / "scores.csv"),
            "--out",
            str(out),
            "--resamples",
            "300",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Best metric per dataset" in result.output
    for name in ("index.html", "correlations.csv", "kendall_matrix.csv"):
        assert (out / name).is_file()
    assert list(out.glob("*.svg")) and len(list(out.glob("*.png"))) == len(list(out.glob("*.svg")))
    table = pd.read_csv(out / "correlations.csv")
    assert {"enc", "score"} <= set(table["kind"].fillna("enc").replace({"metric": "enc"}))
    matrix = pd.read_csv(out / "kendall_matrix.csv")
    assert {"human_error", "reverse_kl", "dinov2-vitl14/fd"} <= set(matrix["measure"])

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto((out / "index.html").as_uri())
    images = page.eval_on_selector_all("img", "els => els.map(e => e.complete && e.naturalWidth)")
    assert images and all(images), images
    html = page.content()
    assert "randomly initialised, no pretrained weights" in html
    assert "pixel: no network" in html and "pixel: pretrained" not in html
    assert 'class="random"' in html and "random:inception/fd (random weights)" in html
    # Simulated participants are said so at the top and in the methods.
    assert html.index("Simulated data.") < html.index("Best metric per dataset")
    assert "Simulated participants:" in html[html.index("<h2>Methods</h2>") :]
    # Exclusion rules as sentences, not JSON.
    assert "Participants who failed any attention check were excluded." in html
    assert '"max_attention_failures"' not in html
    # Nothing wider than the window: not the page, not any table.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, width
    tables = page.eval_on_selector_all(
        "table", "els => els.map(e => [e.scrollWidth, e.parentElement.clientWidth, e.className])"
    )
    assert tables and all(w <= box <= 1280 for w, box, _ in tables), tables
    not_computed = html[html.index("<h2>Not computed</h2>") : html.index("<h2>Methods</h2>")]
    assert not_computed.count("too few models (2 &lt; 3)") == 7  # every measure of "tiny"
    best = html[html.index("Best metric per dataset") : html.index("Pooled across datasets")]
    assert "random:" not in best and "dinov2-vitl14" in best
    SCREENS.mkdir(parents=True, exist_ok=True)
    for name, heading in (
        ("top", None),
        ("pooled", "Pooled across datasets"),
        ("figures", "Figures"),
        ("tables", "All correlations"),
        ("methods", "Not computed"),
    ):
        if heading:
            page.locator("h2", has_text=heading).first.evaluate("e => e.scrollIntoView()")
        page.screenshot(path=SCREENS / f"report-{name}.png")
    page.close()
    assert_figures_readable(out)


def assert_figures_readable(out: Path, heatmap_labels: int | None = None) -> None:
    """Every figure: text of at least 9 pt, and nothing cut at its edges."""
    from PIL import Image

    for svg in out.glob("*.svg"):
        sizes = [float(x) for x in re.findall(r"font-size: ([0-9.]+)px", svg.read_text())]
        assert sizes and min(sizes) >= 9, (svg.name, min(sizes))
    for png in out.glob("*.png"):
        pixels = np.asarray(Image.open(png).convert("L"))
        edges = np.concatenate([pixels[:2].ravel(), pixels[-2:].ravel()])
        edges = np.concatenate([edges, pixels[:, :2].ravel(), pixels[:, -2:].ravel()])
        assert edges.min() == 255, f"{png.name}: drawn up to its edge (clipped?)"
    if heatmap_labels:
        _, height = Image.open(out / "kendall-matrix.png").size
        # 9-pt labels at 100 dpi need 12.5 px a row.
        assert height >= heatmap_labels * 9 / 72 * 100, height


def test_heatmap_grows_with_its_measures(tmp_path):
    """A Kendall matrix of 31 measures keeps 9-pt labels: the figure grows, not the text shrinks."""
    rng = np.random.default_rng(3)
    human = pd.DataFrame(
        {"dataset": "d", "model": [f"model-{i}" for i in range(22)], "error": rng.random(22)}
    )
    metrics = pd.DataFrame(
        [
            {
                "dataset": "d",
                "model": m,
                "encoder": "an-encoder-with-a-long-name",
                "metric": f"lab_score_{k:02d}",
                "value": e + rng.normal(0, 0.1 * k),
                "better": "higher",
            }
            for m, e in zip(human["model"], human["error"], strict=True)
            for k in range(30)
        ]
    )
    result = build(human, metrics, resamples=100)
    write(result, tmp_path)
    assert_figures_readable(tmp_path, heatmap_labels=31)
    # The scatter legend tells 22 models apart: no colour-and-marker pair twice.
    looks = styles(22)
    assert len(set(looks)) == 22
    assert all(looks[i][0] != looks[i + 1][0] for i in range(21))
    # CSV numbers keep full precision.
    back = pd.read_csv(tmp_path / "correlations.csv")
    assert (back["pearson"].to_numpy() == result.correlations["pearson"].to_numpy()).all()


def test_report_inputs_are_checked(report_inputs, tmp_path):
    bad = tmp_path / "metrics.csv"
    bad.write_text("dataset,model,encoder,metric,value\nfaces,model-0,enc,nonsense,1\n")
    result = CliRunner().invoke(
        cli,
        [
            "report",
            "--human",
            str(report_inputs / "human" / "human.csv"),
            "--metrics",
            str(bad),
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 2 and "unknown metric 'nonsense'" in result.output
    missing = CliRunner().invoke(
        cli,
        [
            "report",
            "--human",
            str(tmp_path / "nope.csv"),
            "--metrics",
            str(bad),
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert missing.exit_code == 2 and "file not found" in missing.output


def test_tick_labels_read_alone():
    """No offset (`1e-8+1.0000006`) or multiplier: each tick carries its own digits."""
    assert plain_ticks([1.0000006, 1.00000061, 1.00000062]) == [
        "1.00000060",
        "1.00000061",
        "1.00000062",
    ]
    assert plain_ticks([0, 0.25, 0.5]) == ["0.00", "0.25", "0.50"]
    assert plain_ticks([-800, -700]) == ["\u2212800", "\u2212700"]
    assert plain_ticks([1e-12, 2e-12]) == ["1e\u221212", "2e\u221212"]
