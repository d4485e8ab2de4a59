"""How sure the report is: one Kendall interval per measure, the best measure, pooled intervals.

`correlations.csv` already carries two separate intervals per coefficient (resampling
participants; resampling models). The headline needs one interval that carries both
sources at once, and the pooled table needs one too:

- `kendall_samples` draws, per dataset, models with replacement and, where per-participant
  errors exist, each drawn model's participants with replacement (its human error
  recomputed), and returns Kendall tau-b of every measure on each resample;
- `annotate` adds that interval (`kendall_low`, `kendall_high`), the "few models" mark and
  `versus_best` to the per-dataset table;
- `pooled` averages each resample's tau over the datasets, so the pooled mean gets an
  interval from the same resamples.

"Best" is chosen only among measures whose encoder had pretrained weights (extra scores,
which have no encoder, count as eligible); every eligible measure whose interval overlaps
the best's is "not distinguishable from the best". Overlap of 95% intervals is a
conservative rule: two measures can differ significantly while their intervals overlap,
so the list errs on the side of naming too many, never too few.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analysis.bootstrap import interval
from analysis.correlate import HUMAN, MIN_MODELS, STATS, Measures, human_samples, kendall
from analysis.correlate import pooled as pooled_means

FEW_MODELS = 6  # intervals from fewer models are marked "few models": they are unreliable
BEST = "best"
SAME = "not distinguishable from the best"
BELOW = "distinguishable from the best"
RANDOM = "random weights: not eligible"

Samples = dict[tuple[str, str], np.ndarray]


def kendall_samples(
    data: Measures,
    participants: pd.DataFrame | None = None,
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> Samples:
    """{(dataset, measure): (resamples,) tau-b} resampling models and their participants.

    Measures with fewer than 3 models or constant over models (human error or the
    measure) have no samples, as they have no tau. A resample that draws one model
    only has no ordering: its tau is NaN and intervals skip it.
    """
    rng = np.random.default_rng([seed, 17])  # a stream of its own: correlations() keeps its own
    samples: Samples = {}
    for dataset, frame in data.wide.groupby(level="dataset", sort=True):
        n = len(frame)
        if n < MIN_MODELS:
            continue
        human = frame[HUMAN].to_numpy(dtype=np.float64)
        people = (
            human_samples(participants, frame.index, resamples, rng)
            if participants is not None
            else np.broadcast_to(human, (resamples, n))
        )
        # A model without per-participant errors keeps its point estimate in every resample,
        # rather than turning every resample that draws it into NaN.
        people = np.where(np.isnan(people), human, people)
        drawn = rng.integers(0, n, size=(resamples, n))
        for measure in frame.columns.drop(HUMAN):
            values = frame[measure].to_numpy(dtype=np.float64)
            ok = ~np.isnan(values) & ~np.isnan(human)
            m = int(ok.sum())
            if m < MIN_MODELS or np.ptp(human[ok]) == 0 or np.ptp(values[ok]) == 0:
                continue
            rows = drawn if m == n else rng.integers(0, m, size=(resamples, m))
            h = np.take_along_axis(people[:, ok], rows, axis=1)
            samples[dataset, measure] = kendall(h, values[ok][rows])
    return samples


def versus_best(
    table: pd.DataFrame,
    estimate: str = "kendall",
    low: str = "kendall_low",
    high: str = "kendall_high",
) -> pd.Series:
    """Per row of one group: best, not distinguishable from the best, distinguishable, or not
    eligible (random weights); empty where nothing was computed.

    Ties for the highest estimate are all "best".
    """
    label = pd.Series("", index=table.index, dtype=object)
    computed = table[estimate].notna()
    eligible = computed & table["pretrained"].fillna(True).astype(bool)
    label[computed & ~eligible] = RANDOM
    if not eligible.any():
        return label
    top = table.loc[eligible, estimate].max()
    best = eligible & (table[estimate] == top)
    # Intervals overlap when neither lies wholly above the other; unknown bounds overlap.
    best_low = table.loc[best, low].min()
    best_high = table.loc[best, high].max()
    apart = (table[high] < best_low) | (table[low] > best_high)
    label[eligible] = np.where(apart[eligible], BELOW, SAME)
    label[best] = BEST
    return label


def annotate(table: pd.DataFrame, samples: Samples) -> pd.DataFrame:
    """correlations() rows plus kendall_low/high (models and participants resampled together),
    few_models and versus_best (within each dataset)."""
    table = table.copy()
    bounds = [
        interval(samples[key][:, None]) if key in samples else (np.array([np.nan]),) * 2
        for key in zip(table["dataset"], table["measure"], strict=True)
    ]
    table["kendall_low"] = [float(low[0]) for low, _ in bounds]
    table["kendall_high"] = [float(high[0]) for _, high in bounds]
    table["few_models"] = table["kendall"].notna() & (table["models"] < FEW_MODELS)
    table["versus_best"] = ""
    for _, group in table.groupby("dataset", sort=False):
        table.loc[group.index, "versus_best"] = versus_best(group)
    return table


def pooled(table: pd.DataFrame, samples: Samples) -> pd.DataFrame:
    """pooled.csv: each measure's mean coefficients over the datasets where it was computed,
    with a bootstrap interval of the mean Kendall tau, the few-models mark and versus_best.

    `table` is annotate()'s output. Each resample's pooled tau is the mean of the same
    resample's per-dataset taus (datasets are resampled independently, so any pairing of
    their resamples is a valid draw); a dataset whose resample had no ordering is left out
    of that resample's mean.
    """
    frame = pooled_means(table)
    ok = table[table["status"] == "ok"]
    low, high, few, models = [], [], [], []
    for measure in frame["measure"]:
        mine = ok[ok["measure"] == measure]
        stack = np.stack([samples[d, measure] for d in mine["dataset"]], axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # every dataset NaN in a resample
            means = np.nanmean(stack, axis=1)
        lo, hi = interval(means[:, None])
        low.append(float(lo[0]))
        high.append(float(hi[0]))
        few.append(bool((mine["models"] < FEW_MODELS).any()))
        models.append(int(mine["models"].sum()))
    frame["kendall_low"], frame["kendall_high"] = low, high
    frame["models"], frame["few_models"] = models, few
    info = table.drop_duplicates("measure").set_index("measure")
    for column in ("kind", "encoder", "metric", "pretrained"):
        if column in info.columns:
            frame[column] = frame["measure"].map(info[column])
    frame["versus_best"] = versus_best(frame) if len(frame) else pd.Series(dtype=object)
    # As per dataset: ranked among measures eligible for "best" only.
    eligible = frame["kendall"].where(frame["pretrained"].fillna(True).astype(bool))
    frame["rank"] = eligible.rank(ascending=False, method="min").astype("Int64")
    frame = frame.sort_values(["rank", "kendall"], ascending=[True, False], ignore_index=True)
    first = ["measure", "rank", *STATS, "kendall_low", "kendall_high", "datasets", "models"]
    return frame[first + [c for c in frame.columns if c not in first]]
