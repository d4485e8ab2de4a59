"""Feature extraction throughput: end to end against the bare network, and a cached re-run.

Makes distinct PNG stimuli in a temporary folder, then, with one encoder and
one batch size:

1. bare forward: the network alone on ready input tensors (images/s);
2. end to end: `analysis.features.compute` on the files with an empty cache:
   hashing, decoding and preprocessing in DataLoader workers, the network,
   and writing the cache (images/s, and its ratio to 1; goal >= 0.9);
3. cached re-run: the same call again, every row from the cache, files
   hashed again (speed-up over 2; goal >= 50x).

The network is built before the timings (its construction is not
throughput), and the bare rate is the mean of one measurement before and one
after the others. Random weights: speed does not depend on the values.

    .venv/bin/python benchmarks/features.py [--encoder random:inception] [--images 256]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from analysis.encoders import resolve
from analysis.features import compute, default_device, default_workers


def make_images(folder: Path, n: int, side: int) -> list[Path]:
    """Smooth random colour fields with noise, all different, as PNG files."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side] / side
    paths = []
    for i in range(n):
        f, p = rng.uniform(2, 12, 3), rng.uniform(0, 6.3, 3)
        rgb = np.stack([np.sin(f[c] * (x + y * (c + 1)) + p[c]) for c in range(3)], axis=2)
        rgb = 127 + 100 * rgb + rng.normal(0, 10, rgb.shape)
        path = folder / f"{i:05d}.png"
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="random:inception")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=64, help="side of the stimuli in px")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    device = default_device()
    workers = default_workers() if args.workers is None else args.workers
    encoder = resolve(args.encoder)
    module = encoder.module().to(device)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.images, args.size)
        batch = torch.stack(
            [encoder.spec.preprocess(Image.open(p)) for p in paths[: args.batch_size]]
        )
        batch = batch.to(device)
        n_batches = -(-args.images // args.batch_size)

        def bare_rate() -> float:
            with torch.inference_mode():
                start = time.perf_counter()
                for _ in range(n_batches):
                    encoder.spec.forward(module, batch)["features"].cpu()
                return n_batches * args.batch_size / (time.perf_counter() - start)

        with torch.inference_mode():
            encoder.spec.forward(module, batch)  # warm-up: kernels, caches, allocator
        before = bare_rate()
        cache = Path(tmp) / "cache"
        options = dict(batch_size=args.batch_size, workers=workers, device=device, cache_dir=cache)
        start = time.perf_counter()
        first = compute(encoder, paths, **options)
        end_to_end = time.perf_counter() - start
        start = time.perf_counter()
        again = compute(encoder, paths, **options)
        cached = time.perf_counter() - start
        # The bare rate is measured before and after, so that a change in the
        # machine's load (other processes) during the run shows and averages out.
        after = bare_rate()
    assert first.computed == args.images and again.cached == args.images
    assert np.array_equal(first.features, again.features)
    e2e_rate = args.images / end_to_end
    print(
        f"encoder {encoder.name}, {args.images} images of {args.size} px, batch {args.batch_size}, "
        f"{workers} workers, device {device}, {torch.get_num_threads()} torch threads"
    )
    bare = (before + after) / 2
    print(f"bare forward:    {bare:8.1f} images/s  (before {before:.1f}, after {after:.1f})")
    print(f"end to end:      {e2e_rate:8.1f} images/s  ratio {e2e_rate / bare:.2f} (goal >= 0.9)")
    print(
        f"cached re-run:   {args.images / cached:8.1f} images/s  "
        f"speed-up {end_to_end / cached:.0f}x (goal >= 50x)"
    )


if __name__ == "__main__":
    main()
