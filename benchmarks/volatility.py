"""The cost of `percept metrics --resamples B` for FD, relative to one FD.

Each resample recomputes FD with one side drawn with replacement (B on the generated
side, B on the real side, per model). Four routes, timed on the same draws:

- plain: ``fd(real, fake[rows])``: every resample fits both Gaussians again (what the
  metric function called as is costs);
- shared: the fixed side's Gaussian and covariance factor fitted once; a resample costs
  its own covariance, one d x d product and one symmetric eigenvalue problem;
- weighted: as shared, but the resample's covariance from bootstrap weights on the
  full data, ``X.T @ (w[:, None] * X)``, instead of indexing the rows;
- projected: ``volatility.ProjectedFD`` (what `percept metrics --resamples` does for
  fd): the drawn side projected once on the fixed side's factor; a resample costs one
  weighted Gram matrix over its distinct rows (about 0.63 N) and the eigenvalues.

Prints the time of one FD and of one resample by each route (medians; one FD and the
routes run in turn, draw by draw, so that a change of machine load hits them alike), the ratio of B
resamples per side (2 B in all) to one FD, and the largest relative difference of
each route's values from the plain route's. Timing every resample of a large B takes
long: ``--timed K`` times K resamples per route and side and scales to B (said in the
output).

    .venv/bin/python benchmarks/volatility.py [--samples 10000] [--dim 2048] \
        [--resamples 100] [--timed 5]

BLAS threads follow OPENBLAS_NUM_THREADS, as everywhere.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from analysis.metrics.fd import Gaussian, fd, frechet_distance, significant
from analysis.volatility import ProjectedFD


def features(rng: np.random.Generator, n: int, d: int, shift: float) -> np.ndarray:
    mixing = rng.standard_normal((d, d)) / np.sqrt(d)
    return rng.standard_normal((n, d)) @ mixing + shift


def weighted_fd(fixed: Gaussian, x: np.ndarray, rows: np.ndarray) -> float:
    """FD of `fixed` against the resample `x[rows]`, its statistics from bootstrap weights."""
    n = len(x)
    w = np.bincount(rows, minlength=n) / n
    mean = w @ x
    cov = (x.T @ (w[:, None] * x) - np.outer(mean, mean)) * (n / (n - 1))
    f = fixed.factor
    eigenvalues = np.linalg.eigvalsh(f.T @ (cov @ f))
    trace_sqrt = float(np.sqrt(eigenvalues[significant(eigenvalues)]).sum())
    diff = fixed.mean - mean
    return float(diff @ diff + fixed.trace + np.trace(cov) - 2.0 * trace_sqrt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--resamples", type=int, default=100)
    parser.add_argument("--timed", type=int, default=5, help="resamples timed per route, side")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    n, d = args.samples, args.dim
    real, fake = features(rng, n, d, 0.0), features(rng, n, d, 0.05)
    print(
        f"FD resamples: N = {n} per set, d = {d}, B = {args.resamples} per side; "
        f"BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    full = fd(real, fake)  # warm-up; one FD is timed below, in turn with the routes
    timed = min(args.timed, args.resamples)
    draws = [rng.integers(0, n, size=n) for _ in range(timed)]
    fixed_real, fixed_fake = Gaussian.fit(real), Gaussian.fit(fake)
    _ = fixed_real.factor, fixed_fake.factor  # fitted once, outside the timed loop
    projected = (ProjectedFD(), ProjectedFD())
    routes = {
        "one FD": (lambda rows: fd(real, fake), lambda rows: fd(real, fake)),
        "plain": (lambda rows: fd(real, fake[rows]), lambda rows: fd(real[rows], fake)),
        "shared": (
            lambda rows: frechet_distance(fixed_real, Gaussian.fit(fake[rows])),
            lambda rows: frechet_distance(fixed_fake, Gaussian.fit(real[rows])),
        ),
        "weighted": (
            lambda rows: weighted_fd(fixed_real, fake, rows),
            lambda rows: weighted_fd(fixed_fake, real, rows),
        ),
        "projected": (
            lambda rows: projected[0](real, fake, rows),
            lambda rows: projected[1](fake, real, rows),
        ),
    }
    values: dict[str, list[float]] = {name: [] for name in routes}
    seconds: dict[str, list[float]] = {name: [] for name in routes}
    # The projected route's one-off preparation (about one FD), not in the per-resample time.
    start = time.perf_counter()
    projected[0](real, fake, draws[0])
    projected[1](fake, real, draws[0])
    print(f"projected route's preparation, both sides: {time.perf_counter() - start:.2f} s")
    # Round robin over the routes, draw by draw: a change of machine load hits them alike.
    for side in (0, 1):
        for rows in draws:
            for name, pair in routes.items():
                start = time.perf_counter()
                values[name].append(pair[side](rows))
                seconds[name].append(time.perf_counter() - start)
    one = float(np.median(seconds.pop("one FD")))
    print(
        f"one FD on all images: {one:.2f} s (median of {2 * timed}, timed in turn with the routes)"
    )
    for name in seconds:
        per = float(np.median(seconds[name]))
        total = per * 2 * args.resamples
        print(
            f"{name:>8}: {per:.2f} s a resample (median); 2 x {args.resamples} resamples "
            f"{total:.0f} s = {total / one:.0f} x one FD"
            + (f" (timed {timed} per side, scaled)" if timed < args.resamples else "")
        )
    base = np.array(values["plain"])
    for name in ("shared", "weighted", "projected"):
        worst = float(np.max(np.abs(np.array(values[name]) - base) / np.abs(base)))
        print(f"{name} vs plain: largest relative difference {worst:.1e}")
    print(f"(FD on all images {full:.6g})")


if __name__ == "__main__":
    main()
