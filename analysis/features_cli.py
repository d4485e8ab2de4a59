"""`percept features`: image features from one encoder, written to an .npz file (cached)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from analysis.cli_options import extraction_options, weights_options
from percept.errors import PerceptError


@click.command("features")
@click.option(
    "--encoder",
    "encoder_name",
    metavar="NAME",
    help="inception, inception-clean, dinov2-vits14/-vitb14/-vitl14/-vitg14, clip-vitl14, "
    "clip-vitl14-336, convnext-large, data2vec-vitl16, mae-vitl16, swav-rn50, simclr-rn50, "
    "pixel, or random:NAME for a randomly initialised network (see docs/encoders.md).",
)
@weights_options
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The .npz file to write (features, sha256, path, meta; see docs/encoders.md).",
)
@extraction_options
@click.option(
    "--cache-stats",
    is_flag=True,
    help="Instead of extracting, list the cache: per encoder and weights, images, chunks, size.",
)
@click.option(
    "--cache-prune",
    is_flag=True,
    help="Instead of extracting, tidy the cache: remove untrusted chunks, stale temporary "
    "files and duplicated rows, merge small chunks (docs/encoders.md).",
)
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
    cache_stats: bool,
    cache_prune: bool,
) -> None:
    """Features of IMAGES (files, folders or stimulus folders) from one encoder.

    A stimulus folder gives its images in manifest order. Features already in
    the cache (same encoder, weights, preprocessing and image content) are not
    computed again. Under torchrun (`torchrun --nproc-per-node G -m percept
    features ...`) each process extracts its share on its own device and rank 0
    writes --out (docs/encoders.md).
    """
    # Nothing here imports torch until a feature must be computed (analysis.warm).
    from analysis.feature_cache import cache_root, collect_images, save_features

    if cache_stats or cache_prune:
        if no_cache:
            raise PerceptError("--cache-stats and --cache-prune need the cache; drop --no-cache")
        if encoder_name or images or out:
            raise PerceptError(
                "--cache-stats and --cache-prune take only --cache-dir; "
                "run them without --encoder, IMAGES and --out"
            )
        show_cache(cache_root(cache_dir), prune=cache_prune)
        return
    if not encoder_name or not images or out is None:
        missing = [
            what
            for what, given in (("--encoder", encoder_name), ("IMAGES", images), ("--out", out))
            if not given
        ]
        raise PerceptError(f"give {' and '.join(missing)} (see percept features --help)")
    if out.suffix != ".npz":
        raise PerceptError(f"--out {out}: the output is an .npz file; name it e.g. features.npz")
    cache = False if no_cache else cache_dir
    root = cache_root(cache)
    if root is not None and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        from analysis import warm

        record = warm.lookup(root, encoder_name, weights)
        if record is not None:
            paths, shas = collect_images(images)
            result = warm.cached_features(root, record, paths, shas)
            if result is not None:
                click.echo(record["describe"], err=True)
                save_features(result, out)
                _summary(out, result, random=encoder_name.startswith("random:"))
                return

    from analysis.distributed import compute_on_ranks
    from analysis.encoders import resolve
    from analysis.features import cache_key

    encoder = resolve(encoder_name, weights=weights, allow_download=allow_download, memo_dir=root)
    click.echo(encoder.describe(), err=True)
    paths, shas = collect_images(images)
    result = compute_on_ranks(
        encoder,
        paths,
        sha256s=shas,
        batch_size=batch_size,
        workers=workers,
        device=device,
        cache_dir=cache,
        progress=True,
    )
    if result is None:
        return  # a torchrun rank other than 0: its rows are in the cache, rank 0 writes --out
    save_features(result, out)
    _summary(out, result, random=encoder.random)
    if root is not None:
        from analysis import warm

        given = [weights] if weights is not None else []
        expected = [warm.weights_dir() / f for f in encoder.spec.weight_files]
        warm.remember(
            root,
            encoder_name,
            weights,
            cache_key(encoder),
            pretrained=encoder.pretrained,
            describe=encoder.describe(),
            weight_candidates=given or ([] if encoder.random else expected),
        )


def _summary(out: Path, result, *, random: bool) -> None:
    dims = ", ".join(f"{k} {v.shape[1]}" for k, v in result.outputs.items())
    click.echo(
        f"{out}: {len(result.paths)} images x ({dims}) from {result.encoder} "
        f"({result.computed} computed{_per_rank(result.computed_per_rank)}, "
        f"{result.cached} from the cache)"
    )
    if random:
        click.echo(
            f"note: {result.encoder} is randomly initialised, not pretrained; "
            "do not judge models by these features",
            err=True,
        )


def _per_rank(counts: list[int] | None) -> str:
    if counts is None:
        return ""
    return f" on {len(counts)} ranks: {', '.join(map(str, counts))}"


def show_cache(root: Path, *, prune: bool) -> None:
    """Print what the cache under `root` holds, after pruning it when asked."""
    from analysis.feature_cache import cache_stats, prune_cache

    if not root.is_dir():
        raise PerceptError(
            f"{root}: no feature cache there (give --cache-dir or $PERCEPT_CACHE_DIR)"
        )
    if prune:
        r = prune_cache(root)
        click.echo(
            f"{root}: pruned {r.untrusted_chunks} untrusted chunks, {r.stale_temporaries} stale "
            f"temporary files, {r.duplicate_rows} duplicated rows ({r.merged_chunks} chunks "
            f"merged), {r.empty_folders} empty folders; {_size(r.bytes_before)} -> "
            f"{_size(r.bytes_after)}"
        )
    folders = cache_stats(root)
    for f in folders:
        click.echo(
            f"{f.encoder}\t{f.weights[:40]}\tpreprocess {f.preprocess}\t{f.entries} images\t"
            f"{f.chunks} chunks\t{_size(f.bytes)}\t{f.path.name}"
        )
    total = sum(f.bytes for f in folders)
    click.echo(
        f"{root}: {sum(f.entries for f in folders)} cached images over {len(folders)} "
        f"encoder settings ({len({f.encoder for f in folders})} encoders), {_size(total)}"
    )


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
