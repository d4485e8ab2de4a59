"""`percept stimuli ...`: ingest, audit and demo stimulus folders."""

from __future__ import annotations

from pathlib import Path

import click

from percept.errors import PerceptError
from stimuli.images import MAX_PIXELS
from stimuli.manifest import summary_table


def _parse_model(value: str) -> tuple[str, Path]:
    name, sep, folder = value.partition("=")
    if not sep or not name or not folder:
        raise PerceptError(
            f"--model {value!r}: write it as NAME=DIR, e.g. --model stylegan2=images/sg2"
        )
    return name, Path(folder)


@click.group()
def stimuli() -> None:
    """Build and check stimulus folders (images + manifest.csv)."""


@stimuli.command()
@click.option(
    "--real",
    "real",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder of real images (searched recursively).",
)
@click.option(
    "--model",
    "models",
    required=True,
    multiple=True,
    metavar="NAME=DIR",
    help="A generative model's name and its folder of images; repeat per model.",
)
@click.option(
    "--dataset",
    default="default",
    show_default=True,
    help="Dataset name; ingest again with another name to add a dataset to the same folder.",
)
@click.option(
    "--size",
    type=click.IntRange(min=8),
    default=None,
    help="Side of the square stimuli in px [default: smallest side of the real images].",
)
@click.option(
    "--practice",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Real images, and fake images, set aside per dataset for practice trials.",
)
@click.option(
    "--catch",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Catch images (unmistakably fake) made per dataset for attention checks.",
)
@click.option(
    "--skip-bad", is_flag=True, help="Leave out unreadable files and list them in skipped.csv."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes to use [default: all cores].",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=MAX_PIXELS,
    show_default=True,
    help="Refuse images with more pixels than this (decompression bombs).",
)
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Stimulus folder to write."
)
def ingest(
    real, models, dataset, size, practice, catch, skip_bad, workers, max_pixels, out
) -> None:
    """Turn a real folder and one folder per model into a leak-proof stimulus folder."""
    from stimuli.build import ingest as run_ingest

    report = run_ingest(
        real,
        [_parse_model(m) for m in models],
        out,
        dataset=dataset,
        size=size,
        practice=practice,
        catch=catch,
        skip_bad=skip_bad,
        workers=workers,
        max_pixels=max_pixels,
        progress=True,
    )
    click.echo(summary_table(report.rows))
    if report.duplicates:
        click.echo(
            f"{len(report.duplicates)} exact duplicate(s) kept once; see {out / 'duplicates.csv'}"
        )
    if report.skipped:
        click.echo(f"{len(report.skipped)} bad file(s) skipped; see {out / 'skipped.csv'}")
    click.echo(f"wrote {out / 'manifest.csv'}")


@stimuli.command()
@click.argument("stimdir", type=click.Path(path_type=Path))
def audit(stimdir: Path) -> None:
    """Check that nothing but pixels tells real from fake, or one model from another."""
    from stimuli.leaks import audit as run_audit

    problems = run_audit(stimdir)
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        raise PerceptError(f"{stimdir}: audit found {len(problems)} problem(s), listed above")
    click.echo(f"{stimdir}: audit passed")


@stimuli.command()
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Stimulus folder to write."
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of every random choice.",
)
@click.option(
    "--size",
    type=click.IntRange(min=32, max=128),
    default=64,
    show_default=True,
    help="Side of the demo stimuli in px.",
)
def demo(out: Path, seed: int, size: int) -> None:
    """Make a demo stimulus folder with planted realism, from images shipped with scikit-image."""
    from stimuli.demo import make_demo

    report = make_demo(out, seed=seed, size=size, progress=True)
    click.echo(summary_table(report.rows))
    click.echo(f"wrote {out / 'manifest.csv'} and {out / 'ground_truth.csv'}")
