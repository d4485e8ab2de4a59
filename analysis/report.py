"""The correlation report: CSV tables, figures (PNG and SVG) and one self-contained index.html.

index.html embeds every figure as a PNG data URI and uses no script or remote
asset, so it opens offline and can be mailed as one file; the SVG files beside
it are for papers.
"""

from __future__ import annotations

import base64
import html
import json
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
    kendall_matrix,
    measures,
)
from percept.errors import PerceptError


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


def read_inputs(
    human_csv: Path, metrics_csv: Path, scores_csv: Path | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None, dict]:
    """human.csv, metrics.csv, optional scores, and the files `percept human` wrote beside."""

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
    scores = read(scores_csv) if scores_csv else None
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
) -> Report:
    """All the numbers of the report (no files yet).

    `pairs` is check_pairs()'d pairs.csv (read_pairs); without it the agreement columns
    stay empty.
    """
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
    )


# --- Figures -------------------------------------------------------------------------------


def _bars(centre, low, high) -> np.ndarray:
    """Error-bar lengths; an interval need not contain its estimate, so clip at zero."""
    centre, low, high = (np.asarray(a, dtype=float) for a in (centre, low, high))
    return np.clip(np.vstack([centre - low, high - centre]), 0, None)


def _save(fig, out: Path, name: str, layout: bool = True) -> Path:
    if layout:
        fig.tight_layout()
    png = out / f"{name}.png"
    # Layout is done once by the figure itself; bbox_inches="tight" would draw it twice more.
    fig.savefig(png, dpi=100)
    fig.savefig(out / f"{name}.svg")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return png


def figures(report: Report, out: Path) -> None:
    """Every figure, written as PNG and SVG into `out`."""
    import matplotlib

    matplotlib.use("Agg")
    # Text stays text in SVG: smaller files, faster to write, searchable in a paper.
    matplotlib.rcParams["svg.fonttype"] = "none"
    import matplotlib.pyplot as plt

    wide, human = report.data.wide, report.human.set_index(["dataset", "model"])
    for dataset, frame in wide.groupby(level="dataset", sort=True):
        rows = human.loc[dataset].reindex(frame.index.get_level_values("model"))
        # Human error per model, with its participant-bootstrap interval.
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(frame) + 1.2))
        order = np.argsort(rows["error"].to_numpy())
        y = np.arange(len(frame))
        err = rows["error"].to_numpy()[order]
        low = rows.get("error_low", rows["error"]).to_numpy()[order]
        high = rows.get("error_high", rows["error"]).to_numpy()[order]
        ax.errorbar(err, y, xerr=_bars(err, low, high), fmt="o", color="#1d4ed8", capsize=3)
        ax.set_yticks(y, rows.index.to_numpy()[order])
        ax.axvline(0.5, color="#999", lw=0.8, ls="--")
        ax.set_xlabel("human error (0.5 = indistinguishable from real)")
        ax.set_title(f"{dataset}: human error per model, 95% bootstrap interval")
        report.figures.append(
            (
                f"{dataset}: human error",
                "Participant-bootstrap 95% intervals.",
                _save(fig, out, f"human-{dataset}"),
            )
        )

        # Forest plot of Kendall tau with both intervals.
        corr = report.correlations[
            (report.correlations["dataset"] == dataset) & (report.correlations["status"] == "ok")
        ].sort_values("kendall")
        if len(corr):
            fig, ax = plt.subplots(figsize=(7, 0.22 * len(corr) + 1.5))
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
            labels = [
                m + ("  (random weights)" if not p else "")
                for m, p in zip(corr["measure"], corr["pretrained"].fillna(True), strict=True)
            ]
            ax.set_yticks(y, labels, fontsize=7)
            for tick, pretrained in zip(
                ax.get_yticklabels(), corr["pretrained"].fillna(True), strict=True
            ):
                if not pretrained:
                    tick.set_color("#b91c1c")
            ax.axvline(0, color="#999", lw=0.8)
            ax.set_xlim(-1.05, 1.05)
            ax.set_xlabel("Kendall τ-b with human error (positive = agrees with people)")
            few = (
                f"\nfew models ({int(corr['models'].min())} < {uncertainty.FEW_MODELS}): "
                "intervals unreliable"
                if corr["few_models"].any()
                else ""
            )
            ax.set_title(f"{dataset}: agreement of each metric with people{few}")
            ax.legend(loc="lower right", fontsize=7)
            report.figures.append(
                (
                    f"{dataset}: agreement (forest plot)",
                    "Kendall τ-b with 95% bootstrap intervals. " + CONVENTION,
                    _save(fig, out, f"forest-{dataset}"),
                )
            )

        # Human error against each measure, model labels, interval bars.
        columns = [c for c in frame.columns if c != HUMAN]
        if len(frame) >= 1 and columns:
            per_row = 6
            n_rows = -(-len(columns) // per_row)
            fig, axes = plt.subplots(
                n_rows,
                per_row,
                figsize=(2.6 * per_row, 2.3 * n_rows),
                squeeze=False,
                sharey=True,
            )
            herr = rows["error"].to_numpy()
            hlow = rows.get("error_low", rows["error"]).to_numpy()
            hhigh = rows.get("error_high", rows["error"]).to_numpy()
            # One colour per model, named once in a shared legend: thousands of point labels
            # made this figure the slowest part of the report.
            models = frame.index.get_level_values("model")
            colours = plt.get_cmap("tab20")(np.arange(len(models)) % 20)
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
                ax.scatter(x, herr, c=colours, s=12, zorder=3)
                ax.set_title(column, fontsize=7)
                ax.tick_params(labelsize=6)
                ax.xaxis.set_major_locator(plt.MaxNLocator(3))
            for ax in list(axes.flat)[len(columns) :]:
                ax.axis("off")
            handles = [
                plt.Line2D([], [], marker="o", ls="", color=c, label=m)
                for c, m in zip(colours, models, strict=True)
            ]
            fig.supylabel("human error")
            fig.supxlabel("metric, aligned (larger = more realistic by the metric)")
            fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (2.3 * n_rows)))
            fig.legend(handles=handles, loc="upper center", ncol=min(len(models), 10), fontsize=7)
            report.figures.append(
                (
                    f"{dataset}: human error against each metric",
                    "Each point a model; bars are participant-bootstrap 95% intervals.",
                    _save(fig, out, f"scatter-{dataset}", layout=False),
                )
            )

    # Heatmap of the pooled Kendall matrix.
    if len(report.kendall):
        pooled_rows = report.kendall[report.kendall["dataset"] == "all"].set_index("measure")
        names = list(pooled_rows.index)
        size = max(4, 0.18 * len(names) + 2)
        fig, ax = plt.subplots(figsize=(size, size))
        image = ax.imshow(pooled_rows[names].to_numpy(dtype=float), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=5)
        ax.set_yticks(range(len(names)), names, fontsize=5)
        fig.colorbar(image, ax=ax, shrink=0.6, label="Kendall τ-b (mean over datasets)")
        ax.set_title("Kendall τ-b between human error, metrics and scores")
        report.figures.append(
            (
                "Kendall matrix",
                "Mean over datasets with at least 3 models.",
                _save(fig, out, "kendall-matrix"),
            )
        )


