"""`percept features`: image features from one encoder, written to an .npz file (cached)."""

from __future__ import annotations

from pathlib import Path

import click

from analysis.cli_options import extraction_options
from percept.errors import PerceptError


@click.command("features")
@click.option(
    "--encoder",
    "encoder_name",
    required=True,
    metavar="NAME",
    help="inception, inception-clean, dinov2-vits14/-vitb14/-vitl14/-vitg14, clip-vitl14, "
    "clip-vitl14-336, convnext-large, data2vec-vitl16, mae-vitl16, swav-rn50, simclr-rn50, "
    "pixel, or random:NAME for a randomly initialised network (see docs/encoders.md).",
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The encoder's weight file [default: its expected name in $PERCEPT_WEIGHTS_DIR, "
    "else ~/.cache/percept/weights].",
)
@click.option(
    "--allow-download",
    is_flag=True,
    help="Download the published weight file into the weights folder when it is missing.",
)
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The .npz file to write (features, sha256, path, meta; see docs/encoders.md).",
)
@extraction_options
def features(
    encoder_name: str,
    weights: Path | None,
    allow_download: bool,
    images: tuple[Path, ...],
    out: Path,
    batch_size: int,
    workers: int | None,
    device: str,
    cache_dir: Path | None,
    no_cache: bool,
) -> None:
    """Features of IMAGES (files, folders or stimulus folders) from one encoder.

    A stimulus folder gives its images in manifest order. Features already in
    the cache (same encoder, weights, preprocessing and image content) are not
    computed again.
    """
    from analysis.encoders import resolve
    from analysis.features import cache_root, collect_images, compute, save_features

    if out.suffix != ".npz":
        raise PerceptError(f"--out {out}: the output is an .npz file; name it e.g. features.npz")
    cache = False if no_cache else cache_dir
    encoder = resolve(
        encoder_name, weights=weights, allow_download=allow_download, memo_dir=cache_root(cache)
    )
    click.echo(encoder.describe(), err=True)
    paths, shas = collect_images(images)
    result = compute(
        encoder,
        paths,
        sha256s=shas,
        batch_size=batch_size,
        workers=workers,
        device=device,
        cache_dir=cache,
        progress=True,
    )
    save_features(result, out)
    dims = ", ".join(f"{k} {v.shape[1]}" for k, v in result.outputs.items())
    click.echo(
        f"{out}: {len(paths)} images x ({dims}) from {result.encoder} "
        f"({result.computed} computed, {result.cached} from the cache)"
    )
    if encoder.random:
        click.echo(
            f"note: {result.encoder} is randomly initialised, not pretrained; "
            "do not judge models by these features",
            err=True,
        )
