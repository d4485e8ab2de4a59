"""Feature extraction on 1 rank against 2 torchrun ranks (CPU, gloo), on the same images.

Writes distinct PNG stimuli, then runs `percept features` three times, each with
an empty cache and in its own process: one process with T torch threads, and
`torchrun --nproc-per-node 2` with T/2 threads per rank (the same cores), and
prints the wall times (process start and model build included, as a user sees
them), the speed-up, and the largest difference between the two outputs
(bit for bit is expected: each image's row comes from the same network on the
same input). On a GPU node the same comparison is 1 GPU against 2.

    .venv/bin/python benchmarks/ranks.py [--encoder random:dinov2-vits14] [--images 128]
        [--size 64] [--threads 2] [--repeat 3]
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

from analysis.features import load_features

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from features import make_images  # noqa: E402  (the same stimuli as benchmarks/features.py)


def run(command: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="random:dinov2-vits14")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{args.encoder}, {args.images} images of {args.size} px, batch {args.batch_size}, "
        f"{args.threads} threads in all; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "images").mkdir()
        make_images(tmp / "images", args.images, args.size)
        common = ["features", "--encoder", args.encoder, str(tmp / "images"), "--workers", "0"]
        common += ["--batch-size", str(args.batch_size)]
        single_s, double_s = [], []
        for attempt in range(args.repeat):
            one = [sys.executable, "-m", "percept", *common, "--out", str(tmp / "one.npz")]
            one += ["--cache-dir", str(tmp / f"cache-one-{attempt}")]
            two = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
            two += ["--nproc-per-node", "2", "-m", "percept", *common]
            two += ["--out", str(tmp / "two.npz"), "--cache-dir", str(tmp / f"cache-two-{attempt}")]
            single_s.append(run(one, args.threads))
            double_s.append(run(two, max(1, args.threads // 2)))
        a = load_features(tmp / "one.npz").features
        b = load_features(tmp / "two.npz").features
    single, double = statistics.median(single_s), statistics.median(double_s)
    difference = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")
    print(f"1 rank : {single:6.1f} s  (runs: {', '.join(f'{s:.1f}' for s in single_s)})")
    print(f"2 ranks: {double:6.1f} s  (runs: {', '.join(f'{s:.1f}' for s in double_s)})")
    print(
        f"speed-up {single / double:.2f}x; max |difference| {difference:.1e}"
        f"{' (bit for bit)' if difference == 0 else ''}; load {os.getloadavg()[0]:.1f} at end"
    )


if __name__ == "__main__":
    main()
