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
    help="Extra per-model scores: CSV with dataset, model, score, value, direction.",
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
    scores_csv: Path | None,
    pairs_csv: Path | None,
    out: Path,
    resamples: int,
    seed: int,
) -> None:
    """Correlate human error with every metric, per dataset; write an HTML report."""
    from analysis import report as reporting

    human, metrics, scores, participants, summary = reporting.read_inputs(
        human_csv, metrics_csv, scores_csv
    )
    pairs, pairs_file = reporting.read_pairs(human_csv, human, pairs_csv)
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