# --- HTML -------------------------------------------------------------------------------


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    return frame.to_html(
        index=False,
        float_format=lambda v: f"{v:.{digits}f}",
        na_rep="",
        border=0,
        classes="data",
        escape=True,
    )


def methods(report: Report) -> str:
    """The methods section, generated from the data."""
    s = report.summary
    parts = []
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
        parts.append(
            f"<p>{counts['participants']} participants took part; "
            f"{counts['excluded_participants']} were excluded ({html.escape(by_rule) or 'none'}), "
            f"leaving {counts['included_participants']} with {counts['included_trials']} "
            f"stimulus trials ({counts['excluded_trials']} trials excluded as invalid). "
            f"Exclusion rules: {html.escape(json.dumps(s.get('rules', {})))}.</p>"
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
        if row.pretrained:
            items.append(f"<li>{html.escape(row.encoder)}: pretrained weights</li>")
        else:
            items.append(
                f'<li class="random">{html.escape(row.encoder)}: <strong>randomly initialised, '
                "no pretrained weights</strong> (its numbers say nothing about real encoders)</li>"
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
        lines.append(f"Not eligible (random weights): {', '.join(random['measure'])}.")
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
        random = frame[frame["versus_best"] == uncertainty.RANDOM]
        models = ", ".join(str(int(m)) for m in best["models"].unique())
        rows.append(
            f"<tr><th>{html.escape(label)}</th>"
            f"<td>{_measure_list(best) or 'no measure from a pretrained encoder'}</td>"
            f"<td>{models}</td><td>{_measure_list(same) or 'none'}</td>"
            f'<td class="random">{"<br>".join(html.escape(m) for m in random["measure"])}</td>'
            "</tr>"
        )
    return (
        "<p>Only measures from pretrained encoders (and extra scores) can be best; a measure "
        "is not distinguishable from the best when their 95% intervals overlap.</p>"
        '<div class="scroll"><table class="data best"><tr><th>dataset</th>'
        "<th>best: Kendall τ-b [95% interval]</th><th>models</th>"
        "<th>not distinguishable from the best</th><th>random weights: not eligible</th></tr>"
        + "".join(rows)
        + "</table></div>"
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


def pooled_section(report: Report) -> str:
    """The pooled table's key columns (pooled.csv has them all)."""
    columns = [
        "rank",
        "measure",
        "kendall",
        "kendall_low",
        "kendall_high",
        "datasets",
        "models",
        "few_models",
        "versus_best",
        "spearman",
        "pearson",
    ]
    frame = report.pooled[[c for c in columns if c in report.pooled.columns]].head(30)
    frame = frame.assign(rank=frame["rank"].astype(object).where(frame["rank"].notna(), ""))
    return f'<div class="scroll">{_table(frame)}</div>'


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


def write(report: Report, out: Path) -> None:
    """correlations.csv, kendall_matrix.csv, pooled.csv, figures and index.html into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report.correlations.to_csv(out / "correlations.csv", index=False, float_format="%.6g")
    report.kendall.to_csv(out / "kendall_matrix.csv", index=False, float_format="%.6g")
    report.pooled.to_csv(out / "pooled.csv", index=False, float_format="%.6g")
    report.by_encoder.to_csv(out / "by_encoder.csv", index=False)
    figures(report, out)
    too_small = report.correlations[report.correlations["status"] != "ok"][
        ["dataset", "measure", "status"]
    ].drop_duplicates("dataset")
    top = report.correlations[report.correlations["status"] == "ok"]
    columns = [
        c
        for c in (
            "dataset",
            "rank",
            "measure",
            "pretrained",
            "models",
            "few_models",
            "kendall",
            "kendall_models_low",
            "kendall_models_high",
            "kendall_participants_low",
            "kendall_participants_high",
            "kendall_p",
            "spearman",
            "pearson",
        )
        if c in top.columns
    ]
    figures_html = "\n".join(
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,'
        f'{base64.b64encode(png.read_bytes()).decode()}"><figcaption>'
        f"<strong>{html.escape(title)}.</strong> {html.escape(caption)} "
        f'(<a href="{png.with_suffix(".svg").name}">SVG</a>)</figcaption></figure>'
        for title, caption, png in report.figures
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>percept: which metrics agree with people</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem;
  color: #222; line-height: 1.45; }}
table.data {{ border-collapse: collapse; font-size: 0.85rem; margin: 1rem 0; }}
table.data th, table.data td {{ border-bottom: 1px solid #ddd; padding: 0.2rem 0.5rem; }}
figure {{ margin: 2rem 0; }} figure img {{ max-width: 100%; }}
.random {{ color: #b91c1c; }} .few {{ color: #b45309; font-weight: 600; }}
.panel {{ display: inline-block; vertical-align: top; margin: 0 1.5rem 1rem 0;
  max-width: 100%; overflow-x: auto; }}
.scroll {{ max-width: 100%; overflow-x: auto; }}
table.encoders td {{ text-align: center; min-width: 6.5rem; }} td.na {{ color: #6b7280; }}
.convention {{ background: #eef2ff; padding: 0.6rem 1rem; }}
</style></head><body>
<h1>Which metrics agree with people?</h1>
<p class="convention">{html.escape(CONVENTION)}</p>
<h2>The same metric on each encoder</h2>
{encoder_panels(report)}
<h2>Best metric per dataset</h2>
{best_section(report)}
{_table(too_small) if len(too_small) else ""}
<h2>Pooled across datasets</h2>
<p>Mean of each measure's per-dataset coefficients (datasets with at least {MIN_MODELS} models).</p>
{pooled_section(report)}
<h2>Pairwise agreement where people disagree</h2>
{agreement_section(report)}
<h2>Figures</h2>
{figures_html}
<h2>All correlations</h2>
<p>Also in <a href="correlations.csv">correlations.csv</a>; the Kendall matrix in
<a href="kendall_matrix.csv">kendall_matrix.csv</a>.</p>
{_table(top[columns])}
<h2>Methods</h2>
{methods(report)}
{uncertainty_methods(report)}
</body></html>
"""
    (out / "index.html").write_text(page, encoding="utf-8")
