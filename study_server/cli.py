"""The `percept` command: one click group with a sub-command per pipeline step."""

from __future__ import annotations

import os
from pathlib import Path

import click

from stimuli.cli import stimuli
from stimuli.errors import PerceptError


class UserError(click.ClickException):
    """Shown as one line, without a traceback; exit status 2."""

    exit_code = 2


class PerceptGroup(click.Group):
    """Turns errors a user can fix into one line and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PerceptError as e:
            raise UserError(str(e)) from None
        except OSError as e:
            # Disk full, permission denied and the like are the user's to fix too;
            # PERCEPT_DEBUG=1 shows the traceback when it is ours.
            if os.environ.get("PERCEPT_DEBUG"):
                raise
            raise UserError(f"{e.filename or ''}: {e.strerror or e}".lstrip(": ")) from None


@click.group(cls=PerceptGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="percept")
def cli() -> None:
    """percept: human realism studies of generative image models, and the metrics that agree."""


cli.add_command(stimuli)


@cli.command()
@click.option(
    "--out",
    default="demo-out",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Folder for everything the demo writes.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of every random choice.",
)
def demo(out: Path, seed: int) -> None:
    """Run the pipeline on bundled images, with no network.

    For now this builds the demo stimulus set (two datasets, five models each
    with planted realism), audits it and prints its summary; the study,
    simulated crowd, statistics and report join as they are built.
    """
    from stimuli import audit
    from stimuli.demo import make_demo
    from stimuli.manifest import summary_table

    stimdir = out / "stimuli"
    report = make_demo(stimdir, seed=seed, progress=True)
    problems = audit(stimdir)
    if problems:
        raise PerceptError(f"{stimdir}: the demo set failed its own audit: {problems[0]}")
    click.echo(f"Demo stimulus set (seed {seed}): {len(report.rows)} images in {stimdir}")
    click.echo(summary_table(report.rows))
    click.echo("Audit: passed (nothing but pixels tells real from fake)")
    click.echo(f"Planted realism of each model: {stimdir / 'ground_truth.csv'}")


def main() -> None:
    """Console-script entry point."""
    cli()
