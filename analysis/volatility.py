"""How much each metric's ranking of models can be trusted: bootstrap volatility.

Betzalel et al. 2022 ask whether FID ranks close models reliably. Here the question is
asked of every metric and encoder by resampling the images (`percept metrics
--resamples B`) and recomputing every metric on each resample:

- side "fake": each model's generated images are drawn with replacement, each model on
  its own, the real images kept whole;
- side "real": the real images are drawn with replacement, the same draw for every model
  of the dataset (the real set is shared, so its noise moves all models together), the
  generated images kept whole.

`resample` gives the raw values (metric_resamples.csv), `summary` the per-model std and
95% percentile interval (columns of metrics.csv), and, for `percept report`,
`pair_swaps` the probability that two models swap order and `rank_stability` how often
a measure's full ranking of the models is reproduced. Definitions: docs/metrics.md.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable
from itertools import combinations

import numpy as np
import pandas as pd

from analysis.bootstrap import interval
from analysis.metrics.fd import Gaussian, significant
from analysis.metrics.validation import as_features, require_samples
from percept.errors import PerceptError

SIDES = ("fake", "real")
RESAMPLE_COLUMNS = ("dataset", "model", "encoder", "metric", "side", "resample", "value")
SUMMARY_COLUMNS = tuple(f"{side}_{stat}" for side in SIDES for stat in ("std", "low", "high"))
# A pair is "separated" when at least 95% of resamples order it the same way.
SEPARATED_BELOW = 0.05

Outputs = dict[str, np.ndarray]  # encoder outputs of one image set: features, logits...
# compute(metric, real, fake, side) -> [(metric name, value)]: one metric on one model's
# images; `side` says which of real and fake is the resample ("fake" or "real").
Compute = Callable[[str, Outputs, Outputs, str], list[tuple[str, float]]]


class ProjectedFD:
    """FD on bootstrap resamples, from statistics shared by every resample.

    The fixed side (the real images on a fake-side resample, a model's images on a
    real-side one) has its Gaussian and covariance factor F (F F^T = S_fixed) fitted
    once, and the drawn side's samples, centred on their mean, are projected once:
    Y = (X - mean X) F. A resample with counts c (how often each sample was drawn,
    summing to N) then needs

        F^T S_c F = (Y^T diag(c) Y - N g g^T) / (N - 1),   g = c^T Y / N,

    one weighted Gram matrix over the distinct drawn rows (about 0.63 N of them), whose
    eigenvalues give tr((S_fixed S_c)^(1/2)) as in `fd`; the means and tr(S_c) come
    from sums over the same rows. That replaces the resample's covariance and two
    d x d products (benchmarks/volatility.py measures the routes). Same value as `fd`
    on the resampled rows up to rounding (about 1e-15 relative measured).
    """

    def __init__(self) -> None:
        # One (fixed, drawn) pair at a time: `resample` keeps them the same from one
        # call to the next, and at 10,000 x 2,048 features they hold about 0.5 GB.
        self._key: tuple[object, object] | None = None

    def _prepare(self, fixed: np.ndarray, full: np.ndarray) -> None:
        gaussian = Gaussian.of(fixed, "fixed set")
        x = as_features(full, "resampled set")
        if x.shape[1] != gaussian.d:
            raise ValueError(f"resampled set has {x.shape[1]} features, fixed set {gaussian.d}")
        require_samples(x, "resampled set", 2, "a covariance")
        self._gaussian, self._mean = gaussian, x.mean(axis=0)
        self._centred = x - self._mean
        self._y = self._centred @ gaussian.factor
        self._norms = np.einsum("ij,ij->i", self._centred, self._centred)
        self._key = (fixed, full)

    def __call__(self, fixed: np.ndarray, full: np.ndarray, rows: np.ndarray) -> float:
        """FD of `fixed` against `full[rows]`."""
        if self._key is None or self._key[0] is not fixed or self._key[1] is not full:
            self._prepare(fixed, full)
        n = len(rows)
        counts = np.bincount(rows, minlength=len(self._y))
        kept = np.flatnonzero(counts)
        c, y = counts[kept].astype(np.float64), self._y[kept]
        g = c @ y / n
        z = y * np.sqrt(c)[:, None]  # z.T @ z: numpy's symmetric rank-k product, half the flops
        product = (z.T @ z - n * np.outer(g, g)) / (n - 1)
        eigenvalues = np.linalg.eigvalsh(product)
        trace_sqrt = float(np.sqrt(eigenvalues[significant(eigenvalues)]).sum())
        delta = c @ self._centred[kept] / n
        trace = (c @ self._norms[kept] - n * delta @ delta) / (n - 1)
        diff = self._mean + delta - self._gaussian.mean
        return float(diff @ diff + self._gaussian.trace + trace - 2.0 * trace_sqrt)


# Metrics with a route of their own on resamples: f(fixed features, all of the drawn
# side's features, drawn rows) -> value. Each call of `resample` makes fresh ones.
SHORTCUTS: dict[str, Callable[[], Callable[[np.ndarray, np.ndarray, np.ndarray], float]]] = {
    "fd": ProjectedFD,
}


def _take(outputs: Outputs, rows: np.ndarray) -> Outputs:
    return {key: value[rows] for key, value in outputs.items()}


def _size(outputs: Outputs) -> int:
    return len(next(iter(outputs.values())))


def _rng(seed: int, side: str, name: str) -> np.random.Generator:
    # A stream per side and image set, stable across runs and encoders: the same real
    # draws serve every encoder, so encoders are compared on the same resamples.
    return np.random.default_rng([seed, 21, SIDES.index(side), zlib.crc32(name.encode())])


def resample(
    metrics: Iterable[str],
    real: Outputs,
    fakes: dict[str, Outputs],
    compute: Compute,
    *,
    resamples: int,
    seed: int = 0,
    real_side: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Every metric of every model on `resamples` bootstrap resamples of each side.

    Metrics in SHORTCUTS (fd) take their own route from statistics shared by every
    resample; the others are computed by `compute` on the resampled outputs.
    `real_side` names the metrics that read the real images (default: all); the others
    (vendi, the Inception Score) do not move when the real images are resampled and get
    no real-side rows. Returns one row per (model, metric, side, resample) with columns
    model, metric, side, resample, value (the caller adds dataset and encoder).
    """
    metrics = list(metrics)
    on_real = [m for m in metrics if real_side is None or m in set(real_side)]
    rows: list[tuple[str, str, str, int, float]] = []
    names: dict[str, list[str]] = {}  # the rows each metric gives (prdc: four)

    shortcuts = {name: make() for name, make in SHORTCUTS.items() if name in metrics}

    def values(
        metric: str, real: Outputs, fake: Outputs, side: str, full: Outputs, chosen: np.ndarray
    ) -> list[tuple[str, float]]:
        # A resample drawn with replacement holds duplicates, on which some metrics are
        # undefined (realism: every k-NN radius 0). That resample's value is NaN, kept in
        # the file and counted by `failures`, never dropped silently.
        try:
            if metric in shortcuts and "features" in full:
                fixed = real if side == "fake" else fake
                value = shortcuts[metric](fixed["features"], full["features"], chosen)
                return [(metric, value)]
            found = compute(metric, real, fake, side)
        except (ValueError, PerceptError):
            return [(name, math.nan) for name in names.get(metric, [metric])]
        names[metric] = [name for name, _ in found]
        return found

    for model, fake in fakes.items():
        rng = _rng(seed, "fake", model)
        n = _size(fake)
        for b in range(resamples):
            chosen = rng.integers(0, n, size=n)
            drawn = _take(fake, chosen)
            for metric in metrics:
                found = values(metric, real, drawn, "fake", fake, chosen)
                rows += [(model, name, "fake", b, v) for name, v in found]
    rng = _rng(seed, "real", "real")
    n = _size(real)
    if not on_real:
        return pd.DataFrame(rows, columns=["model", "metric", "side", "resample", "value"])
    # The same draws of the real images for every model; model by model, so that what a
    # shortcut keeps of the two sides (ProjectedFD) is kept for one model at a time.
    draws = [rng.integers(0, n, size=n) for _ in range(resamples)]
    for model, fake in fakes.items():
        for b, chosen in enumerate(draws):
            drawn = _take(real, chosen)
            for metric in on_real:
                found = values(metric, drawn, fake, "real", real, chosen)
                rows += [(model, name, "real", b, v) for name, v in found]
    return pd.DataFrame(rows, columns=["model", "metric", "side", "resample", "value"])


