"""The correlation report: CSV tables, figures (PNG and SVG) and one self-contained index.html.

index.html embeds every figure as a PNG data URI and uses no script or remote
asset, so it opens offline and can be mailed as one file; the SVG files beside
it are for papers.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import uncertainty
from analysis.agreement import add_agreement, agreement_table, check_pairs
from analysis.by_encoder import POOLED, by_encoder
from analysis.correlate import (
    CONVENTION,
    HUMAN,
    MIN_MODELS,
    Measures,
    correlations,
    directions,
    kendall_matrix,
    measures,
)
from analysis.join import LEFT_OUT_COLUMNS, Joined, audit_report, rename
from percept.errors import PerceptError
from percept.rules import PACE_MARGIN


@dataclass
class Report:
    correlations: pd.DataFrame
    pooled: pd.DataFrame
    kendall: pd.DataFrame
    data: Measures
    human: pd.DataFrame
    summary: dict
    figures: list[tuple[str, str, Path]] = field(default_factory=list)  # (title, caption, png)
    by_encoder: pd.DataFrame = field(default_factory=pd.DataFrame)
    pairs: pd.DataFrame | None = None  # pairs.csv of `percept human`, when given or found
    # What the join audit renamed, dropped and left out (analysis/join.py).
    joined: Joined | None = None
    # Volatility (metric_resamples.csv beside metrics.csv; analysis/volatility.py).
    swaps: pd.DataFrame | None = None
    stability: pd.DataFrame | None = None
    # Feature normality (feature_normality.csv beside metrics.csv; analysis/normality.py).
    normality: pd.DataFrame | None = None


def read_inputs(
    human_csv: Path, metrics_csv: Path, scores_csv: Path | Sequence[Path] | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None, dict]:
    """human.csv, metrics.csv, optional scores, and the files `percept human` wrote beside.

    Several scores files are stacked into one frame whose `source` column names the
    file each row came from (the join audit checks each file on its own).
    """

    def read(path: Path) -> pd.DataFrame:
        if not Path(path).is_file():
            raise PerceptError(f"{path}: file not found")
        try:
            return pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise PerceptError(f"{path}: not a readable CSV file ({e})") from None

    human = read(human_csv)
    for column in ("dataset", "model", "error"):
        if column not in human.columns:
            raise PerceptError(f"{human_csv}: missing column {column}; made by `percept human`?")
    metrics = read(metrics_csv)
    paths = [scores_csv] if isinstance(scores_csv, str | Path) else list(scores_csv or [])
    names = [Path(p).name for p in paths]
    scores = (
        pd.concat(
            [
                read(p).assign(source=name if names.count(name) == 1 else str(p))
                for p, name in zip(paths, names, strict=True)
            ],
            ignore_index=True,
        )
        if paths
        else None
    )
    folder = Path(human_csv).parent
    participants = (
        read(folder / "participant_errors.csv")
        if (folder / "participant_errors.csv").is_file()
        else None
    )
    summary_file = folder / "human_summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    return human, metrics, scores, participants, summary


def read_pairs(
    human_csv: Path, human: pd.DataFrame, pairs_csv: Path | None = None
) -> tuple[pd.DataFrame | None, Path | None]:
    """`percept human`'s pairs.csv: the file given (--pairs), else the one beside human.csv,
    else none (pairwise agreement is then not computed, and the page says so)."""
    path = Path(pairs_csv) if pairs_csv else Path(human_csv).parent / "pairs.csv"
    if not path.is_file():
        if pairs_csv:
            raise PerceptError(f"{path}: file not found")
        return None, None
    try:
        pairs = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise PerceptError(f"{path}: not a readable CSV file ({e})") from None
    return check_pairs(pairs, human, str(path)), path


def read_beside_metrics(metrics_csv: Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """metric_resamples.csv and feature_normality.csv that `percept metrics --resamples /
    --diagnose` wrote beside metrics.csv (None for each that is not there)."""
    from analysis.metrics_cli import NORMALITY_FILE, RESAMPLES_FILE

    found = []
    for name in (RESAMPLES_FILE, NORMALITY_FILE):
        path = Path(metrics_csv).parent / name
        if not path.is_file():
            found.append(None)
            continue
        try:
            found.append(pd.read_csv(path, keep_default_na=True))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise PerceptError(f"{path}: not a readable CSV file ({e})") from None
    return found[0], found[1]


def volatility_tables(
    metrics: pd.DataFrame, resamples: pd.DataFrame | None, label: str = "metric_resamples.csv"
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Pair-swap probabilities and rank stability from the resamples of metrics.csv's rows.

    The resamples must belong to this metrics.csv: a (dataset, model, encoder, metric)
    there that metrics.csv lacks is an error (an old file from another run, say).
    """
    if resamples is None:
        return None, None
    from analysis.volatility import RESAMPLE_COLUMNS, pair_swaps, rank_stability

    missing = [c for c in RESAMPLE_COLUMNS if c not in resamples.columns]
    if missing:
        raise PerceptError(
            f"{label}: missing column(s) {', '.join(missing)}; made by "
            "`percept metrics --resamples`?"
        )
    key = ["dataset", "model", "encoder", "metric"]
    resamples = resamples.astype({c: str for c in key})
    full = metrics.astype({c: str for c in key})
    known = set(full[key].itertuples(index=False, name=None))
    strangers = sorted(set(resamples[key].itertuples(index=False, name=None)) - known)
    if strangers:
        raise PerceptError(
            f"{label}: {len(strangers)} (dataset, model, encoder, metric) not in metrics.csv, "
            f"e.g. {strangers[0]}; it belongs to another run: run `percept metrics "
            "--resamples` again or move the file away"
        )
    better_of = directions(full)
    return pair_swaps(resamples, better_of), rank_stability(resamples, full, better_of)


