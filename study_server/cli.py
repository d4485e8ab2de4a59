"""The `percept` command: one click group with a sub-command per pipeline step."""

from __future__ import annotations

import os

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


def main() -> None:
    """Console-script entry point."""
    cli()
