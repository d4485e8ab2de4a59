"""Pairwise agreement where people disagree: does a metric order the models people tell apart?

A correlation over all models weighs a swap of two models that people cannot tell apart
as much as a swap of two that people clearly separate. Pairwise agreement looks only at
the pairs people tell apart: the pairs of `percept human`'s pairs.csv with `significant`
true (bootstrap difference in human error, Holm-adjusted within the dataset, p < 0.05).
For each measure it is the share of those pairs that the measure, aligned so that larger
means more realistic, orders as people do: the model with the larger human error has the
larger aligned value. A tie in the measure does not order the pair, so it does not count
as agreeing.

The interval resamples models: each resample draws the dataset's models with
replacement, and each significant pair counts as often as both its models were drawn
(count_a x count_b); resamples in which no significant pair survives are skipped.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analysis.bootstrap import interval
from analysis.correlate import HUMAN, Measures
from percept.errors import PerceptError

COLUMNS = ("agreement", "agreement_low", "agreement_high", "agreement_pairs")
NEEDED = ("dataset", "model_a", "model_b", "difference", "significant")


def orders_as_people(values: np.ndarray, a: np.ndarray, b: np.ndarray, people: np.ndarray):
    """Per pair k, whether sign(values[a[k]] - values[b[k]]) equals people[k] (+1 or -1)."""
    return np.sign(values[a] - values[b]) == people


def share(agree: np.ndarray) -> float:
    """Share of pairs ordered as people do (NaN when there are no pairs)."""
    agree = np.asarray(agree, dtype=np.float64)
    return float(agree.mean()) if agree.size else float("nan")


def share_samples(
    agree: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    n_models: int,
    resamples: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """(resamples,) shares, drawing the n_models models with replacement (see the module)."""
    counts = rng.multinomial(n_models, np.full(n_models, 1 / n_models), size=resamples)
    weights = (counts[:, a] * counts[:, b]).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights * agree).sum(axis=1) / weights.sum(axis=1)


def check_pairs(pairs: pd.DataFrame, human: pd.DataFrame, source: str) -> pd.DataFrame:
    """pairs.csv with `significant` as bool; an error names models human.csv does not have."""
    missing = [c for c in NEEDED if c not in pairs.columns]
    if missing:
        raise PerceptError(
            f"{source}: missing column(s) {', '.join(missing)}; made by `percept human`?"
        )
    flag = pairs["significant"].astype(str).str.strip().str.lower()
    bad = sorted(set(flag) - {"true", "false", "1", "0"})
    if bad:
        raise PerceptError(f"{source}: significant must be true or false, got {bad[0]!r}")
    pairs = pairs.assign(significant=flag.isin(["true", "1"]))
    known = set(zip(human["dataset"].astype(str), human["model"].astype(str), strict=True))
    named = {
        (str(d), str(m))
        for column in ("model_a", "model_b")
        for d, m in zip(pairs["dataset"], pairs[column], strict=True)
    }
    stray = sorted(named - known)
    if stray:
        listed = ", ".join(f"{d}/{m}" for d, m in stray[:5])
        raise PerceptError(
            f"{source}: {len(stray)} model(s) not in human.csv ({listed}); give the pairs.csv "
            "that `percept human` wrote with this human.csv (--pairs)"
        )
    return pairs


def agreement_table(
    data: Measures, pairs: pd.DataFrame, *, resamples: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """One row per (dataset, measure): agreement, its 95% interval and the pairs it rests on.

    `pairs` is check_pairs()'s output. Only significant pairs whose two models both have
    the measure count; `agreement_pairs` says how many did (0: agreement is empty).
    """
    rng = np.random.default_rng([seed, 4])
    rows = []
    told_apart = pairs[pairs["significant"]]
    for dataset, frame in data.wide.groupby(level="dataset", sort=True):
        models = pd.Index(frame.index.get_level_values("model").astype(str))
        mine = told_apart[told_apart["dataset"].astype(str) == str(dataset)]
        a = models.get_indexer(mine["model_a"].astype(str))
        b = models.get_indexer(mine["model_b"].astype(str))
        inside = (a >= 0) & (b >= 0)  # models left out of the report leave their pairs out
        a, b = a[inside], b[inside]
        people = np.sign(mine["difference"].to_numpy(dtype=np.float64)[inside])
        for measure in frame.columns.drop(HUMAN):
            values = frame[measure].to_numpy(dtype=np.float64)
            usable = ~np.isnan(values[a]) & ~np.isnan(values[b])
            agree = orders_as_people(values, a[usable], b[usable], people[usable])
            row = {"dataset": dataset, "measure": measure, "agreement_pairs": int(usable.sum())}
            row["agreement"] = share(agree)
            low = high = np.nan
            if usable.any():
                boot = share_samples(agree, a[usable], b[usable], len(models), resamples, rng)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    lo, hi = interval(boot[:, None])
                low, high = float(lo[0]), float(hi[0])
            row["agreement_low"], row["agreement_high"] = low, high
            rows.append(row)
    return pd.DataFrame(rows, columns=["dataset", "measure", *COLUMNS])


def add_agreement(table: pd.DataFrame, agreement: pd.DataFrame | None) -> pd.DataFrame:
    """correlations rows with the agreement columns (empty without pairs or where the
    correlation was not computed: a constant measure orders no pair)."""
    if agreement is None:
        agreement = pd.DataFrame(
            {
                "dataset": table["dataset"].iloc[:0],
                "measure": table["measure"].iloc[:0],
                **{c: pd.Series(dtype=float) for c in COLUMNS},
            }
        )
    merged = table.drop(columns=[c for c in COLUMNS if c in table.columns]).merge(
        agreement, on=["dataset", "measure"], how="left"
    )
    off = merged["status"] != "ok"
    merged.loc[off, ["agreement", "agreement_low", "agreement_high"]] = np.nan
    merged["agreement_pairs"] = merged["agreement_pairs"].astype("Int64")
    return merged