def failures(resamples: pd.DataFrame) -> pd.DataFrame:
    """Per metric and side, how many resampled values are undefined (NaN), of how many."""
    grouped = resamples.groupby(["metric", "side"], sort=True)["value"]
    table = pd.DataFrame(
        {"undefined": grouped.apply(lambda v: int(v.isna().sum())), "of": grouped.size()}
    )
    return table[table["undefined"] > 0].reset_index()


def summary(resamples: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model, encoder, metric): std and 95% percentile interval of each side.

    Columns fake_std, fake_low, fake_high, real_std, real_low, real_high (NaN for a side
    without resamples).
    """
    key = ["dataset", "model", "encoder", "metric"]
    parts = []
    for side in SIDES:
        mine = resamples[resamples["side"] == side]
        grouped = mine.groupby(key, sort=False)["value"]
        stats = grouped.agg(
            std=lambda v: float(np.std(v.dropna(), ddof=1)) if v.count() > 1 else np.nan,
            low=lambda v: float(interval(v.dropna().to_numpy())[0]),
            high=lambda v: float(interval(v.dropna().to_numpy())[1]),
        )
        parts.append(stats.add_prefix(f"{side}_"))
    return pd.concat(parts, axis=1).reindex(columns=list(SUMMARY_COLUMNS)).reset_index()


def _aligned(values: np.ndarray, better: str) -> np.ndarray:
    """Larger = better, as analysis.correlate.align."""
    if better == "lower":
        return -values
    if better == "zero":
        return -np.abs(values)
    return values


def _matrices(resamples: pd.DataFrame, better_of: dict[str, str]):
    """(dataset, encoder, metric, side, models, (B, models) aligned values) per measure."""
    key = ["dataset", "encoder", "metric", "side"]
    for (dataset, encoder, metric, side), group in resamples.groupby(key, sort=True):
        wide = group.pivot_table(
            index="resample", columns="model", values="value", aggfunc="first"
        ).dropna()
        if wide.shape[1] < 2 or wide.empty:
            continue
        values = _aligned(wide.to_numpy(dtype=np.float64), better_of[metric])
        yield dataset, encoder, metric, side, list(wide.columns), values


def pair_swaps(resamples: pd.DataFrame, better_of: dict[str, str]) -> pd.DataFrame:
    """Per dataset, measure, side and pair of models: the probability that they swap order.

    The swap probability is the share of resamples that order the pair the less common
    way (a tie counts half to each way): 0 when every resample agrees, 0.5 when the
    order is a coin flip. `ahead` is the model ahead in most resamples; `separated` is
    True when the swap probability is below SEPARATED_BELOW (0.05).
    """
    rows = []
    for dataset, encoder, metric, side, models, values in _matrices(resamples, better_of):
        for i, j in combinations(range(len(models)), 2):
            first = float(
                np.mean((values[:, i] > values[:, j]) + 0.5 * (values[:, i] == values[:, j]))
            )
            ahead, behind = (models[i], models[j]) if first >= 0.5 else (models[j], models[i])
            swap = min(first, 1.0 - first)
            rows.append(
                {
                    "dataset": dataset,
                    "measure": f"{encoder}/{metric}",
                    "encoder": encoder,
                    "metric": metric,
                    "side": side,
                    "ahead": ahead,
                    "behind": behind,
                    "swap_probability": swap,
                    "separated": swap < SEPARATED_BELOW,
                    "resamples": len(values),
                }
            )
    columns = [
        "dataset",
        "measure",
        "encoder",
        "metric",
        "side",
        "ahead",
        "behind",
        "swap_probability",
        "separated",
        "resamples",
    ]
    return pd.DataFrame(rows, columns=columns)


def rank_stability(
    resamples: pd.DataFrame, full: pd.DataFrame, better_of: dict[str, str]
) -> pd.DataFrame:
    """Per dataset, measure and side: the share of resamples that reproduce the full ranking.

    `full` holds the metric on all the images (metrics.csv: dataset, model, encoder,
    metric, value). A resample reproduces the ranking when it orders every pair of models
    that the full values order (strictly) the same way; models tied in the full values
    may come out either way. Where the full values order no pair at all (every model
    tied), there is no ranking to reproduce: NaN.
    """
    values_of = full.set_index(["dataset", "encoder", "metric", "model"])["value"]
    rows = []
    for dataset, encoder, metric, side, models, values in _matrices(resamples, better_of):
        reference = _aligned(
            np.array([float(values_of.get((dataset, encoder, metric, m), np.nan)) for m in models]),
            better_of[metric],
        )
        ahead = reference[:, None] > reference[None, :]  # ahead[i, j]: i before j in full data
        kept = ~ahead[None, :, :] | (values[:, :, None] > values[:, None, :])
        reproduced = kept.all(axis=(1, 2))
        rows.append(
            {
                "dataset": dataset,
                "measure": f"{encoder}/{metric}",
                "encoder": encoder,
                "metric": metric,
                "side": side,
                "models": len(models),
                "rank_stability": float(reproduced.mean()) if ahead.any() else math.nan,
                "resamples": len(values),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "measure",
            "encoder",
            "metric",
            "side",
            "models",
            "rank_stability",
            "resamples",
        ],
    )
