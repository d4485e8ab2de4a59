"""Which automatic metric agrees with people: correlations of human error with every metric.

Convention, stated in every output: each metric is *aligned* so that larger
means "more realistic" according to the metric (lower-is-better metrics such
as FD are negated; for C_T, closest to zero is best, so -|C_T|). Human error
is larger when people are fooled more, i.e. the model is more realistic to
people. A positive correlation between human error and an aligned metric
therefore means the metric agrees with people.

Per dataset and per measure (encoder/metric or extra score): Pearson r,
Spearman rho and Kendall tau-b, each with two 95% percentile bootstrap
intervals (resampling participants, which recomputes each model's human error;
and resampling models) and a permutation p-value for tau. Datasets with fewer
than 3 models are reported as too small, not computed; so is a measure (or a
dataset's human error) that takes one value for every model: it orders no
pair, so it has no tau, no p-value and no rank, and it counts for no dataset
when pooled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from analysis.bootstrap import interval, resample_means
from percept.errors import PerceptError

HUMAN = "human_error"
MIN_MODELS = 3
CONVENTION = (
    "Metrics are aligned so that larger = more realistic by the metric; human error is larger "
    "when people are fooled more; a positive correlation means the metric agrees with people."
)
STATS = ("pearson", "spearman", "kendall")
CONSTANT = "constant over models: not computed"
HUMAN_CONSTANT = "human error constant over models: not computed"
# Encoders that are no network at all (the images themselves): they have no weights to be
# pretrained or random.
NO_NETWORK = frozenset({"pixel"})


@dataclass
class Measures:
    """Per dataset, a models x measures table of aligned values, and what each measure is."""

    wide: pd.DataFrame  # index (dataset, model); columns HUMAN then every measure
    # One row per measure: measure, kind, encoder, metric, better, pretrained, weights.
    info: pd.DataFrame


def direction(metric: str, better: str | None = None) -> str:
    """'lower', 'higher' or 'zero' for a metric name as in metrics.csv (e.g. prdc.recall).

    A metric outside percept's registry (e.g. `fls`, `cmmd`, a lab's own score) needs
    its direction from metrics.csv's `better` column; one in the registry must agree
    with it when both are given.
    """
    from analysis.metrics import METRICS

    base = metric.split(".")[0]
    if base not in METRICS:
        if better is None:
            raise PerceptError(
                f"metrics.csv: unknown metric {metric!r}: give its direction in a `better` "
                f"column (lower, higher or zero), or use a known one: {', '.join(METRICS)}"
            )
        return better
    if better is not None and better != METRICS[base].better:
        raise PerceptError(
            f"metrics.csv: metric {metric!r} has better={better!r}, but it is "
            f"{METRICS[base].better!r}-is-better; correct the `better` column"
        )
    return METRICS[base].better


def directions(metrics: pd.DataFrame) -> dict[str, str]:
    """Each metric of metrics.csv and its direction, from the registry or the `better` column."""
    given: dict[str, str | None] = {}
    for metric, group in metrics.groupby("metric"):
        stated = set()
        if "better" in group.columns:
            stated = {str(b).strip() for b in group["better"].dropna() if str(b).strip()}
        bad = sorted(stated - {"lower", "higher", "zero"})
        if bad:
            raise PerceptError(
                f"metrics.csv: metric {metric!r}: better must be lower, higher or zero, "
                f"got {bad[0]!r}"
            )
        if len(stated) > 1:
            raise PerceptError(
                f"metrics.csv: metric {metric!r} has rows with better = "
                f"{' and '.join(sorted(stated))}; give one direction"
            )
        given[metric] = stated.pop() if stated else None
    return {metric: direction(metric, better) for metric, better in given.items()}


def weights(encoder: str, pretrained: bool) -> str:
    """What an encoder ran with: 'pretrained', 'random' (random weights) or 'no network'."""
    if str(encoder).removeprefix("random:") in NO_NETWORK:
        return "no network"
    return "pretrained" if pretrained else "random"


def align(values: pd.Series, better: str) -> pd.Series:
    """Larger = more realistic by the metric."""
    if better == "lower":
        return -values
    if better == "zero":
        return -values.abs()
    return values


def measures(
    human: pd.DataFrame, metrics: pd.DataFrame, scores: pd.DataFrame | None = None
) -> Measures:
    """Join human.csv, metrics.csv and optional extra scores into one aligned table."""
    need = {"dataset", "model", "encoder", "metric", "value"}
    missing = need - set(metrics.columns)
    if missing:
        raise PerceptError(f"metrics.csv: missing column(s) {', '.join(sorted(missing))}")
    long = metrics.reset_index(drop=True)
    long = long.assign(measure=long["encoder"].astype(str) + "/" + long["metric"].astype(str))
    better_of = directions(long)
    info_rows = []
    for (measure, encoder, metric), _ in long.groupby(["measure", "encoder", "metric"]):
        pretrained = True
        if "encoder_pretrained" in long.columns:
            flags = long.loc[long["measure"] == measure, "encoder_pretrained"]
            pretrained = bool(flags.astype(str).str.lower().isin(["true", "1"]).all())
        pretrained = pretrained and not str(encoder).startswith("random:")
        info_rows.append(
            {
                "measure": measure,
                "kind": "metric",
                "encoder": encoder,
                "metric": metric,
                "better": better_of[metric],
                "pretrained": pretrained,
                "weights": weights(encoder, pretrained),
            }
        )
    aligned = [
        group.assign(value=align(group["value"], better_of[metric]))
        for metric, group in long.groupby("metric")
    ]
    parts = [pd.concat(aligned)[["dataset", "model", "measure", "value"]]]
    if scores is not None and len(scores):
        need = {"dataset", "model", "score", "value", "direction"}
        missing = need - set(scores.columns)
        if missing:
            raise PerceptError(f"scores: missing column(s) {', '.join(sorted(missing))}")
        bad = sorted(set(scores["direction"]) - {"lower", "higher", "zero"})
        if bad:
            raise PerceptError(f"scores: direction must be lower, higher or zero, got {bad[0]!r}")
        for (score, better), group in scores.groupby(["score", "direction"]):
            parts.append(
                group.assign(measure=score, value=align(group["value"], better))[
                    ["dataset", "model", "measure", "value"]
                ]
            )
            info_rows.append(
                {
                    "measure": score,
                    "kind": "score",
                    "encoder": "",
                    "metric": score,
                    "better": better,
                    "pretrained": True,
                    "weights": "extra score",
                }
            )
    table = pd.concat(parts).pivot_table(
        index=["dataset", "model"], columns="measure", values="value", aggfunc="first"
    )
    people = human.set_index(["dataset", "model"])["error"].rename(HUMAN)
    wide = pd.concat([people, table], axis=1, join="inner").sort_index()
    if wide.empty:
        raise PerceptError(
            "human.csv and metrics.csv share no (dataset, model): are they from the same study?"
        )
    return Measures(wide=wide, info=pd.DataFrame(info_rows))


def _rank(x: np.ndarray) -> np.ndarray:
    return rankdata(x, axis=-1)


def pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Pearson r of (B, n) arrays."""
    x = x - x.mean(-1, keepdims=True)
    y = y - y.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x * y).sum(-1) / np.sqrt((x * x).sum(-1) * (y * y).sum(-1))


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return pearson(_rank(x), _rank(y))


