"""Command-line options shared by the commands that extract features."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click


def extraction_options(command: Callable) -> Callable:
    """--batch-size, --workers, --device, --cache-dir and --no-cache, as in analysis.features."""
    for option in reversed(
        [
            click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1)),
            click.option(
                "--workers",
                type=click.IntRange(min=0),
                help="Processes that decode images "
                "[default: the cores but one, at most 8; 0: none].",
            ),
            click.option(
                "--device",
                default="auto",
                show_default=True,
                help="cpu, cuda, cuda:N, or auto (the GPU when there is one).",
            ),
            click.option(
                "--cache-dir",
                type=click.Path(file_okay=False, path_type=Path),
                help="Feature cache folder "
                "[default: $PERCEPT_CACHE_DIR, else ~/.cache/percept/features].",
            ),
            click.option(
                "--no-cache", is_flag=True, help="Neither read nor write the feature cache."
            ),
        ]
    ):
        command = option(command)
    return command


def weights_options(command: Callable) -> Callable:
    """--weights (one encoder's weight file) and --allow-download."""
    command = click.option(
        "--allow-download",
        is_flag=True,
        help="Download the published weight file into the weights folder when it is missing.",
    )(command)
    return click.option(
        "--weights",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The encoder's weight file [default: its expected name in $PERCEPT_WEIGHTS_DIR, "
        "else ~/.cache/percept/weights].",
    )(command)
