"""Ingest throughput: images per second on all cores, and the ratio to one worker.

Makes 2,000 distinct 256x256 JPEG files (real photographs' format) in a
temporary folder, then ingests them to 128 px stimuli twice in this process:
once with one worker (the baseline) and once with every core.

    .venv/bin/python benchmarks/ingest.py [--images 2000] [--size 128]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from stimuli import ingest


def make_inputs(root: Path, n: int, side: int = 256) -> tuple[Path, Path]:
    """Half real, half one model's images: smooth random fields with noise, all different."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side] / side
    for i in range(n):
        folder = root / ("real" if i % 2 == 0 else "model")
        folder.mkdir(exist_ok=True)
        f = rng.uniform(2, 12, 3)
        p = rng.uniform(0, 6.3, 3)
        rgb = np.stack([np.sin(f[c] * (x + y * (c + 1)) + p[c]) for c in range(3)], axis=2)
        rgb = 127 + 100 * rgb + rng.normal(0, 10, rgb.shape)
        img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
        img.save(folder / f"{i:05d}.jpg", quality=92)
    return root / "real", root / "model"


def timed_ingest(real: Path, model: Path, out: Path, size: int, workers: int) -> float:
    start = time.perf_counter()
    ingest(real, {"model": model}, out, size=size, workers=workers)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        real, model = make_inputs(root, args.images)
        one = timed_ingest(real, model, root / "out1", args.size, workers=1)
        many = timed_ingest(real, model, root / "outn", args.size, workers=cores)
        same = all(
            (root / "out1" / p.relative_to(root / "outn")).read_bytes() == p.read_bytes()
            for p in (root / "outn").rglob("*")
            if p.is_file()
        )
    n = args.images
    print(f"ingest of {n} 256x256 JPEGs to {args.size} px PNG stimuli")
    print(f"  1 worker : {one:6.2f} s  {n / one:7.1f} images/s  (baseline)")
    print(f"  {cores} workers: {many:6.2f} s  {n / many:7.1f} images/s")
    print(f"  speed-up with {cores} workers: {one / many:.2f}x; outputs identical: {same}")


if __name__ == "__main__":
    main()
