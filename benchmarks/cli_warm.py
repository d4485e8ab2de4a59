"""`percept features` from the command line: a cold run against a fully cached (warm) re-run.

Makes distinct PNG images in a temporary folder, runs the CLI in a fresh
process once with an empty cache (cold: start, imports, network, extraction,
cache writes) and then several times more on the same images (warm: every row
cached, so the command neither imports torch nor builds the network; see
analysis/warm.py). Prints the cold time, the median warm time and their
ratio (goal >= 50x), and checks that the warm output file equals the cold one.

    .venv/bin/python benchmarks/cli_warm.py [--encoder random:inception] [--images 256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(folder: Path, n: int, side: int) -> None:
    """Distinct noisy colour fields as PNG files."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        base = rng.integers(0, 256, (1, 1, 3))
        noise = rng.normal(0, 30, (side, side, 3))
        rgb = np.clip(base + noise, 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"{i:05d}.png")


def run(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "percept", *args],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="random:inception")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=64, help="side of the images in px")
    parser.add_argument("--repeats", type=int, default=5, help="warm runs (the median counts)")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_images(tmp / "images", args.images, args.size)
        env = {**os.environ, "PERCEPT_CACHE_DIR": str(tmp / "cache")}
        command = ["features", "--encoder", args.encoder, str(tmp / "images")]
        if args.workers is not None:
            command += ["--workers", str(args.workers)]
        cold = run([*command, "--out", str(tmp / "cold.npz")], env)
        warm = [run([*command, "--out", str(tmp / "warm.npz")], env) for _ in range(args.repeats)]
        same = (tmp / "cold.npz").read_bytes() == (tmp / "warm.npz").read_bytes()
    median = statistics.median(warm)
    print(f"encoder {args.encoder}, {args.images} images of {args.size}x{args.size} px")
    print(f"cold CLI run (empty cache):      {cold:8.3f} s")
    print(f"warm CLI run (median of {args.repeats}):     {median:8.3f} s")
    print(f"warm/cold speed-up:              {cold / median:8.1f}x (goal >= 50x)")
    print(f"warm output equals cold output:  {same}")
    if not same:
        sys.exit("the warm run wrote a different file")


if __name__ == "__main__":
    main()
