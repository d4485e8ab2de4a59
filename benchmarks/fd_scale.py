"""FD from features: ``analysis.metrics.fd`` against torch-fidelity, from 1k to 50k samples.

With ``--sqrtm``, pytorch-fid's ``scipy.linalg.sqrtm`` route (benchmarks/fd.py) runs
in turn with the other two, and its median time over this project's is printed too.

Both start from the same float32 features (what an encoder gives) and go to the FD
value: torch-fidelity through ``fid_features_to_statistics`` (``np.cov`` in float64)
and ``fid_statistics_to_metric`` (eigenvalues of the non-symmetric product), this
project through ``fd``. For each N, the two run in turn ``--repeat`` times; the
median times, their ratio (project / torch-fidelity: <= 1 means not slower), the
relative difference of the values, and each route's peak extra memory (tracemalloc
sees numpy's allocations; the features themselves are not counted) are printed,
with the machine's load. At N <= d the project's route needs no d x d matrix.

    .venv/bin/python benchmarks/fd_scale.py [--sizes 1000 10000 40000 50000] [--dim 2048] [--sqrtm]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

from analysis.metrics.fd import fd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fd import sqrtm_fd


def torch_fidelity_fd(real: np.ndarray, fake: np.ndarray) -> float:
    stats = [fid_features_to_statistics(torch.from_numpy(x)) for x in (real, fake)]
    return fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]


def features(rng: np.random.Generator, n: int, d: int, shift: float) -> np.ndarray:
    """Correlated, non-negative float32 features, like pooled ReLU activations."""
    mixing = rng.standard_normal((d, d), dtype=np.float32) / np.float32(np.sqrt(d))
    return np.abs(rng.standard_normal((n, d), dtype=np.float32) @ mixing + np.float32(shift))


def measured(function, *args) -> tuple[float, float, int]:
    """Value, seconds and peak bytes allocated while it ran."""
    tracemalloc.start()
    start = time.perf_counter()
    value = function(*args)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return value, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 40_000, 50_000])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sqrtm", action="store_true", help="also time the sqrtm route")
    args = parser.parse_args()
    print(
        f"FD from float32 features, d = {args.dim}, median of {args.repeat} alternating runs; "
        f"{os.cpu_count()} CPUs, BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, "
        f"load {os.getloadavg()[0]:.1f} at start"
    )
    print(
        f"{'N':>7} {'torch-fidelity':>15} {'project':>9} {'ratio':>6} {'rel. diff':>10} "
        f"{'peak MB tf':>11} {'peak MB ours':>13} {'copy MB':>8}"
    )
    rng = np.random.default_rng(0)
    for n in args.sizes:
        real = features(rng, n, args.dim, 0.0)
        fake = features(rng, n, args.dim, 0.05)
        runs = [
            (
                measured(torch_fidelity_fd, real, fake),
                measured(fd, real, fake),
                measured(sqrtm_fd, real, fake) if args.sqrtm else None,
            )
            for _ in range(args.repeat)
        ]
        t_tf = statistics.median(r[0][1] for r in runs)
        t_ours = statistics.median(r[1][1] for r in runs)
        v_tf, v_ours = runs[0][0][0], runs[0][1][0]
        peak_tf = max(r[0][2] for r in runs) / 2**20
        peak_ours = max(r[1][2] for r in runs) / 2**20
        copy = n * args.dim * 8 / 2**20  # one float64 copy of one set
        print(
            f"{n:>7} {t_tf:>13.2f} s {t_ours:>7.2f} s {t_ours / t_tf:>6.2f} "
            f"{abs(v_ours - v_tf) / abs(v_tf):>10.1e} {peak_tf:>11.0f} {peak_ours:>13.0f} "
            f"{copy:>8.0f}"
        )
        if args.sqrtm:
            t_sqrtm = statistics.median(r[2][1] for r in runs)
            print(
                f"{'':>7} sqrtm route {t_sqrtm:.2f} s: {t_sqrtm / t_ours:.1f}x this project's time"
            )
    print(f"load {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
