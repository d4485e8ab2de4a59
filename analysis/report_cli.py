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
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to write.")
@click.option("--resamples", type=click.IntRange(min=100), default=2000, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def report(
    human_csv: Path,
    metrics_csv: Path,
    scores_csv: Path | None,
    out: Path,
    resamples: int,
    seed: int,
) -> None:
    """Correlate human error with every metric, per dataset; write an HTML report."""
    from analysis import report as reporting

    human, metrics, scores, participants, summary = reporting.read_inputs(
        human_csv, metrics_csv, scores_csv
    )
    result = reporting.build(
        human, metrics, scores, participants, summary, resamples=resamples, seed=seed
    )
    reporting.write(result, out)
    click.echo(
        f"Best metric per dataset (Kendall τ-b with human error; {len(result.pooled)} measures):"
    )
    best = result.correlations[result.correlations["rank"] == 1]
    for row in best.drop_duplicates("dataset").itertuples(index=False):
        flag = "" if row.pretrained else "  [random weights]"
        click.echo(f"  {row.dataset:<14} {row.measure:<36} τ = {row.kendall:+.2f}{flag}")
    click.echo(f"Report: {out / 'index.html'}")
