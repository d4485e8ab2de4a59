"""Sliced Wasserstein distance (Bonneel et al. 2015) and its Gaussian approximation
(Nadjahi et al. 2021, dgm-eval's ``sw_approx``).

SW_2 averages the squared 2-Wasserstein distance between the two sets projected on
random unit directions; in one dimension W_2 is exact from sorted samples.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import ArrayLike

from analysis.metrics.validation import as_feature_pair, check_positive_int


def wasserstein_1d_squared(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared W_2 between the empirical distributions in each column of x (n, P) and y (m, P).

    W_2^2 = integral over t in (0, 1) of (F^-1(t) - G^-1(t))^2: both quantile functions
    are step functions, so the integral is a sum over the union of their steps
    (i/n and j/m). With n == m this is the mean squared difference of sorted samples.
    """
    x, y = np.sort(x, axis=0), np.sort(y, axis=0)
    n, m = x.shape[0], y.shape[0]
    ends = np.union1d(np.arange(1, n + 1) / n, np.arange(1, m + 1) / m)
    widths = np.diff(ends, prepend=0.0)
    middles = ends - widths / 2
    ix = np.minimum((middles * n).astype(np.int64), n - 1)
    iy = np.minimum((middles * m).astype(np.int64), m - 1)
    return widths @ (x[ix] - y[iy]) ** 2


def sw(real: ArrayLike, fake: ArrayLike, projections: int = 1000, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance over ``projections`` seeded random directions. Lower is better.

    Directions are standard normal vectors made unit length (uniform on the sphere),
    drawn with ``numpy.random.default_rng(seed)``. Returns sqrt(mean of W_2^2).
    """
    real, fake = as_feature_pair(real, fake)
    projections = check_positive_int(projections, "projections")
    total = 0.0
    for directions in _directions(real.shape[1], projections, seed):
        total += wasserstein_1d_squared(real @ directions, fake @ directions).sum()
    return float(np.sqrt(total / projections))


@functools.lru_cache(maxsize=4)
def _directions(d: int, projections: int, seed: int) -> tuple[np.ndarray, ...]:
    """The random unit directions, 100 at a time (bounds memory in the products).

    Cached: drawing them costs more than the projection of small sets, and bootstrap
    resampling (`percept metrics --resamples`) calls sw hundreds of times with the same
    directions. Read-only, so no caller can change a cached one.
    """
    rng = np.random.default_rng(seed)
    chunks = []
    for start in range(0, projections, 100):
        directions = rng.standard_normal((d, min(100, projections - start)))
        directions /= np.linalg.norm(directions, axis=0)
        directions.flags.writeable = False
        chunks.append(directions)
    return tuple(chunks)


def sw_approx(real: ArrayLike, fake: ArrayLike) -> float:
    """dgm-eval's Monte Carlo free approximation of SW_2 for high dimensions. Lower is better.

    sqrt(|mu_r - mu_f|^2 / d + (sqrt(m2_r) - sqrt(m2_f))^2), with m2 the mean squared
    norm of the centred samples divided by d (Nadjahi et al. 2021, Theorem 3.1 ff.).
    """
    real, fake = as_feature_pair(real, fake)
    d = real.shape[1]
    mean_r, mean_f = real.mean(axis=0), fake.mean(axis=0)
    mean_term = np.sum((mean_r - mean_f) ** 2) / d
    m2_r = np.mean(np.sum((real - mean_r) ** 2, axis=1)) / d
    m2_f = np.mean(np.sum((fake - mean_f) ** 2, axis=1)) / d
    return float(np.sqrt(mean_term + (np.sqrt(m2_r) - np.sqrt(m2_f)) ** 2))
