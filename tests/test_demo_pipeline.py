"""`percept demo` end to end: the planted realism order must come back from the crowd."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import kendalltau

from percept.cli import cli

pytestmark = pytest.mark.slow


def test_demo_recovers_the_planted_realism(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--participants", "60"])
    assert result.exit_code == 0, result.output
    human = pd.read_csv(out / "human" / "human.csv")
    truth = pd.read_csv(out / "stimuli" / "ground_truth.csv")
    both = human.merge(truth, on=["dataset", "model"])
    assert len(both) == 10
    tau = kendalltau(both["planted_realism"], both["error"]).statistic
    assert tau >= 0.8, both[["dataset", "model", "planted_realism", "error"]]
    assert f"Kendall tau = {tau:.2f}" in result.output
    assert (out / "crowd" / "truth.csv").is_file()
    assert (out / "export" / "data_dictionary.md").is_file()
    # The crowd was scripted, and every output says so.
    summary = json.loads((out / "human" / "human_summary.json").read_text())
    assert summary["simulated"]["participants"] == summary["counts"]["participants"] > 0
    if (out / "metrics.csv").is_file():
        page = (out / "report" / "index.html").read_text()
        assert "Simulated data." in page and "pixel: no network" in page
        assert "no pretrained weights" in result.output
        # Volatility and the normality diagnostic (issue 21) are on the demo's page.
        assert "Volatility: can each metric tell the models apart?" in page
        assert "rank stability" in page and "Mardia" in page
        assert (out / "report" / "volatility-scenes.png").is_file()
        assert (out / "report" / "pair_swaps.csv").is_file()
    assert "percept serve --demo" in result.output
