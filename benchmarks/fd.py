"""Fréchet distance: our symmetric-eigenvalue route against the ``scipy.linalg.sqrtm`` route.

Makes two sets of correlated Gaussian features (10,000 x 2,048 each by default, the
size of an Inception FID evaluation) and computes FD twice in this process: with
``analysis.metrics.fd`` and with the formula of pytorch-fid, clean-fid and dgm-eval
(``np.cov``, then ``sqrtm`` of the product of the covariances). Prints, for each,
the time from the features (means and covariances included) and the time from the
statistics (both routes given the same means and covariances), each the best of
``--repeat`` alternating runs, the speed-ups and the relative difference of the
two values.

    .venv/bin/python benchmarks/fd.py [--samples 10000] [--dim 2048] [--fewer 1000] [--repeat 3]

``--fewer N`` also times both routes from the features with N fake samples (fewer
than dimensions), where the sqrtm route's covariance product is singular.
BLAS threads follow OPENBLAS_NUM_THREADS, as everywhere.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import linalg

from analysis.metrics.fd import Gaussian, fd, frechet_distance


def sqrtm_fd_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """pytorch-fid's ``calculate_frechet_distance`` (the baseline)."""
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():  # pytorch-fid's fallback for a singular product
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=0), np.cov(x, rowvar=False)


def sqrtm_fd(real: np.ndarray, fake: np.ndarray) -> float:
    return sqrtm_fd_from_stats(*stats(real), *stats(fake))


def features(rng: np.random.Generator, n: int, d: int, shift: float) -> np.ndarray:
    mixing = rng.standard_normal((d, d)) / np.sqrt(d)
    return rng.standard_normal((n, d)) @ mixing + shift


def timed(function, *args) -> tuple[float, float]:
    start = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - start


def race(repeat: int, base: tuple, ours: tuple) -> tuple[tuple[float, float], ...]:
    """Best of ``repeat`` alternating runs of each: other load on the machine hits both alike."""
    runs = [(timed(*base), timed(*ours)) for _ in range(repeat)]
    best_base = min((r[0] for r in runs), key=lambda vt: vt[1])
    best_ours = min((r[1] for r in runs), key=lambda vt: vt[1])
    return best_base, best_ours


def report(label: str, base: tuple[float, float], ours: tuple[float, float]) -> None:
    (v_base, t_base), (v_ours, t_ours) = base, ours
    print(f"  {label}")
    print(f"    scipy.linalg.sqrtm route: {t_base:7.2f} s  FD = {v_base:.12g}  (baseline)")
    print(f"    analysis.metrics.fd     : {t_ours:7.2f} s  FD = {v_ours:.12g}")
    difference = abs(v_ours - v_base) / abs(v_base)
    print(f"    speed-up: {t_base / t_ours:.1f}x; relative difference: {difference:.2e}")


def compare(real: np.ndarray, fake: np.ndarray, from_stats: bool, repeat: int) -> None:
    print(f"FD of {len(real)} real vs {len(fake)} fake samples, d = {real.shape[1]}")
    print(f"  (best of {repeat} alternating runs each)")
    report("from the features:", *race(repeat, (sqrtm_fd, real, fake), (fd, real, fake)))
    if from_stats:
        s_real, s_fake = stats(real), stats(fake)
        g_real, g_fake = Gaussian.fit(real), Gaussian.fit(fake)
        _ = g_real.cov, g_fake.cov  # computed now and cached, like the baseline's statistics
        report(
            "from the statistics (means and covariances given):",
            *race(
                repeat,
                (sqrtm_fd_from_stats, *s_real, *s_fake),
                (frechet_distance, g_real, g_fake),
            ),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--fewer", type=int, default=0, help="also time N < d fake samples")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best counts")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    warm = rng.standard_normal((50, 8))
    fd(warm, warm + 1), sqrtm_fd(warm, warm + 1)  # load LAPACK and start BLAS threads first
    real = features(rng, args.samples, args.dim, 0.0)
    fake = features(rng, args.samples, args.dim, 0.05)
    compare(real, fake, from_stats=True, repeat=args.repeat)
    if args.fewer:
        compare(real, fake[: args.fewer], from_stats=False, repeat=args.repeat)


if __name__ == "__main__":
    main()