def build(
    human: pd.DataFrame,
    metrics: pd.DataFrame,
    scores: pd.DataFrame | None = None,
    participants: pd.DataFrame | None = None,
    summary: dict | None = None,
    *,
    pairs: pd.DataFrame | None = None,
    pairs_file: str | None = None,
    resamples: int = 2000,
    seed: int = 0,
    renames: pd.DataFrame | None = None,
    allow_missing: bool = False,
    labels: tuple[str, str] = ("human.csv", "metrics.csv"),
    metric_resamples: pd.DataFrame | None = None,
    normality: pd.DataFrame | None = None,
) -> Report:
    """All the numbers of the report (no files yet).

    The join audit runs first (analysis/join.py): names are mapped by `renames`,
    and a (dataset, model) pair missing from any input stops the report unless
    `allow_missing`. `labels` name human.csv and metrics.csv in its messages. `pairs` is
    check_pairs()'d pairs.csv (read_pairs), with the same renames applied; without it the
    agreement columns stay empty. `metric_resamples` (metric_resamples.csv) gives the
    volatility tables, `normality` (feature_normality.csv) the methods' normality table;
    both get the same renames.
    """
    if "metric" in metrics:
        directions(metrics)  # an unknown metric is named before any join problem
    joined, human, metrics, scores = audit_report(
        human,
        metrics,
        scores,
        renames=renames,
        allow_missing=allow_missing,
        human_label=labels[0],
        metrics_label=labels[1],
    )
    participants = rename(participants, renames)
    pairs = rename_pairs(pairs, renames)
    if metric_resamples is not None and len(joined.left_out):
        # Pairs the audit left out (--allow-missing, listed in left_out.csv) go here too.
        out_pairs = set(
            joined.left_out[["dataset", "model"]].astype(str).itertuples(index=False, name=None)
        )
        renamed = rename(metric_resamples, renames)
        keep = [
            (d, m) not in out_pairs
            for d, m in zip(
                renamed["dataset"].astype(str), renamed["model"].astype(str), strict=True
            )
        ]
        metric_resamples = renamed[keep]
    else:
        metric_resamples = rename(metric_resamples, renames)
    swaps, stability = volatility_tables(metrics, metric_resamples)
    if normality is not None and "model" in normality:
        normality = rename(normality.fillna({"model": ""}), renames)
    data = measures(human, metrics, scores)
    table = correlations(data, participants, resamples=resamples, permutations=resamples, seed=seed)
    samples = uncertainty.kendall_samples(data, participants, resamples=resamples, seed=seed)
    table = uncertainty.annotate(table, samples)
    agreement = (
        agreement_table(data, pairs, resamples=resamples, seed=seed) if pairs is not None else None
    )
    table = add_agreement(table, agreement)
    pooled = uncertainty.pooled(table, samples)
    return Report(
        correlations=table,
        pooled=pooled,
        kendall=kendall_matrix(data),
        data=data,
        human=human,
        summary=dict(
            summary or {},
            report={"resamples": resamples, "seed": seed, "pairs": pairs_file},
        ),
        by_encoder=by_encoder(table, pooled),
        pairs=pairs,
        joined=joined,
        swaps=swaps,
        stability=stability,
        normality=normality,
    )


def rename_pairs(pairs: pd.DataFrame | None, renames: pd.DataFrame | None) -> pd.DataFrame | None:
    """pairs.csv with the same dataset and model renames as human.csv (both model columns)."""
    if pairs is None or renames is None:
        return pairs
    a = rename(pairs.assign(model=pairs["model_a"]), renames)
    b = rename(pairs.assign(model=pairs["model_b"]), renames)
    return pairs.assign(dataset=a["dataset"], model_a=a["model"], model_b=b["model"])


# --- Figures -------------------------------------------------------------------------------

# Smallest text in any figure, in points; the heatmap's measure labels included (a test keeps it).
LABEL_PT = 9
# One colour of ten per model, then the next marker: neighbours always differ in colour,
# and 80 models get 80 different colour-and-marker pairs.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
RANDOM_COLOUR = "#b91c1c"


def _bars(centre, low, high) -> np.ndarray:
    """Error-bar lengths; an interval need not contain its estimate, so clip at zero."""
    centre, low, high = (np.asarray(a, dtype=float) for a in (centre, low, high))
    return np.clip(np.vstack([centre - low, high - centre]), 0, None)


