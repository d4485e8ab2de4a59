"""`percept heatmaps`: Grad-CAM maps of FD for some generated images, as PNG overlays.

Features of the real and the generated images come from `analysis.features`
(cached); the maps from `analysis.heatmaps` (docs/metrics.md, "FD heatmaps").
"""

from __future__ import annotations

from pathlib import Path

import click

from analysis.cli_options import extraction_options, weights_options
from percept.errors import PerceptError

INDEX = "heatmaps.csv"
COLUMNS = (
    "image",
    "sha256",
    "overlay",
    "encoder",
    "encoder_pretrained",
    "fd",
    "fd_without_image",
    "fd_contribution",
    "input_gradient_norm",
)


@click.command("heatmaps")
@click.option(
    "--encoder",
    "encoder_name",
    required=True,
    metavar="NAME",
    help="inception, inception-clean, dinov2-vits14/-vitb14/-vitl14/-vitg14 or clip-vitl14, "
    "or random:NAME for a randomly initialised network.",
)
@weights_options
@click.option(
    "--real",
    required=True,
    type=click.Path(path_type=Path),
    help="The real images (a folder or a stimulus folder): FD's fixed reference statistics.",
)
@click.option(
    "--images",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="The generated images (repeatable; folders or files): FD is taken against all of "
    "them, and maps are drawn for the first --limit, in order.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Folder for one overlay PNG per image and {INDEX}.",
)
@click.option(
    "--limit",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Draw maps for at most this many images.",
)
@extraction_options
def heatmaps(
    encoder_name: str,
    weights: Path | None,
    allow_download: bool,
    real: Path,
    images: tuple[Path, ...],
    out: Path,
    limit: int,
    batch_size: int,
    workers: int | None,
    device: str,
    cache_dir: Path | None,
    no_cache: bool,
) -> None:
    """Which regions of generated images drive FD: Grad-CAM of FD w.r.t. each image.

    FD is that of the real images against all --images; for each of the first
    --limit images, its map shows where the encoder's layer (docs/metrics.md)
    carries the gradient of FD. Writes OUT/NNN_<name>.png (the image with the
    map blended in viridis: yellow drives FD most) and OUT/heatmaps.csv.
    """
    from analysis.encoders import resolve
    from analysis.feature_cache import cache_root, collect_images
    from analysis.features import compute
    from analysis.heatmaps import fd_gradcam, save_overlay, target_for
    from stimuli.images import load_rgb
    from stimuli.manifest import write_csv

    target = target_for(encoder_name)  # before any work: unsupported encoders fail at once
    real_paths, real_shas = collect_images([real])
    paths, shas = collect_images(images)
    if len(real_paths) < 2:
        raise PerceptError(f"--real {real}: {len(real_paths)} image; FD needs at least 2")
    if len(paths) < 3:
        raise PerceptError(
            f"--images: {len(paths)} images; FD without one of them needs at least 3"
        )
    cache = False if no_cache else cache_dir
    encoder = resolve(
        encoder_name, weights=weights, allow_download=allow_download, memo_dir=cache_root(cache)
    )
    click.echo(encoder.describe(), err=True)
    options = dict(batch_size=batch_size, workers=workers, device=device, cache_dir=cache)
    real_features = compute(encoder, real_paths, sha256s=real_shas, progress=True, **options)
    generated = compute(encoder, paths, sha256s=shas, progress=True, **options)

    chosen = list(range(min(limit, len(paths))))
    pictures = [load_rgb(paths[i]) for i in chosen]
    click.echo(f"{encoder.name}: FD heatmaps at {target.where}", err=True)
    try:
        result = fd_gradcam(
            encoder,
            pictures,
            real_features.features,
            generated.features,
            chosen,
            device=device,
            target=target,
            progress=True,
        )
    except ValueError as e:  # features that are not finite numbers, and the like
        raise PerceptError(f"encoder {encoder.name}: {e}") from None

    out.mkdir(parents=True, exist_ok=True)
    pretrained = "false" if encoder.random else "true"
    rows = []
    for j, i in enumerate(chosen):
        name = f"{i:03d}_{Path(paths[i]).stem}.png"
        save_overlay(pictures[j], result.maps[j], out / name)
        rows.append(
            {
                "image": paths[i],
                "sha256": shas[i],
                "overlay": name,
                "encoder": encoder.name,
                "encoder_pretrained": pretrained,
                "fd": repr(float(result.fd_with[j])),
                "fd_without_image": repr(float(result.fd_without[j])),
                "fd_contribution": repr(float(result.fd_contribution[j])),
                "input_gradient_norm": repr(float(result.gradient_norm[j])),
            }
        )
    write_csv(out / INDEX, COLUMNS, rows)
    click.echo(
        f"{out}: {len(rows)} overlays and {INDEX} ({encoder.name}; FD against "
        f"{len(real_paths)} real and {len(paths)} generated images)"
    )
    if encoder.random:
        click.echo(
            f"note: {encoder.name} is randomly initialised, not pretrained; "
            "its heatmaps say nothing about the images",
            err=True,
        )
