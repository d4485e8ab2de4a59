"""Volatility (bootstrap resamples of every metric) and the feature normality diagnostic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_report import assert_figures_readable, planted

from analysis import volatility
from analysis.metrics.fd import fd
from analysis.normality import diagnose, mardia
from analysis.report import build, write
from percept.errors import PerceptError


def fd_of(metric, real, fake, side):
    return [(metric, fd(real["features"], fake["features"]))]


def swap_of(real, a, b, resamples=200, seed=0):
    """Fake-side swap probability of models a and b under FD, and the tables."""
    frame = volatility.resample(
        ["fd"], {"features": real}, {"a": {"features": a}, "b": {"features": b}}, fd_of,
        resamples=resamples, seed=seed,
    ).assign(dataset="d", encoder="e")  # fmt: skip
    swaps = volatility.pair_swaps(frame, {"fd": "lower"}).set_index("side")
    return swaps, frame


def planted_pair(n: int, shift: float, d: int = 4, seed: int = 0):
    rng = np.random.default_rng([seed, n])
    real = rng.standard_normal((n, d))
    a = rng.standard_normal((n, d))
    b = rng.standard_normal((n, d))
    b[:, 0] += shift  # model b is worse by a known mean shift along one feature
    return real, a, b


def test_swap_probability_falls_as_the_shift_and_the_sample_grow():
    # One planted draw is itself noisy (at a small shift the two samples may even come
    # out in the wrong order), so each cell averages 10 independent planted draws.
    sizes, shifts = (60, 180, 540), (0.25, 0.4, 0.65)
    swap = np.zeros((len(sizes), len(shifts)))
    for i, n in enumerate(sizes):
        for j, shift in enumerate(shifts):
            found = [swap_of(*planted_pair(n, shift, seed=r), resamples=100)[0] for r in range(10)]
            swap[i, j] = np.mean([f.loc["fake", "swap_probability"] for f in found])
    # Non-increasing along both axes, and strictly so wherever the larger one is not ~0.
    for before, after in [(swap[:, :-1], swap[:, 1:]), (swap[:-1], swap[1:])]:
        assert (after <= before).all(), swap
        assert (after[before > 0.02] < before[before > 0.02]).all(), swap
    assert swap[0, 0] > 0.2 and swap[-1, -1] < 0.01, swap  # from hard to tell to always told


def test_identical_models_swap_like_a_coin_flip():
    rng = np.random.default_rng(3)
    real, same = rng.standard_normal((200, 8)), rng.standard_normal((200, 8))
    for seed in range(3):
        swaps, frame = swap_of(real, same, same, resamples=200, seed=seed)
        assert abs(swaps.loc["fake", "swap_probability"] - 0.5) <= 0.1
        assert not swaps.loc["fake", "separated"]
        # Resampling the shared real images moves both identically: a tie every time.
        assert swaps.loc["real", "swap_probability"] == 0.5
        full = pd.DataFrame(
            {"dataset": "d", "encoder": "e", "metric": "fd", "model": ["a", "b"],
             "value": [fd(real, same)] * 2}
        )  # fmt: skip
        # Tied in the full data: no ranking to reproduce.
        stability = volatility.rank_stability(frame, full, {"fd": "lower"})
        assert stability["rank_stability"].isna().all()


def test_rank_stability_and_summary_of_clearly_different_models():
    real, a, b = planted_pair(400, 2.0)
    swaps, frame = swap_of(real, a, b, resamples=50)
    assert (swaps["swap_probability"] == 0).all() and swaps["separated"].all()
    full = pd.DataFrame(
        {"dataset": "d", "encoder": "e", "metric": "fd", "model": ["a", "b"],
         "value": [fd(real, a), fd(real, b)]}
    )  # fmt: skip
    stability = volatility.rank_stability(frame, full, {"fd": "lower"})
    assert (stability["rank_stability"] == 1).all()
    # The reverse of the true order is never reproduced.
    reversed_ = full.assign(value=full["value"].to_numpy()[::-1])
    assert (
        volatility.rank_stability(frame, reversed_, {"fd": "lower"})["rank_stability"] == 0
    ).all()
    table = volatility.summary(frame).set_index("model")
    mine = frame[(frame["model"] == "b") & (frame["side"] == "fake")]["value"]
    assert table.loc["b", "fake_std"] == pytest.approx(np.std(mine, ddof=1), rel=1e-12)
    assert table.loc["b", "fake_low"] == pytest.approx(np.quantile(mine, 0.025), rel=1e-12)
    assert table.loc["b", "fake_low"] < fd(real, b) < table.loc["b", "fake_high"]


def test_a_metric_undefined_on_a_resample_is_nan_and_counted():
    def fragile(metric, real, fake, side):
        if len(np.unique(fake["features"], axis=0)) < len(fake["features"]):
            raise ValueError("duplicates")
        return [(metric, 1.0)]

    x = np.arange(20.0).reshape(10, 2)
    frame = volatility.resample(["m"], {"features": x}, {"a": {"features": x}}, fragile,
                                resamples=5)  # fmt: skip
    assert frame["value"].isna().sum() == 5  # every fake-side resample has duplicates
    counted = volatility.failures(frame)
    assert counted.to_dict("records") == [{"metric": "m", "side": "fake", "undefined": 5, "of": 5}]


def test_report_shows_volatility_and_normality(tmp_path):
    human, people, metrics = planted(n_models=5, datasets=("a",))
    rng = np.random.default_rng(0)
    resamples = pd.concat(
        [
            metrics.assign(
                side=side, resample=b, value=metrics["value"] + rng.normal(0, 0.3, len(metrics))
            )
            for side in ("fake", "real")
            for b in range(30)
        ]
    )[list(volatility.RESAMPLE_COLUMNS)]
    where = {"dataset": "a", "encoder": "enc"}
    normality = pd.DataFrame(
        [
            {**where, "source": "real", "model": "", **diagnose(rng.standard_normal((80, 6)))},
            {**where, "source": "fake", "model": "m0", **diagnose(rng.exponential(size=(80, 6)))},
        ]
    )
    report = build(human, metrics, participants=people, resamples=200,
                   metric_resamples=resamples, normality=normality)  # fmt: skip
    assert set(report.stability["measure"]) == {"enc/fd", "enc/kd", "enc/prdc.precision"}
    assert len(report.swaps) == 3 * 2 * 10  # measures x sides x pairs of 5 models
    out = tmp_path / "report"
    write(report, out)
    page = (out / "index.html").read_text()
    assert "Volatility: can each metric tell the models apart?" in page
    assert "rank stability" in page and "pairs not separated" in page
    assert "Mardia" in page and "sets rejected at 5%" in page
    assert (out / "volatility-a.png").is_file() and (out / "pair_swaps.csv").is_file()
    assert_figures_readable(out)
    # A resamples file from another run (a model metrics.csv lacks) is refused.
    stranger = pd.concat([resamples, resamples.head(1).assign(model="ghost")])
    with pytest.raises(PerceptError, match=r"ghost.*belongs to another run"):
        build(human, metrics, participants=people, resamples=200, metric_resamples=stranger)


def mardia_transcribed(y):
    """Mardia 1970 written out with full n x n matrices and an explicit inverse."""
    n, k = y.shape
    centred = y - y.mean(axis=0)
    s_inv = np.linalg.inv(np.cov(y, rowvar=False, bias=True))
    g = centred @ s_inv @ centred.T
    b1, b2 = (g**3).sum() / n**2, (np.diag(g) ** 2).sum() / n
    skew = n * b1 / 6
    z = (b2 - k * (k + 2)) / np.sqrt(8 * k * (k + 2) / n)
    return b1, stats.chi2.sf(skew, k * (k + 1) * (k + 2) / 6), b2, 2 * stats.norm.sf(abs(z))


@pytest.mark.parametrize("n", [12, 300, 2100])  # 2100 crosses the 1024-row blocks
def test_mardia_equals_its_transcription(n):
    y = np.random.default_rng(n).gamma(2.0, size=(n, 5)) @ np.random.default_rng(1).normal(
        size=(5, 5)
    )
    found = mardia(y)
    b1, p1, b2, p2 = mardia_transcribed(y)
    assert found["skewness"] == pytest.approx(b1, rel=1e-9)
    assert found["kurtosis"] == pytest.approx(b2, rel=1e-9)
    assert found["skewness_p"] == pytest.approx(p1, rel=1e-9, abs=1e-300)
    assert found["kurtosis_p"] == pytest.approx(p2, rel=1e-9, abs=1e-300)


def test_diagnose_tells_gaussian_from_non_gaussian_features_as_scipy_does():
    rng = np.random.default_rng(5)
    mixing = rng.normal(size=(64, 64))
    gaussian = rng.standard_normal((1000, 64)) @ mixing
    skewed = rng.exponential(size=(1000, 64)) ** 2 @ mixing
    g, s = diagnose(gaussian), diagnose(skewed)
    assert g["components"] == s["components"] == 10 and g["d"] == 64
    assert g["skewness_p"] > 0.01 and g["kurtosis_p"] > 0.01
    assert s["skewness_p"] < 1e-10 and s["kurtosis_p"] < 1e-10
    assert abs(g["kurtosis_ratio"] - 1) < 0.05 < s["kurtosis_ratio"] - 1
    # scipy's Anderson-Darling on the top principal component agrees on both sets.
    for x, gaussian_ in ((gaussian, True), (skewed, False)):
        centred = x - x.mean(axis=0)
        top = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]
        assert (stats.anderson(top, method="interpolate").pvalue > 0.05) == gaussian_
    # Mardia is affine invariant: the PCA projection equals the transcription on the top 10.
    centred = skewed - skewed.mean(axis=0)
    basis = np.linalg.eigh(np.cov(skewed, rowvar=False))[1][:, ::-1][:, :10]
    assert s["skewness"] == pytest.approx(mardia_transcribed(centred @ basis)[0], rel=1e-9)


def test_diagnose_of_tiny_and_constant_sets():
    assert diagnose(np.ones((5, 3)))["components"] == 0
    assert np.isnan(diagnose(np.ones((5, 3)))["skewness"])
    small = diagnose(np.random.default_rng(0).normal(size=(6, 50)))
    assert small["components"] == 4  # n - 2: Mardia needs more samples than components + 1
    assert diagnose(np.random.default_rng(0).normal(size=(6000, 4)), max_samples=500)["n"] == 500
    with pytest.raises(ValueError, match="more than 6 samples"):
        mardia(np.zeros((6, 5)))


def test_kd_shared_kernel_matrix_equals_per_subset_kernels(monkeypatch):
    import analysis.metrics.kd as kd_module

    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(40, 30)), rng.normal(0.1, 1, size=(36, 30))
    shared = kd_module.kd(real, fake, subsets=50, subset_size=30, seed=4)
    monkeypatch.setattr(kd_module, "SHARED_KERNEL_MAX", 0)  # force one kernel per subset
    apart = kd_module.kd(real, fake, subsets=50, subset_size=30, seed=4)
    assert shared["value"] == pytest.approx(apart["value"], rel=1e-12)
    assert shared["std"] == pytest.approx(apart["std"], rel=1e-12)


def test_projected_fd_equals_fd_on_either_side():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(300, 20))
    fake = rng.normal(0.2, 1.1, size=(250, 20)).astype(np.float32)
    projected = volatility.ProjectedFD()
    for _ in range(3):
        rows = rng.integers(0, 250, size=250)
        assert projected(real, fake, rows) == pytest.approx(fd(real, fake[rows]), rel=1e-10)
    for _ in range(3):  # the other side fixed: FD is symmetric
        rows = rng.integers(0, 300, size=300)
        assert projected(fake, real, rows) == pytest.approx(fd(real[rows], fake), rel=1e-10)
    small = real[:10]  # fewer samples than features, on either side
    rows = rng.integers(0, 10, size=10)
    assert projected(fake, small, rows) == pytest.approx(fd(small[rows], fake), rel=1e-10)
    assert projected(small, fake, rows) == pytest.approx(fd(small, fake[rows]), rel=1e-10)
    # Through `resample`: the same values as fd on the drawn rows.
    frame = volatility.resample(
        ["fd"], {"features": real}, {"a": {"features": fake}}, fd_of, resamples=3, seed=1
    )
    check = volatility.resample(  # "plain" has no shortcut: fd on the drawn rows
        ["plain"], {"features": real}, {"a": {"features": fake}},
        lambda m, r, f, side: [(m, fd(r["features"], f["features"]))], resamples=3, seed=1,
    )  # fmt: skip
    assert np.allclose(frame["value"], check["value"], rtol=1e-10)


def test_fake_only_metrics_are_not_resampled_on_the_real_side():
    rng = np.random.default_rng(1)
    real, a = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
    frame = volatility.resample(["fd", "vendi"], {"features": real}, {"a": {"features": a}},
                                lambda m, r, f, side: [(m, 1.0)], resamples=4,
                                real_side=["fd"])  # fmt: skip
    assert set(frame[frame["side"] == "real"]["metric"]) == {"fd"}
    assert len(frame[frame["side"] == "fake"]) == 8


def test_metrics_command_writes_resamples_and_normality(tmp_path):
    pytest.importorskip("torch")
    from click.testing import CliRunner
    from imagefiles import make_folder

    from percept.cli import cli

    real = make_folder(tmp_path / "real", 12, size=(32, 32), seed=1)
    near = make_folder(tmp_path / "near", 10, size=(32, 32), seed=2)
    far = make_folder(tmp_path / "far", 10, size=(32, 32), seed=3)
    out = tmp_path / "out" / "metrics.csv"
    result = CliRunner().invoke(cli, [
        "metrics", "--encoder", "pixel", "--real", str(real), "--model", f"near={near}",
        "--model", f"far={far}", "--metric", "fd", "--metric", "vendi", "--metric", "realism",
        "--resamples", "6", "--diagnose", "--out", str(out), "--workers", "0",
        "--cache-dir", str(tmp_path / "cache"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns)[-6:] == list(volatility.SUMMARY_COLUMNS)
    raw = pd.read_csv(out.parent / "metric_resamples.csv")
    assert list(raw.columns) == list(volatility.RESAMPLE_COLUMNS)
    counts = raw.groupby(["metric", "side"]).size().to_dict()
    # Two models x 6 resamples a side; vendi reads no real images: no real side.
    assert counts == {("fd", "fake"): 12, ("fd", "real"): 12, ("realism", "fake"): 12,
                      ("realism", "real"): 12, ("vendi", "fake"): 12}  # fmt: skip
    fd_rows = table[table["metric"] == "fd"].set_index("model")
    mine = raw[(raw["metric"] == "fd") & (raw["model"] == "far") & (raw["side"] == "fake")]
    assert fd_rows.loc["far", "fake_std"] == pytest.approx(mine["value"].std(ddof=1), rel=1e-12)
    assert np.isnan(table[table["metric"] == "vendi"]["real_std"]).all()
    if raw["value"].isna().any():  # realism on a resample full of duplicates
        assert "undefined on" in result.output
    normality = pd.read_csv(out.parent / "feature_normality.csv", keep_default_na=False)
    assert list(normality["source"]) == ["real", "fake", "fake"]
    assert list(normality["model"]) == ["", "near", "far"]

    # A run without --resamples and --diagnose removes the files of the earlier run.
    again = CliRunner().invoke(cli, [
        "metrics", "--encoder", "pixel", "--real", str(real), "--model", f"near={near}",
        "--metric", "fd", "--out", str(out), "--workers", "0",
        "--cache-dir", str(tmp_path / "cache"),
    ])  # fmt: skip
    assert again.exit_code == 0, again.output
    assert not (out.parent / "metric_resamples.csv").exists()
    assert not (out.parent / "feature_normality.csv").exists()
    assert "removed" in again.output