def kendall(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Kendall tau-b of (B, n) arrays (ties count as in scipy's tau-b)."""
    i, j = np.triu_indices(x.shape[-1], k=1)
    sx = np.sign(x[..., i] - x[..., j])
    sy = np.sign(y[..., i] - y[..., j])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sx * sy).sum(-1) / np.sqrt((sx * sx).sum(-1) * (sy * sy).sum(-1))


FUNCTIONS = {"pearson": pearson, "spearman": spearman, "kendall": kendall}


def human_samples(
    participants: pd.DataFrame, models: pd.Index, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """(resamples, models) human errors, resampling each model's participants."""
    columns = []
    for dataset, model in models:
        mine = participants[(participants["dataset"] == dataset) & (participants["model"] == model)]
        columns.append(resample_means(mine["error"].to_numpy(), resamples, rng))
    return np.stack(columns, axis=1)


def correlations(
    data: Measures,
    participants: pd.DataFrame | None = None,
    *,
    resamples: int = 2000,
    permutations: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (dataset, measure): the three coefficients, intervals and p-value."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset, frame in data.wide.groupby(level="dataset", sort=True):
        n = len(frame)
        human = frame[HUMAN].to_numpy(dtype=np.float64)
        by_models = rng.integers(0, n, size=(resamples, n))
        by_people = (
            human_samples(participants, frame.index, resamples, rng)
            if participants is not None and n >= MIN_MODELS
            else None
        )
        perms = np.argsort(rng.random((permutations, n)), axis=1)
        for measure in frame.columns.drop(HUMAN):
            values = frame[measure].to_numpy(dtype=np.float64)
            ok = ~np.isnan(values) & ~np.isnan(human)
            row = {"dataset": dataset, "measure": measure, "models": int(ok.sum())}
            if ok.sum() < MIN_MODELS:
                row["status"] = f"too few models ({int(ok.sum())} < {MIN_MODELS}): not computed"
                rows.append(row)
                continue
            x, y, m = human[ok], values[ok], int(ok.sum())
            constant = [name for name, v in (("human error", x), ("measure", y)) if np.ptp(v) == 0]
            if constant:
                # No ordering to compare: tau, its p-value and a rank would all be made up.
                row["status"] = CONSTANT if constant == ["measure"] else HUMAN_CONSTANT
                rows.append(row)
                continue
            # Models missing this measure: draw resamples and permutations of the rest.
            idx = by_models if m == n else rng.integers(0, m, size=(resamples, m))
            order = perms if m == n else np.argsort(rng.random((permutations, m)), axis=1)
            row["status"] = "ok"
            for name, fn in FUNCTIONS.items():
                row[name] = float(fn(x[None], y[None])[0])
                low, high = interval(fn(x[idx], y[idx])[:, None])
                row[f"{name}_models_low"], row[f"{name}_models_high"] = low[0], high[0]
                if by_people is not None:
                    low, high = interval(fn(by_people[:, ok], y[None])[:, None])
                    row[f"{name}_participants_low"] = low[0]
                    row[f"{name}_participants_high"] = high[0]
            null = kendall(x[order], y[None])
            observed = abs(row["kendall"])
            row["kendall_p"] = float(
                (np.sum(np.abs(null) >= observed - 1e-12) + 1) / (permutations + 1)
            )
            rows.append(row)
    table = pd.DataFrame(rows)
    for column in (*STATS, "kendall_p"):  # present even when nothing could be computed
        if column not in table:
            table[column] = np.nan
    table = table.merge(data.info, on="measure", how="left")
    # Ranked among measures from pretrained encoders (and extra scores) only: a random-weight
    # encoder is a control, never a candidate for "best", so it gets no rank.
    eligible = table["kendall"].where(table["pretrained"].fillna(True).astype(bool))
    table["rank"] = (
        eligible.groupby(table["dataset"]).rank(ascending=False, method="min").astype("Int64")
    )
    table["convention"] = CONVENTION
    return table.sort_values(
        ["dataset", "rank", "kendall"], ascending=[True, True, False], ignore_index=True
    )


def pooled(table: pd.DataFrame) -> pd.DataFrame:
    """Across datasets: the mean of each measure's per-dataset coefficients, ranked."""
    ok = table[table["status"] == "ok"]
    stats = ok.groupby("measure")[list(STATS)].mean()
    stats["datasets"] = ok.groupby("measure")["dataset"].nunique()
    stats["rank"] = stats["kendall"].rank(ascending=False, method="min").astype("Int64")
    return stats.sort_values("rank").reset_index()


def kendall_matrix(data: Measures) -> pd.DataFrame:
    """Kendall tau-b between every pair of measures (human error first), per dataset and pooled.

    Rows: dataset, measure; one column per measure. The pooled rows (dataset "all")
    average the per-dataset matrices of datasets with at least 3 models.
    """
    blocks = []
    for dataset, frame in data.wide.groupby(level="dataset", sort=True):
        if len(frame) < MIN_MODELS:
            continue
        values = frame.to_numpy(dtype=np.float64).T  # measures x models
        tau = kendall(values[:, None, :], values[None, :, :])
        blocks.append(
            pd.DataFrame(tau, index=frame.columns, columns=frame.columns).assign(dataset=dataset)
        )
    if not blocks:
        return pd.DataFrame()
    every = pd.concat(blocks)
    mean = every.drop(columns="dataset").groupby(level=0, sort=False).mean()
    mean = mean.loc[every.columns.drop("dataset")].assign(dataset="all")
    matrix = pd.concat([every, mean]).rename_axis("measure").reset_index()
    return matrix[["dataset", "measure", *every.columns.drop("dataset")]]