def styles(n: int) -> list[tuple[tuple[float, ...], str]]:
    """(colour, marker) for n models in order; no two neighbours share a colour."""
    import matplotlib

    colours = matplotlib.colormaps["tab10"].colors
    return [(colours[i % 10], MARKERS[(i // 10) % len(MARKERS)]) for i in range(n)]


def plain_ticks(values) -> list[str]:
    """Tick labels with the fewest digits that tell every tick apart, each readable alone.

    Fixed-point for magnitudes from 1e-4 to 1e9 (`-800`, `0.25`, `1.00000061`),
    `%g` with enough digits outside that range; minus signs are true minus signs.
    """
    values = np.asarray(values, dtype=float)
    if not len(values):
        return []
    span = float(np.ptp(values)) or abs(float(values[0])) or 1.0
    # A tick at "zero" computed as 2.7e-17 reads as zero.
    values = np.where(np.abs(values) < span * 1e-9, 0.0, values)
    largest = float(np.max(np.abs(values)))
    for digits in range(0, 18):
        if 1e-4 <= largest < 1e9 or largest == 0:
            labels = [f"{v:.{digits}f}" for v in values]
        else:
            labels = [f"{v:.{digits + 1}g}" for v in values]
        exact = all(abs(float(t) - v) <= span * 1e-6 for t, v in zip(labels, values, strict=True))
        if exact and len(set(labels)) == len(labels):
            break
    return [label.replace("-", "\u2212") for label in labels]


def _plain_formatter():
    """Tick labels as plain numbers with just the digits that tell them apart.

    No offset (`1e-8+1.0000006`) and no shared multiplier: every tick reads on its own.
    """
    from matplotlib.ticker import Formatter

    class Plain(Formatter):
        def __call__(self, x, pos=None):
            return f"{x:.6g}"

        def format_ticks(self, values):
            return plain_ticks(values)

    return Plain()


def _save(fig, out: Path, name: str) -> Path:
    png = out / f"{name}.png"
    # bbox_inches="tight" grows the saved area to every title and label: nothing is clipped.
    fig.savefig(png, dpi=100, bbox_inches="tight")
    fig.savefig(out / f"{name}.svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return png


def _random_measures(report: Report) -> set[str]:
    info = report.data.info
    if "weights" not in info:
        return set(info.loc[~info["pretrained"].astype(bool), "measure"])
    return set(info.loc[info["weights"] == "random", "measure"])


def figures(report: Report, out: Path) -> None:
    """Every figure, written as PNG and SVG into `out`."""
    import matplotlib

    matplotlib.use("Agg")
    settings = {
        # Text stays text in SVG: smaller files, faster to write, searchable in a paper.
        "svg.fonttype": "none",
        "axes.formatter.useoffset": False,
        "font.size": 10,
        "axes.labelsize": LABEL_PT + 1,
        "xtick.labelsize": LABEL_PT,
        "ytick.labelsize": LABEL_PT,
        "legend.fontsize": LABEL_PT,
    }
    with matplotlib.rc_context(settings):
        _draw(report, out)
        volatility_figures(report, out)


# Pairs of models beyond this many are left out of the swap heatmap (pair_swaps.csv has all).
HEATMAP_PAIRS = 45
SIDE_NAMES = {"fake": "resampling generated images", "real": "resampling real images"}


def volatility_figures(report: Report, out: Path) -> None:
    """Per dataset: each measure's rank stability (both sides) and, for up to HEATMAP_PAIRS
    pairs of models, the probability that the pair swaps order resampling generated images."""
    if report.stability is None or report.stability.empty:
        return
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap

    from analysis.volatility import SEPARATED_BELOW

    random = _random_measures(report)
    for dataset, frame in report.stability.groupby("dataset", sort=True):
        wide = frame.pivot_table(index="measure", columns="side", values="rank_stability")
        wide = wide.reindex(columns=list(SIDE_NAMES)).sort_values(["fake", "real"])
        measures_ = list(wide.index)
        swaps = report.swaps[
            (report.swaps["dataset"] == dataset) & (report.swaps["side"] == "fake")
        ]
        pair = [
            " · ".join(sorted((a, b)))
            for a, b in zip(swaps["ahead"].astype(str), swaps["behind"].astype(str), strict=True)
        ]
        swaps = swaps.assign(pair=pair)
        pairs = sorted(set(pair))
        heat = len(pairs) <= HEATMAP_PAIRS and len(pairs) > 0
        height = 0.3 * len(measures_) + 2.2
        fig, axes = plt.subplots(
            1,
            2 if heat else 1,
            figsize=(6 + (0.35 * len(pairs) + 2.5 if heat else 0), height),
            squeeze=False,
            layout="constrained",
            gridspec_kw={"width_ratios": [1, max(0.35 * len(pairs), 1.5) / 4]} if heat else None,
        )
        ax = axes[0, 0]
        y = np.arange(len(measures_))
        for offset, (side, colour) in zip(
            (0.2, -0.2), (("fake", "#1d4ed8"), ("real", "#b45309")), strict=True
        ):
            ax.barh(
                y + offset, wide[side].fillna(0), height=0.4, color=colour, label=SIDE_NAMES[side]
            )
        ax.set_yticks(y, [m + ("  (random weights)" if m in random else "") for m in measures_])
        for tick, m in zip(ax.get_yticklabels(), measures_, strict=True):
            if m in random:
                tick.set_color(RANDOM_COLOUR)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.5, len(measures_) - 0.5)  # the heatmap's rows, one for one
        ax.xaxis.set_major_formatter(_plain_formatter())
        ax.set_xlabel("rank stability: share of resamples reproducing the full ranking")
        fig.legend(loc="outside lower center", ncol=2, fontsize=LABEL_PT)  # off the bars
        if heat:
            ax = axes[0, 1]
            grid = (
                swaps.pivot_table(index="measure", columns="pair", values="swap_probability")
                .reindex(index=measures_, columns=pairs)
                .to_numpy(dtype=float)
            )
            colours = LinearSegmentedColormap.from_list("swap", ["#ffffff", "#b91c1c"])
            image = ax.imshow(grid, vmin=0, vmax=0.5, cmap=colours, aspect="auto")
            for (i, j), value in np.ndenumerate(grid):
                if not np.isnan(value) and value >= SEPARATED_BELOW:
                    ax.text(j, i, "≈", ha="center", va="center", fontsize=LABEL_PT)
            ax.set_xticks(range(len(pairs)), pairs, rotation=90, fontsize=LABEL_PT)
            ax.set_yticks(y, [])
            ax.set_ylim(-0.5, len(measures_) - 0.5)  # row 0 at the bottom, as the bars
            fig.colorbar(image, ax=ax, label="swap probability (0.5 = coin flip)")
        fig.suptitle(f"{dataset}: how stable is each metric's ranking of the models?")
        report.figures.append(
            (
                f"{dataset}: volatility (rank stability and pair swaps)",
                "Left: the share of bootstrap resamples whose ranking of the models equals the "
                "ranking on all images, resampling the generated images (blue) or the real "
                "images (orange). Right: the probability that each pair of models swaps order "
                "resampling the generated images; ≈ marks a pair the measure cannot separate "
                f"(swap probability ≥ {SEPARATED_BELOW}). Random-weight encoders in red.",
                _save(fig, out, f"volatility-{dataset}"),
            )
        )


def _draw(report: Report, out: Path) -> None:
    import matplotlib.pyplot as plt

    random = _random_measures(report)
    simulated = " (simulated participants)" if simulated_count(report.summary) else ""

    def plain(ax) -> None:
        ax.xaxis.set_major_formatter(_plain_formatter())
        ax.yaxis.set_major_formatter(_plain_formatter())

    wide, human = report.data.wide, report.human.set_index(["dataset", "model"])
    for dataset, frame in wide.groupby(level="dataset", sort=True):
        rows = human.loc[dataset].reindex(frame.index.get_level_values("model"))
        # Human error per model, with its participant-bootstrap interval.
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(frame) + 1.2), layout="constrained")
        order = np.argsort(rows["error"].to_numpy())
        y = np.arange(len(frame))
        err = rows["error"].to_numpy()[order]
        low = rows.get("error_low", rows["error"]).to_numpy()[order]
        high = rows.get("error_high", rows["error"]).to_numpy()[order]
        ax.errorbar(err, y, xerr=_bars(err, low, high), fmt="o", color="#1d4ed8", capsize=3)
        ax.set_yticks(y, rows.index.to_numpy()[order])
        ax.axvline(0.5, color="#999", lw=0.8, ls="--")
        ax.xaxis.set_major_formatter(_plain_formatter())
        ax.set_xlabel("human error (0.5 = indistinguishable from real)")
        ax.set_title(f"{dataset}: human error per model, 95% bootstrap interval{simulated}")
        report.figures.append(
            (
                f"{dataset}: human error",
                "Participant-bootstrap 95% intervals."
                + (" Simulated participants." * bool(simulated)),
                _save(fig, out, f"human-{dataset}"),
            )
        )

        # Forest plot of Kendall tau with both intervals.
        corr = report.correlations[
            (report.correlations["dataset"] == dataset) & (report.correlations["status"] == "ok")
        ].sort_values("kendall")
        if len(corr):
            fig, ax = plt.subplots(figsize=(8, 0.25 * len(corr) + 1.8), layout="constrained")
            y = np.arange(len(corr))
            tau = corr["kendall"].to_numpy()
            ax.errorbar(
                tau,
                y + 0.15,
                xerr=_bars(tau, corr["kendall_models_low"], corr["kendall_models_high"]),
                fmt="o",
                ms=3,
                color="#1d4ed8",
                label="resampling models",
            )
            if "kendall_participants_low" in corr:
                ax.errorbar(
                    tau,
                    y - 0.15,
                    xerr=_bars(
                        tau, corr["kendall_participants_low"], corr["kendall_participants_high"]
                    ),
                    fmt="s",
                    ms=3,
                    color="#b45309",
                    label="resampling participants",
                )
            marked = [m in random for m in corr["measure"]]
            labels = [
                m + ("  (random weights)" if r else "")
                for m, r in zip(corr["measure"], marked, strict=True)
            ]
            ax.set_yticks(y, labels)
            for tick, r in zip(ax.get_yticklabels(), marked, strict=True):
                if r:
                    tick.set_color(RANDOM_COLOUR)
            ax.axvline(0, color="#999", lw=0.8)
            ax.set_xlim(-1.05, 1.05)
            ax.xaxis.set_major_formatter(_plain_formatter())
            ax.set_xlabel("Kendall τ-b with human error (positive = agrees with people)")
            few = (
                f"\nfew models ({int(corr['models'].min())} < {uncertainty.FEW_MODELS}): "
                "intervals unreliable"
                if corr["few_models"].any()
                else ""
            )
            ax.set_title(f"{dataset}: agreement of each metric with people{few}")
            fig.legend(loc="outside lower center", ncol=2, fontsize=LABEL_PT)
            report.figures.append(
                (
                    f"{dataset}: agreement (forest plot)",
                    "Kendall τ-b with 95% bootstrap intervals; measures from random-weight "
                    "encoders in red. " + CONVENTION,
                    _save(fig, out, f"forest-{dataset}"),
                )
            )

        # Human error against each measure, one colour-and-marker per model, interval bars.
        columns = [c for c in frame.columns if c != HUMAN]
        if len(frame) >= 1 and columns:
            per_row = 5
            n_rows = -(-len(columns) // per_row)
            fig, axes = plt.subplots(
                n_rows,
                per_row,
                figsize=(2.9 * per_row, 2.6 * n_rows + 0.8),
                squeeze=False,
                sharey=True,
                layout="constrained",
            )
            herr = rows["error"].to_numpy()
            hlow = rows.get("error_low", rows["error"]).to_numpy()
            hhigh = rows.get("error_high", rows["error"]).to_numpy()
            models = frame.index.get_level_values("model")
            look = styles(len(models))
            by_marker: dict[str, list[int]] = {}
            for i, (_, marker) in enumerate(look):
                by_marker.setdefault(marker, []).append(i)
            for ax, column in zip(axes.flat, columns, strict=False):
                x = frame[column].to_numpy()
                ax.errorbar(
                    x,
                    herr,
                    yerr=_bars(herr, hlow, hhigh),
                    fmt="none",
                    ecolor="#999",
                    elinewidth=0.6,
                )
                # One scatter per marker keeps thousands of points fast.
                for marker, index in by_marker.items():
                    ax.scatter(
                        x[index],
                        herr[index],
                        c=[look[i][0] for i in index],
                        marker=marker,
                        s=22,
                        zorder=3,
                    )
                encoder, _, metric = column.rpartition("/")
                title = f"{encoder}\n{metric}" if encoder else column
                if column in random:
                    title += "\n(random weights)"
                ax.set_title(
                    title, fontsize=LABEL_PT, color=RANDOM_COLOUR if column in random else "black"
                )
                ax.xaxis.set_major_locator(plt.MaxNLocator(3))
                plain(ax)
            for ax in list(axes.flat)[len(columns) :]:
                ax.axis("off")
            handles = [
                plt.Line2D([], [], marker=marker, ls="", color=colour, label=model)
                for (colour, marker), model in zip(look, models, strict=True)
            ]
            fig.supylabel("human error")
            fig.supxlabel("metric, aligned (larger = more realistic by the metric)")
            fig.legend(
                handles=handles,
                loc="outside upper center",
                ncol=min(len(models), 6),
                fontsize=LABEL_PT,
            )
            report.figures.append(
                (
                    f"{dataset}: human error against each metric",
                    "Each point a model; bars are participant-bootstrap 95% intervals; "
                    "random-weight encoders in red.",
                    _save(fig, out, f"scatter-{dataset}"),
                )
            )

    # Heatmap of the pooled Kendall matrix, sized so that every label keeps LABEL_PT.
    if len(report.kendall):
        pooled_rows = report.kendall[report.kendall["dataset"] == "all"].set_index("measure")
        names = list(pooled_rows.index)
        side = 0.22 * len(names) + 1.5
        fig, ax = plt.subplots(figsize=(side + 2.5, side + 0.8), layout="constrained")
        image = ax.imshow(pooled_rows[names].to_numpy(dtype=float), vmin=-1, vmax=1, cmap="RdBu_r")
        shown = [n + (" (random weights)" if n in random else "") for n in names]
        ax.set_xticks(range(len(names)), shown, rotation=90, fontsize=LABEL_PT)
        ax.set_yticks(range(len(names)), shown, fontsize=LABEL_PT)
        for tick in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
            if tick.get_text().endswith("(random weights)"):
                tick.set_color(RANDOM_COLOUR)
        fig.colorbar(image, ax=ax, shrink=min(1.0, 6 / side), label="τ-b, mean over datasets")
        fig.suptitle("Kendall τ-b between human error, metrics and scores")
        report.figures.append(
            (
                "Kendall matrix",
                "Mean over datasets with at least 3 models; random-weight encoders in red.",
                _save(fig, out, "kendall-matrix"),
            )
        )


# --- HTML -------------------------------------------------------------------------------

# Column headers as a reader says them; a column not named here shows its name, spaced.
HEADERS = {
    "dataset": "Dataset",
    "model": "Model",
    "rank": "Rank",
    "measure": "Measure",
    "weights": "Encoder weights",
    "few_models": f"Few models (< {uncertainty.FEW_MODELS})",
    "versus_best": "Versus the best",
    "agreement": "Pairwise agreement",
    "models": "Models",
    "datasets": "Datasets",
    "status": "Status",
    "kendall": "Kendall τ-b",
    "kendall_models": "τ 95% CI (models)",
    "kendall_participants": "τ 95% CI (participants)",
    "kendall_p": "p (permutation)",
    "spearman": "Spearman \u03c1",
    "spearman_models": "\u03c1 95% CI (models)",
    "spearman_participants": "\u03c1 95% CI (participants)",
    "pearson": "Pearson r",
    "pearson_models": "r 95% CI (models)",
    "pearson_participants": "r 95% CI (participants)",
    "present_in": "Present in",
    "missing_from": "Missing from",
    "closest": "Closest name there",
    "left_out_of": "Left out of",
}


def header(column: str) -> str:
    """A table column's header on the page."""
    if column in HEADERS:
        return HEADERS[column]
    if column.endswith("_ci"):
        return header(column.removesuffix("_ci")) + " 95% CI"
    return column.replace("_", " ")


def _number(value: float, column: str) -> str:
    if column.endswith("_p") or column == "p":
        return f"{value:.3g}"
    return f"{value:.3f}".replace("-", "\u2212")


def with_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """Each `X_low`/`X_high` column pair as one `X` column reading `[low, high]`."""
    frame = frame.copy()
    for column in list(frame.columns):
        if not column.endswith("_low") or column.removesuffix("_low") + "_high" not in frame:
            continue
        base = column.removesuffix("_low")
        name = base if base not in frame.columns else base + "_ci"
        low, high = frame[column], frame[base + "_high"]
        text = [
            "" if pd.isna(a) or pd.isna(b) else f"[{_number(a, base)}, {_number(b, base)}]"
            for a, b in zip(low, high, strict=True)
        ]
        position = list(frame.columns).index(column)
        frame = frame.drop(columns=[column, base + "_high"])
        frame.insert(position, name, text)
    return frame


def _table(frame: pd.DataFrame, random: set[str] = frozenset()) -> str:
    """A table with readable headers, in a box that scrolls sideways rather than the page.

    Rows whose measure ran on a random-weight encoder are red and say so.
    """
    heads = "".join(f'<th scope="col">{html.escape(header(c))}</th>' for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        values = dict(zip(frame.columns, row, strict=True))
        marked = values.get("measure") in random
        cells = []
        for column, value in values.items():
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                text = ""
            elif isinstance(value, bool | np.bool_):
                text = "yes" if value else "no"
            elif isinstance(value, float | np.floating):
                text = _number(float(value), column)
            else:
                text = str(value)
            if column == "measure" and marked:
                text += " (random weights)"
            # Long words wrap; numbers and intervals never break.
            wrap = ' class="text"' if isinstance(value, str) and len(text) > 16 else ""
            cells.append(f"<td{wrap}>{html.escape(text)}</td>")
        body.append(f"<tr{' class=random' if marked else ''}>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table class="data"><thead><tr>{heads}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def simulated_count(summary: dict) -> int:
    """How many participants behind the human data were scripted, not people."""
    return int((summary.get("simulated") or {}).get("participants") or 0)


RULE_SENTENCES = {
    "max_attention_failures": lambda v: (
        "Participants who failed any attention check were excluded."
        if v == 0
        else f"Participants who failed more than {v} attention checks were excluded."
    ),
    "min_median_rt_ms": lambda v: (
        f"Participants whose median response time on main trials was under {v:g} ms were excluded."
    ),
    "max_invalid_fraction": lambda v: (
        f"Participants with more than {100 * v:g}% of their main trials flagged invalid "
        "(hidden tab, missed display frames) were excluded."
    ),
    "exclude_incomplete": lambda v: (
        "Participants who did not complete the session were excluded."
        if v
        else "Participants who did not complete the session were kept."
    ),
    "exclude_repeated_ids": lambda v: (
        "Every session after the first with the same platform id was excluded."
        if v
        else "Repeated sessions with the same platform id were kept."
    ),
    "exclude_invalid_trials": lambda v: (
        "Trials the browser flagged invalid, or whose display missed its frame target, "
        "were excluded."
        if v
        else "Trials flagged invalid by the browser were kept."
    ),
    # None is not "off" here: the limit then comes from each trial's own timing.
    "max_answers_per_second": lambda v: (
        f"Participants whose main block took less than {PACE_MARGIN:g} times its shortest "
        "possible time (fixation + exposure + mask per trial; the server's clock) were "
        "excluded."
        if v is None
        else f"Participants who answered faster than {v:g} answers per second (by the "
        "server's clock) were excluded."
        if v
        else "No exclusion by answering pace (rule off)."
    ),
    "min_session_seconds": lambda v: (
        f"Participants whose main block took less than {v:g} s were excluded."
        if v
        else "No minimum session length (rule off)."
    ),
}


def rule_sentences(rules: dict) -> list[str]:
    """One plain sentence per exclusion rule (a rule switched off says so)."""
    sentences = []
    for key, value in rules.items():
        if value is None and key != "max_answers_per_second":
            sentences.append(f"No exclusion by {key.replace('_', ' ')} (rule off).")
        elif key in RULE_SENTENCES:
            sentences.append(RULE_SENTENCES[key](value))
        else:
            sentences.append(f"{key.replace('_', ' ')}: {value}.")
    return sentences


def left_out_sentence(left_out: pd.DataFrame) -> str:
    """Every left-out pair, in words, for the methods section."""
    items = [
        f"{r.dataset}/{r.model} (only in {r.present_in}; left out of {r.left_out_of})"
        for r in left_out.itertuples(index=False)
    ]
    return (
        f"Run with --allow-missing: {len(items)} (dataset, model) pair(s) missing from some "
        f"input were left out: {'; '.join(items)}. The list is in left_out.csv."
    )


def methods(report: Report) -> str:
    """The methods section, generated from the data."""
    s = report.summary
    parts = []
    simulated = simulated_count(s)
    if simulated:
        parts.append(
            f'<p class="simulated"><strong>Simulated participants:</strong> {simulated} of '
            f"{(s.get('simulated') or {}).get('of', '?')} participants were scripted by "
            "<code>percept simulate</code> (or <code>percept demo</code>), not people; the "
            "human error rates test the pipeline and say nothing about how people see these "
            "models.</p>"
        )
    counts = s.get("counts")
    if counts and s.get("source") == "published summaries":
        files = ", ".join(Path(f["path"]).name for f in s.get("files", []))
        missing = "; ".join(item["statistic"] for item in s.get("not_available", []))
        parts.append(
            f"<p>Human error comes from published summaries ({html.escape(files)}), not from "
            f"a study run with percept: {counts['participants']} participants with "
            f"{counts['included_trials']} trials, after the exclusions the original authors "
            "applied (percept applied none). Not available from summaries: "
            f"{html.escape(missing) or 'nothing'}.</p>"
        )
    elif counts:
        by_rule = ", ".join(f"{k}: {v}" for k, v in s.get("excluded_by_rule", {}).items())
        rules = "".join(f"<li>{html.escape(r)}</li>" for r in rule_sentences(s.get("rules", {})))
        parts.append(
            f"<p>{counts['participants']} participants took part; "
            f"{counts['excluded_participants']} were excluded ({html.escape(by_rule) or 'none'}), "
            f"leaving {counts['included_participants']} with {counts['included_trials']} "
            f"stimulus trials ({counts['excluded_trials']} trials excluded as invalid). "
            f"Exclusion rules:</p><ul>{rules}</ul>"
        )
    design = s.get("design")
    if design:
        exposures = ", ".join(f"{x:g} ms" for x in design.get("planned_exposures_ms", []))
        parts.append(
            f"<p>Studies {html.escape(', '.join(design.get('studies', [])))} on "
            f"{html.escape(', '.join(design.get('platforms', [])) or 'unknown platforms')}; "
            f"median {design.get('main_trials_per_participant', 0):g} main trials per participant; "
            f"planned exposures {html.escape(exposures) or 'unlimited'}"
            f"{'; ' + str(design['unlimited_exposure_trials']) + ' trials without a time limit (attention checks or unlimited mode)' if design.get('unlimited_exposure_trials') else ''}"  # noqa: E501
            ".</p>"
        )
    info = report.data.info
    encoders = info[info["kind"] == "metric"].drop_duplicates("encoder")
    items = []
    for row in encoders.itertuples(index=False):
        kind = getattr(row, "weights", "pretrained" if row.pretrained else "random")
        if kind == "no network":
            items.append(
                f"<li>{html.escape(row.encoder)}: no network (measures on the pixels "
                "themselves)</li>"
            )
        elif kind == "pretrained":
            items.append(f"<li>{html.escape(row.encoder)}: pretrained weights</li>")
        else:
            items.append(
                f'<li class="random">{html.escape(row.encoder)}: <strong>randomly initialised, '
                "no pretrained weights</strong> (its numbers say nothing about real encoders; "
                "never named best)</li>"
            )
    parts.append(f"<p>Encoders:</p><ul>{''.join(items)}</ul>")
    boot = s.get("bootstrap", {})
    rep = s.get("report", {})
    parts.append(
        f"<p>Human error intervals: {boot.get('resamples', '?')} participant-bootstrap "
        f"resamples (seed {boot.get('seed', '?')}). Correlations: Pearson, Spearman, Kendall "
        f"τ-b with {rep.get('resamples')} bootstrap resamples of participants and, separately, "
        f"of models, and {rep.get('resamples')} permutations for the p-value (seed "
        f"{rep.get('seed')}). Datasets with fewer than {MIN_MODELS} models are not "
        f"correlated. {html.escape(CONVENTION)}</p>"
    )
    joined = report.joined
    if joined is not None:
        renamed = s.get("report", {}).get("rename")
        if renamed:
            parts.append(f"<p>Names mapped with {html.escape(renamed)} (--rename).</p>")
        if len(joined.left_out):
            parts.append(
                f'<p class="left-out">{html.escape(left_out_sentence(joined.left_out))}</p>'
            )
        for note in joined.notes:
            parts.append(f"<p>Input note: {html.escape(note)}.</p>")
    versions = s.get("versions", {})
    if versions:
        parts.append(
            "<p>Packages: "
            + html.escape(", ".join(f"{k} {v}" for k, v in versions.items()))
            + ".</p>"
        )
    return "\n".join(parts)


# --- Headline: the encoder comparison, the best measure, pairwise agreement ---------------

UNCERTAINTY_NOTE = (
    "Kendall τ-b between human error and each aligned metric (positive = agrees with "
    "people), with its 95% bootstrap interval resampling models and, where per-participant "
    "errors exist, their participants together. ★ best among measures from pretrained "
    "encoders; ≈ not distinguishable from the best (its interval overlaps the best's); "
    f"“few models”: fewer than {uncertainty.FEW_MODELS} models, so the interval is unreliable. "
    "Columns in red ran with random weights and are never “best”."
)


def _tau_colour(tau: float) -> str:
    """Cell background: blue for agreement, orange for disagreement, paler near zero."""
    if not np.isfinite(tau):
        return "#f3f4f6"
    base = (33, 102, 172) if tau >= 0 else (179, 88, 6)
    weight = 0.6 * min(1.0, abs(tau))
    r, g, b = (round(255 + (c - 255) * weight) for c in base)
    return f"#{r:02x}{g:02x}{b:02x}"


def _short_status(status: str) -> str:
    return html.escape(str(status).replace(": not computed", "").replace("not computed ", ""))


def _encoder_cell(row) -> str:
    if row is None:
        return "<td></td>"
    random = "" if row.pretrained else ' class="random"'
    if row.status != "ok":
        return f'<td class="na">not computed<br><small>{_short_status(row.status)}</small></td>'
    mark = {uncertainty.BEST: " ★", uncertainty.SAME: " ≈"}.get(row.versus_best, "")
    few = '<br><small class="few">few models</small>' if row.few_models else ""
    value = f"{row.kendall:+.2f}{mark}"
    if row.versus_best == uncertainty.BEST:
        value = f"<strong>{value}</strong>"
    return (
        f'<td{random} style="background:{_tau_colour(row.kendall)}">{value}<br>'
        f"<small>[{row.kendall_low:+.2f}, {row.kendall_high:+.2f}]</small>{few}</td>"
    )


def encoder_panels(report: Report) -> str:
    """One table per dataset and the pooled one: rows metric, columns encoder, cells τ."""
    table = report.by_encoder
    if table.empty:
        return ""
    encoders = table.drop_duplicates("encoder")
    # Pretrained encoders first, random-weight ones after, extra scores (no encoder) last.
    encoders = encoders.assign(
        _order=np.where(encoders["encoder"] == "", 2, np.where(encoders["pretrained"], 0, 1))
    ).sort_values(["_order", "encoder"])
    datasets = [d for d in table["dataset"].unique() if d != POOLED] + [POOLED]
    panels = []
    for dataset in datasets:
        mine = table[table["dataset"] == dataset]
        cells = {(r.metric, r.encoder): r for r in mine.itertuples(index=False)}
        columns = [e for e in encoders["encoder"] if e in set(mine["encoder"])]
        head = "".join(
            f"<th>{html.escape(e)}</th>"
            if p
            else f'<th class="random">{html.escape(e)}<br><small>random weights</small></th>'
            for e, p in zip(encoders["encoder"], encoders["pretrained"], strict=True)
            if e in columns
        ).replace("<th></th>", "<th>no encoder<br><small>extra scores</small></th>")
        body = "".join(
            f"<tr><th>{html.escape(str(metric))}</th>"
            + "".join(_encoder_cell(cells.get((metric, e))) for e in columns)
            + "</tr>"
            for metric in sorted(mine["metric"].astype(str).unique())
        )
        if dataset == POOLED:
            counted = int(mine["datasets"].max()) if len(mine) else 0
            title = f"Pooled: mean over datasets ({counted} at most)"
        else:
            title = f"{html.escape(str(dataset))} ({int(mine['n_models'].max())} models)"
        panels.append(
            f'<div class="panel"><h3>{title}</h3><table class="data encoders">'
            f"<tr><th>metric</th>{head}</tr>{body}</table></div>"
        )
    return (
        f"<p>{html.escape(UNCERTAINTY_NOTE)} All values in "
        '<a href="by_encoder.csv">by_encoder.csv</a>.</p>' + "\n".join(panels)
    )


def _interval_text(row) -> str:
    few = ", few models" if row.few_models else ""
    return f"τ = {row.kendall:+.2f} [{row.kendall_low:+.2f}, {row.kendall_high:+.2f}]{few}"


def best_lines(frame: pd.DataFrame) -> list[str]:
    """Plain sentences on the best measure of one dataset (or the pooled table)."""
    best = frame[frame["versus_best"] == uncertainty.BEST]
    if best.empty:
        return ["No measure from a pretrained encoder could be computed."]
    named = "; ".join(
        f"{row.measure}, {_interval_text(row)} ({int(row.models)} models)"
        for row in best.itertuples(index=False)
    )
    lines = [f"Best: {named}." if len(best) == 1 else f"Best ({len(best)} tied): {named}."]
    same = frame[frame["versus_best"] == uncertainty.SAME].sort_values("kendall", ascending=False)
    if len(same):
        lines.append(
            f"Not distinguishable from the best ({len(same)}; 95% intervals overlap): "
            + "; ".join(f"{r.measure} {_interval_text(r)}" for r in same.itertuples(index=False))
            + "."
        )
    else:
        lines.append("Every other eligible measure is distinguishable from the best.")
    random = frame[frame["versus_best"] == uncertainty.RANDOM]
    if len(random):
        count = f"{len(random)} measure" + ("s" if len(random) > 1 else "")
        lines.append(f"Not eligible: {count} from random-weight encoders.")
    return lines


def _measure_list(frame: pd.DataFrame) -> str:
    few = ' <small class="few">few models</small>'
    return "<br>".join(
        f"{html.escape(r.measure)} {html.escape(_interval_text(r).split(', few')[0])}"
        + (few if r.few_models else "")
        for r in frame.sort_values("kendall", ascending=False).itertuples(index=False)
    )


def best_section(report: Report) -> str:
    """Per dataset and pooled: the best measure with its interval and its close rivals."""
    rows = []
    groups = list(report.correlations.groupby("dataset", sort=True))
    groups.append((POOLED, report.pooled))
    for dataset, frame in groups:
        label = "pooled over datasets" if dataset == POOLED else str(dataset)
        best = frame[frame["versus_best"] == uncertainty.BEST]
        same = frame[frame["versus_best"] == uncertainty.SAME]
        models = ", ".join(str(int(m)) for m in best["models"].unique())
        rows.append(
            f"<tr><th>{html.escape(label)}</th>"
            f"<td>{_measure_list(best) or 'no measure from a pretrained encoder'}</td>"
            f"<td>{models}</td><td>{_measure_list(same) or 'none'}</td></tr>"
        )
    return (
        "<p>Only measures from pretrained encoders (and extra scores) can be best (random-"
        "weight encoders are controls, shown in the panels above); a measure "
        "is not distinguishable from the best when their 95% intervals overlap.</p>"
        '<div class="scroll"><table class="data best"><tr><th>dataset</th>'
        "<th>best: Kendall τ-b [95% interval]</th><th>models</th>"
        "<th>not distinguishable from the best</th></tr>" + "".join(rows) + "</table></div>"
    )


def agreement_section(report: Report) -> str:
    """Rows measure, columns dataset: the share of the pairs people tell apart that each
    measure orders alike, with its interval."""
    if report.pairs is None:
        return (
            "<p>Not computed: no pairs.csv beside human.csv and no <code>--pairs</code> file.</p>"
        )
    table = report.correlations
    pairs = report.pairs
    datasets = sorted(table["dataset"].unique(), key=str)
    head = []
    for dataset in datasets:
        mine = pairs[pairs["dataset"].astype(str) == str(dataset)]
        head.append(
            f"<th>{html.escape(str(dataset))}<br><small>people tell apart "
            f"{int(mine['significant'].sum())} of {len(mine)} pairs</small></th>"
        )
    shown = table[table["agreement"].notna()]
    if shown.empty:
        return "<p>No measure has a pair of models that people tell apart to compare.</p>"
    cells = {(r.dataset, r.measure): r for r in shown.itertuples(index=False)}
    order = shown.groupby("measure")["agreement"].mean().sort_values(ascending=False).index
    pretrained = table.drop_duplicates("measure").set_index("measure")["pretrained"]
    body = []
    for measure in order:
        flag = "" if pretrained.get(measure, True) else " (random weights)"
        tds = []
        for dataset in datasets:
            r = cells.get((dataset, measure))
            tds.append(
                "<td></td>"
                if r is None
                else f"<td>{r.agreement:.2f} <small>[{r.agreement_low:.2f}, "
                f"{r.agreement_high:.2f}] of {int(r.agreement_pairs)}</small></td>"
            )
        css = "" if not flag else ' class="random"'
        body.append(f"<tr><th{css}>{html.escape(measure + flag)}</th>{''.join(tds)}</tr>")
    return (
        "<p>Of the pairs of models that people tell apart (pairs.csv: Holm-adjusted "
        "p &lt; 0.05), the share that each measure orders the same way (1 = all of them, "
        "0 = none), with a 95% interval resampling models and the number of pairs compared. "
        "Also in correlations.csv (columns agreement*).</p>"
        '<div class="scroll"><table class="data agreement"><tr><th>measure</th>'
        + "".join(head)
        + "</tr>"
        + "".join(body)
        + "</table></div>"
    )


def pooled_section(report: Report, random: set[str] = frozenset()) -> str:
    """The pooled table's Kendall columns (pooled.csv has them all, Spearman and Pearson
    too), the first 30 rows."""
    columns = [
        "rank",
        "measure",
        "weights",
        "kendall",
        "kendall_low",
        "kendall_high",
        "datasets",
        "models",
        "few_models",
        "versus_best",
    ]
    frame = report.pooled.head(30)
    info = report.data.info
    if "weights" in info and "measure" in frame:
        frame = frame.assign(weights=frame["measure"].map(info.set_index("measure")["weights"]))
    frame = frame[[c for c in columns if c in frame.columns]]
    frame = frame.assign(rank=frame["rank"].astype(object).where(frame["rank"].notna(), ""))
    return _table(with_intervals(frame), random)


def volatility_section(report: Report) -> str:
    """Per dataset, each measure's rank stability and the pairs of models it cannot separate."""
    from analysis.volatility import SEPARATED_BELOW

    if report.stability is None:
        return (
            "<p>Not computed: no metric_resamples.csv beside metrics.csv; run "
            "<code>percept metrics --resamples B</code> (e.g. B = 100).</p>"
        )
    if report.stability.empty:
        return "<p>No dataset has two models with resampled metrics.</p>"
    random = _random_measures(report)
    swaps = report.swaps
    parts = [
        "<p>Every metric recomputed on bootstrap resamples of each model's generated images "
        "and, separately, of the real images (<code>percept metrics --resamples</code>). "
        "<em>Rank stability</em>: the share of resamples whose ranking of the models equals "
        "the ranking on all images. A pair of models the measure <em>cannot separate</em> "
        f"swaps order in at least {SEPARATED_BELOW:.0%} of resamples (swap probability in "
        "brackets; 0.5 is a coin flip). All pairs in "
        '<a href="pair_swaps.csv">pair_swaps.csv</a>, stability in '
        '<a href="rank_stability.csv">rank_stability.csv</a>.</p>'
    ]
    for dataset, frame in report.stability.groupby("dataset", sort=True):
        wide = frame.pivot_table(index="measure", columns="side", values="rank_stability")
        wide = wide.reindex(columns=list(SIDE_NAMES)).sort_values("fake", ascending=False)
        body = []
        for measure, row in wide.iterrows():
            cells = []
            for side in SIDE_NAMES:
                mine = swaps[
                    (swaps["dataset"] == dataset)
                    & (swaps["measure"] == measure)
                    & (swaps["side"] == side)
                    & ~swaps["separated"]
                ].sort_values("swap_probability", ascending=False)
                total = int(
                    (
                        (swaps["dataset"] == dataset)
                        & (swaps["measure"] == measure)
                        & (swaps["side"] == side)
                    ).sum()
                )
                named = ", ".join(
                    f"{html.escape(str(r.ahead))} ≈ {html.escape(str(r.behind))} "
                    f"({r.swap_probability:.2f})"
                    for r in mine.head(5).itertuples(index=False)
                )
                more = f", {len(mine) - 5} more" if len(mine) > 5 else ""
                stability = "" if pd.isna(row[side]) else f"{row[side]:.2f}"
                cells.append(
                    f"<td>{stability}</td><td class=text>{len(mine)} of {total}"
                    f"{': ' + named + more if len(mine) else ''}</td>"
                )
            css = ' class="random"' if measure in random else ""
            flag = " (random weights)" if measure in random else ""
            body.append(
                f"<tr{css}><th>{html.escape(str(measure) + flag)}</th>{''.join(cells)}</tr>"
            )
        resamples = int(frame["resamples"].max())
        parts.append(
            f"<h3>{html.escape(str(dataset))} ({int(frame['models'].max())} models, "
            f"{resamples} resamples)</h3>"
            '<div class="scroll"><table class="data volatility"><tr><th>measure</th>'
            "<th>rank stability<br><small>generated resampled</small></th>"
            "<th>pairs not separated<br><small>generated resampled</small></th>"
            "<th>rank stability<br><small>real resampled</small></th>"
            "<th>pairs not separated<br><small>real resampled</small></th></tr>"
            + "".join(body)
            + "</table></div>"
        )
    return "\n".join(parts)


def normality_methods(report: Report) -> str:
    """The Gaussianity diagnostic per encoder (feature_normality.csv), for the methods."""
    table = report.normality
    if table is None:
        return (
            "<p>Feature normality: not computed (no feature_normality.csv beside metrics.csv; "
            "run <code>percept metrics --diagnose</code>).</p>"
        )
    rows = []
    for encoder, mine in table.groupby("encoder", sort=True):
        tested = mine[mine["components"] > 0]
        rejected = int(((tested["skewness_p"] < 0.05) | (tested["kurtosis_p"] < 0.05)).sum())
        rows.append(
            {
                "encoder": encoder,
                "feature sets": len(mine),
                "components": ", ".join(str(int(k)) for k in sorted(set(mine["components"]))),
                "median variance explained": f"{tested['explained'].median():.2f}",
                "median skewness b1 (0 if Gaussian)": f"{tested['skewness'].median():.3g}",
                "median kurtosis ratio (1 if Gaussian)": f"{tested['kurtosis_ratio'].median():.3g}",
                "sets rejected at 5%": f"{rejected} of {len(tested)}",
            }
        )
    return (
        "<p>Feature normality (the assumption behind every Fréchet distance): per encoder, "
        "Mardia's multivariate skewness and kurtosis of each feature set (the real images and "
        "each model's, per dataset) on its top principal components (docs/metrics.md). A set "
        "is rejected when either test has p &lt; 0.05; with thousands of images nearly every "
        "real feature set is, so compare the statistics across encoders: the closer b1 is to 0 "
        "and the kurtosis ratio to 1, the more Gaussian. Every set in "
        '<a href="feature_normality.csv">feature_normality.csv</a>.</p>'
        + _table(pd.DataFrame(rows))
    )


def uncertainty_methods(report: Report) -> str:
    """How the headline intervals, "best" and pairwise agreement were computed."""
    rep = report.summary.get("report", {})
    pairs = rep.get("pairs")
    source = (
        f"from {html.escape(Path(pairs).name)} ({html.escape(str(pairs))})"
        if pairs
        else "not computed (no pairs.csv)"
    )
    return (
        f"<p>Headline intervals: {rep.get('resamples')} bootstrap resamples (seed "
        f"{rep.get('seed')}) that draw each dataset's models with replacement and, where "
        "participant_errors.csv exists, each drawn model's participants with replacement; "
        "the pooled interval averages each resample's τ over the datasets. “Best” is chosen "
        "only among measures from pretrained encoders (and extra scores); every such measure "
        "whose 95% interval overlaps the best's is listed as not distinguishable from it. A "
        "measure constant over a dataset's models is not computed there and counts for no "
        f"dataset when pooled. Intervals from fewer than {uncertainty.FEW_MODELS} models are "
        f"marked “few models”. Pairwise agreement: {source}; the pairs with Holm-adjusted "
        "p &lt; 0.05, each counted as agreeing when the measure orders it as people do (a tie "
        "does not); interval by resampling models.</p>"
    )


KENDALL_COLUMNS = (
    "dataset",
    "rank",
    "measure",
    "weights",
    "models",
    "few_models",
    "kendall",
    "kendall_models_low",
    "kendall_models_high",
    "kendall_participants_low",
    "kendall_participants_high",
    "kendall_p",
)
OTHER_COLUMNS = (
    "dataset",
    "measure",
    "spearman",
    "spearman_models_low",
    "spearman_models_high",
    "pearson",
    "pearson_models_low",
    "pearson_models_high",
)


def _pick(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    return frame[[c for c in columns if c in frame.columns]]


def write(report: Report, out: Path) -> None:
    """correlations.csv, kendall_matrix.csv, pooled.csv, left_out.csv, figures and index.html.

    CSV numbers keep full float64 precision (shortest round-trip repr).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report.correlations.to_csv(out / "correlations.csv", index=False)
    report.kendall.to_csv(out / "kendall_matrix.csv", index=False)
    report.pooled.to_csv(out / "pooled.csv", index=False)
    report.by_encoder.to_csv(out / "by_encoder.csv", index=False)
    left_out = (
        report.joined.left_out
        if report.joined is not None
        else pd.DataFrame(columns=list(LEFT_OUT_COLUMNS))
    )
    left_out.to_csv(out / "left_out.csv", index=False)
    if report.swaps is not None:
        report.swaps.to_csv(out / "pair_swaps.csv", index=False)
        report.stability.to_csv(out / "rank_stability.csv", index=False)
    if report.normality is not None:
        report.normality.to_csv(out / "feature_normality.csv", index=False)
    figures(report, out)
    random = _random_measures(report)
    table = report.correlations
    not_computed = _pick(table[table["status"] != "ok"], ("dataset", "measure", "status"))
    top = table[table["status"] == "ok"]
    figures_html = "\n".join(
        f'<figure><div class="scroll"><img alt="{html.escape(title)}"'
        f'{" class=natural" if png.stem == "kendall-matrix" else ""} src="data:image/png;base64,'
        f'{base64.b64encode(png.read_bytes()).decode()}"></div><figcaption>'
        f"<strong>{html.escape(title)}.</strong> {html.escape(caption)} "
        f'(<a href="{png.with_suffix(".svg").name}">SVG</a>)</figcaption></figure>'
        for title, caption, png in report.figures
    )
    simulated = simulated_count(report.summary)
    banner = (
        f'<p class="simulated"><strong>Simulated data.</strong> The human data come from '
        f"{simulated} participants scripted by <code>percept simulate</code> (or "
        "<code>percept demo</code>), not from people: these numbers test the pipeline, they "
        "say nothing about how people see these models.</p>"
        if simulated
        else ""
    )
    left_html = ""
    if len(left_out):
        left_html = (
            "<h2>Left out (--allow-missing)</h2><p>These (dataset, model) pairs are missing "
            "from some input and are not in the correlations named; also in "
            '<a href="left_out.csv">left_out.csv</a>.</p>' + _table(left_out)
        )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>percept: which metrics agree with people</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem;
  color: #222; line-height: 1.45; }}
.scroll {{ max-width: 100%; overflow-x: auto; }}
table.data {{ border-collapse: collapse; font-size: 0.85rem; margin: 1rem 0; }}
table.data th {{ text-align: left; vertical-align: bottom; }}
table.data th, table.data td {{ border-bottom: 1px solid #ddd; padding: 0.2rem 0.5rem; }}
table.data td {{ white-space: nowrap; }}
table.data td.text {{ white-space: normal; min-width: 9rem; }}
figure {{ margin: 2rem 0; }} figure img {{ max-width: 100%; }}
.random, tr.random td {{ color: #b91c1c; }} .few {{ color: #b45309; font-weight: 600; }}
.panel {{ display: inline-block; vertical-align: top; margin: 0 1.5rem 1rem 0;
  max-width: 100%; overflow-x: auto; }}
table.encoders td {{ text-align: center; min-width: 6.5rem; }}
table.best td {{ white-space: normal; min-width: 8rem; }} td.na {{ color: #6b7280; }}
figure img.natural {{ max-width: none; }}
.convention {{ background: #eef2ff; padding: 0.6rem 1rem; }}
.simulated {{ background: #fef3c7; border-left: 4px solid #b45309; padding: 0.6rem 1rem; }}
</style></head><body>
<h1>Which metrics agree with people?</h1>
{banner}
<p class="convention">{html.escape(CONVENTION)}</p>
{left_html}
<h2>The same metric on each encoder</h2>
{encoder_panels(report)}
<h2>Best metric per dataset</h2>
{best_section(report)}
<h2>Pooled across datasets</h2>
<p>Mean of each measure's per-dataset coefficients (datasets with at least {MIN_MODELS} models){
        f"; the first 30 of {len(report.pooled)} measures, all in "
        '<a href="pooled.csv">pooled.csv</a>'
        if len(report.pooled) > 30
        else ""
    }.</p>
{pooled_section(report, random)}
<h2>Pairwise agreement where people disagree</h2>
{agreement_section(report)}
<h2>Volatility: can each metric tell the models apart?</h2>
{volatility_section(report)}
<h2>Figures</h2>
{figures_html}
<h2>All correlations</h2>
<p>Also in <a href="correlations.csv">correlations.csv</a>; the Kendall matrix in
<a href="kendall_matrix.csv">kendall_matrix.csv</a>. Kendall τ-b with both intervals and its
p-value first, then Spearman and Pearson.</p>
{_table(with_intervals(_pick(top, KENDALL_COLUMNS)), random)}
<h3>Spearman and Pearson</h3>
{_table(with_intervals(_pick(top, OTHER_COLUMNS)), random)}
<h2>Not computed</h2>
{_table(not_computed, random) if len(not_computed) else "<p>Every measure was computed.</p>"}
<h2>Methods</h2>
{methods(report)}
{uncertainty_methods(report)}
{normality_methods(report)}
</body></html>
"""
    (out / "index.html").write_text(page, encoding="utf-8")
