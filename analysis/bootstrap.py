"""Vectorised, seeded percentile bootstrap helpers."""

from __future__ import annotations

import warnings

import numpy as np

ALPHA = 0.05


def resample_means(
    values: np.ndarray, resamples: int, rng: np.random.Generator, chunk: int = 1000
) -> np.ndarray:
    """Means of `resamples` bootstrap resamples of the rows of `values` (n,) or (n, k).

    The same resampled rows serve every column, so paired quantities stay paired; a
    missing value (e.g. a participant with no real trial left) counts only where present.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n == 0:
        return np.full((resamples, *values.shape[1:]), np.nan)
    means = []
    # Chunks bound memory at chunk * n * k values however many resamples are asked for.
    for start in range(0, resamples, chunk):
        rows = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-missing column: NaN
            means.append(np.nanmean(values[rows], axis=1))
    return np.concatenate(means)


def interval(samples: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap samples along axis 0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no samples at all: NaN interval
        low, high = np.nanquantile(samples, [alpha / 2, 1 - alpha / 2], axis=0)
    return low, high


def two_sided_p(differences: np.ndarray) -> float:
    """Bootstrap p-value for 'no difference': twice the smaller tail, with +1 smoothing."""
    d = differences[~np.isnan(differences)]
    if d.size == 0:
        return float("nan")
    tail = min((d <= 0).sum(), (d >= 0).sum())
    return float(min(1.0, 2 * (tail + 1) / (d.size + 1)))


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p)
    m = p.size
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def wilson(successes: np.ndarray, n: np.ndarray, z: float = 1.959963984540054):
    """Wilson score interval for binomial proportions (arrays)."""
    successes = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = successes / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return centre - half, centre + half
