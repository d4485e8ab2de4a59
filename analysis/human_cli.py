"""`percept human EXPORT_DIR --out DIR`: human error rates per model from a study export.

`percept human --summary FILE... [--image-summary FILE...] --out DIR` does the same
from published per-participant and per-image summaries (analysis/published.py).
"""

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
@click.argument("source", required=False)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to write.")
@click.option(
    "--summary",
    "summaries",
    multiple=True,
    metavar="[DATASET=]FILE",
    help="Published per-participant CSV instead of SOURCE (repeatable): Stein et al.'s "
    "(dataset from the file name, e.g. cifar10.csv, unless DATASET= is given) or the generic "
    "layout. See docs/published-data.md.",
)
@click.option(
    "--image-summary",
    "image_summaries",
    multiple=True,
    metavar="[DATASET=]FILE",
    help="Published per-image CSV (Stein et al.'s *_labeled_data.csv; repeatable): writes "
    "images.csv.",
)
@click.option(
    "--study",
    "slug",
    help="Analyse only this study (its slug); required when SOURCE holds several.",
)
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
    source: str | None,
    out: Path,
    summaries: tuple[str, ...],
    image_summaries: tuple[str, ...],
    slug: str | None,
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
    docs/human-stats.md. Instead of SOURCE, --summary and --image-summary take
    published summaries of earlier studies (docs/published-data.md).
    """
    from percept.errors import PerceptError

    if summaries or image_summaries:
        if source:
            raise PerceptError(
                "give either SOURCE (an export or database URL) or published summaries "
                "(--summary/--image-summary), not both"
            )
        # Options that act on trial-level data: silently ignoring them would mislead.
        trial_only = {
            "--study": slug is not None,
            "--config": config_file is not None,
            "--max-attention-failures": max_attention_failures is not None,
            "--min-median-rt": min_median_rt_ms is not None,
            "--max-invalid-fraction": max_invalid_fraction is not None,
            "--keep-incomplete": keep_incomplete,
            "--keep-repeated-ids": keep_repeated_ids,
            "--keep-invalid-trials": keep_invalid_trials,
            "--joint": joint,
        }
        given = [name for name, used in trial_only.items() if used]
        if given:
            raise PerceptError(
                f"{', '.join(given)}: not available with published summaries (needs "
                "trial-level data); see docs/published-data.md"
            )
        from analysis.published import SummaryFile, format_result
        from analysis.published import analyse as analyse_published

        result = analyse_published(
            [SummaryFile.parse(s) for s in summaries],
            [SummaryFile.parse(s) for s in image_summaries],
            resamples=resamples,
            seed=seed,
        )
        result.write(out)
        click.echo(format_result(result))
        click.echo(f"Wrote {', '.join(result.outputs())} to {out}")
        return
    if not source:
        raise PerceptError(
            "give SOURCE (an export folder or database URL), or published summaries with "
            "--summary/--image-summary"
        )

    import tempfile

    from analysis.exclusions import ExclusionRules
    from analysis.human import analyse, format_table
    from analysis.responses import export_database, load, load_images, one_study

    rules = ExclusionRules.from_study_config(config_file) if config_file else ExclusionRules()
    rules = rules.with_overrides(
        max_attention_failures=max_attention_failures,
        min_median_rt_ms=min_median_rt_ms,
        max_invalid_fraction=max_invalid_fraction,
        exclude_incomplete=False if keep_incomplete else None,
        exclude_repeated_ids=False if keep_repeated_ids else None,
        exclude_invalid_trials=False if keep_invalid_trials else None,
    )
    if "://" in source:
        # A database: export it (this study only) into a temporary folder, then as below.
        with tempfile.TemporaryDirectory() as tmp:
            export_database(source, Path(tmp), slug=slug)
            trials, images = load(tmp), load_images(tmp)
    else:
        trials, images = load(source), load_images(source)
    trials, images = one_study(trials, images, slug, source)
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
