"""`percept human EXPORT_DIR --out DIR`: human error rates per model from a study export."""

from __future__ import annotations

from pathlib import Path

import click

OUTPUTS = (
    "human.csv",
    "pairs.csv",
    "images.csv",
    "exclusions.csv",
    "participant_errors.csv",
    "human_summary.json",
)


@click.command()
@click.argument("source")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to write.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="Study config whose [exclusions] rules to apply (docs/study-config.md).",
)
@click.option("--max-attention-failures", type=click.IntRange(min=0), help="Override the rule.")
@click.option("--min-median-rt", "min_median_rt_ms", type=click.FloatRange(min=0), help="In ms.")
@click.option("--max-invalid-fraction", type=click.FloatRange(0, 1), help="Override the rule.")
@click.option("--keep-incomplete", is_flag=True, help="Keep sessions that did not complete.")
@click.option("--keep-repeated-ids", is_flag=True, help="Keep repeated platform ids.")
@click.option("--keep-invalid-trials", is_flag=True, help="Keep trials flagged invalid.")
@click.option(
    "--resamples",
    type=click.IntRange(min=100),
    default=10_000,
    show_default=True,
    help="Bootstrap resamples.",
)
@click.option("--joint", is_flag=True, help="Also bootstrap over participants and images jointly.")
@click.option("--no-mixed", is_flag=True, help="Skip the mixed-effects model.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def human(
    source: str,
    out: Path,
    config_file: Path | None,
    max_attention_failures: int | None,
    min_median_rt_ms: float | None,
    max_invalid_fraction: float | None,
    keep_incomplete: bool,
    keep_repeated_ids: bool,
    keep_invalid_trials: bool,
    resamples: int,
    joint: bool,
    no_mixed: bool,
    seed: int,
) -> None:
    """Human error rates per model from SOURCE (an export folder or a database URL).

    Writes human.csv (one row per model), pairs.csv, images.csv and
    exclusions.csv to --out, and prints the per-model table. Definitions:
    docs/human-stats.md.
    """
    from analysis.exclusions import ExclusionRules
    from analysis.human import analyse, format_table
    from analysis.responses import load, load_images

    rules = ExclusionRules.from_study_config(config_file) if config_file else ExclusionRules()
    rules = rules.with_overrides(
        max_attention_failures=max_attention_failures,
        min_median_rt_ms=min_median_rt_ms,
        max_invalid_fraction=max_invalid_fraction,
        exclude_incomplete=False if keep_incomplete else None,
        exclude_repeated_ids=False if keep_repeated_ids else None,
        exclude_invalid_trials=False if keep_invalid_trials else None,
    )
    trials = load(source)
    images = load_images(source) if "://" not in source else None
    result = analyse(
        trials,
        rules,
        images=images,
        resamples=resamples,
        seed=seed,
        joint=joint,
        mixed=not no_mixed,
    )
    result.write(out)
    click.echo(format_table(result))
    click.echo(f"Wrote {', '.join(OUTPUTS)} to {out}")
