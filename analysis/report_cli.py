"""`percept report`: which metrics agree with people, as tables, figures and one HTML page."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--human",
    "human_csv",
    required=True,
    type=click.Path(path_type=Path),
    help="human.csv from `percept human` (participant_errors.csv and "
    "human_summary.json beside it are used when present).",
)
@click.option(
    "--metrics",
    "metrics_csv",
    required=True,
    type=click.Path(path_type=Path),
    help="metrics.csv from `percept metrics`.",
)
@click.option(
    "--scores",
    "scores_csv",
    type=click.Path(path_type=Path),
    multiple=True,
    help="Extra per-model scores (repeatable): CSV with dataset, model, score, value, direction.",
)
@click.option(
    "--rename",
    "rename_csv",
    type=click.Path(path_type=Path),
    help="Map dataset and model names before joining: CSV with columns from, to and "
    "optionally dataset (docs/report.md).",
)
@click.option(
    "--allow-missing",
    is_flag=True,
    help="Go on when a (dataset, model) is missing from some input: leave it out, list it "
    "in left_out.csv, the page and the methods (default: stop and name it).",
)
@click.option(
    "--pairs",
    "pairs_csv",
    type=click.Path(path_type=Path),
    help="pairs.csv from `percept human` for pairwise agreement [default: pairs.csv beside "
    "--human, when there is one].",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to write.")
@click.option("--resamples", type=click.IntRange(min=100), default=2000, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def report(
    human_csv: Path,
    metrics_csv: Path,
    scores_csv: tuple[Path, ...],
    pairs_csv: Path | None,
    rename_csv: Path | None,
    allow_missing: bool,
    out: Path,
    resamples: int,
    seed: int,
) -> None:
    """Correlate human error with every metric, per dataset; write an HTML report.

    First the inputs are joined on (dataset, model): a name missing from any input
    stops the report with the closest spelling on the other side, unless --rename
    maps it or --allow-missing leaves it out (and records it).
    """
    from analysis import report as reporting
    from analysis.join import read_renames

    human, metrics, scores, participants, summary = reporting.read_inputs(
        human_csv, metrics_csv, scores_csv
    )
    pairs, pairs_file = reporting.read_pairs(human_csv, human, pairs_csv)
    renames = read_renames(rename_csv) if rename_csv else None
    metric_resamples, normality = reporting.read_beside_metrics(metrics_csv)
    result = reporting.build(
        human,
        metrics,
        scores,
        participants,
        summary,
        pairs=pairs,
        pairs_file=str(pairs_file) if pairs_file else None,
        resamples=resamples,
        seed=seed,
        renames=renames,
        allow_missing=allow_missing,
        labels=(Path(human_csv).name, Path(metrics_csv).name),
        metric_resamples=metric_resamples,
        normality=normality,
    )
    if rename_csv:
        result.summary["report"]["rename"] = str(rename_csv)
    for note in result.joined.notes:
        click.echo(f"note: {note}")
    if result.joined.problems:
        click.echo(
            f"--allow-missing: {len(result.joined.left_out)} (dataset, model) pair(s) left out "
            "(left_out.csv):"
        )
        for line in result.joined.problems:
            click.echo(f"  {line}")
    simulated = reporting.simulated_count(result.summary)
    if simulated:
        click.echo(
            f"note: the human data come from {simulated} simulated participants "
            "(percept simulate or percept demo), not people"
        )
    reporting.write(result, out)
    click.echo(
        "Best metric per dataset among pretrained encoders (Kendall τ-b with human error, "
        f"95% interval; {len(result.pooled)} measures):"
    )
    for dataset, frame in result.correlations.groupby("dataset", sort=True):
        click.echo(f"  {dataset}: " + " ".join(reporting.best_lines(frame)))
    click.echo("  pooled: " + " ".join(reporting.best_lines(result.pooled)))
    if pairs is None:
        click.echo("No pairs.csv beside --human (or --pairs): pairwise agreement not computed.")
    click.echo(f"Report: {out / 'index.html'}")
