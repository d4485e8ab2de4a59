"""Kernel distance (KID; Bińkowski et al. 2018), as torch-fidelity and dgm-eval compute it.

The unbiased estimate of the squared maximum mean discrepancy (MMD^2) with the
cubic polynomial kernel k(x, y) = (gamma x.y + coef0)^degree, gamma = 1/d, on
``subsets`` random pairs of subsets of ``subset_size`` real and fake samples; the
mean over subsets is the value and their standard deviation its spread.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from analysis.metrics.validation import as_feature_pair, check_positive_int, require_samples

# Sets up to this many samples get one kernel matrix over all their rows (see kd).
SHARED_KERNEL_MAX = 2048


def polynomial_kernel(
    x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> np.ndarray:
    """k(x, y) = (gamma x.y + coef0)^degree for every pair of rows; gamma defaults to 1/d."""
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD^2 from the three m x m kernel matrices (diagonals of k_xx, k_yy left out)."""
    m = k_xx.shape[0]
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kd_subsets(
    n_real: int, n_fake: int, subsets: int, subset_size: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (real rows, fake rows) of every subset pair :func:`kd` uses for this seed."""
    rng = np.random.default_rng(seed)
    return [
        (
            rng.choice(n_real, size=subset_size, replace=False),
            rng.choice(n_fake, size=subset_size, replace=False),
        )
        for _ in range(subsets)
    ]


def kd(
    real: ArrayLike,
    fake: ArrayLike,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> dict[str, float]:
    """Kernel distance: ``{"value": mean MMD^2 over subsets, "std": their std}``. Lower is better.

    Each set needs at least ``subset_size`` samples (pass a smaller ``subset_size``
    for small sets: torch-fidelity also refuses; dgm-eval silently shrinks it).
    Values slightly below 0 are valid: the estimator is unbiased.
    """
    real, fake = as_feature_pair(real, fake)
    subsets = check_positive_int(subsets, "subsets")
    subset_size = check_positive_int(subset_size, "subset_size", minimum=2)
    why = f"kd with subset_size={subset_size} (pass a smaller subset_size)"
    require_samples(real, "real", subset_size, why)
    require_samples(fake, "fake", subset_size, why)
    values = np.empty(subsets)
    drawn = kd_subsets(len(real), len(fake), subsets, subset_size, seed)
    n_r, n_f = len(real), len(fake)
    if max(n_r, n_f) <= SHARED_KERNEL_MAX and (n_r + n_f) ** 2 <= 3 * subsets * subset_size**2:
        # Small sets: every subset reuses the same rows, so one kernel matrix over all of
        # them, indexed per subset, replaces 3 x subsets products (bootstrap resamples call
        # kd hundreds of times on sets of a few hundred). Same dot products, same values up
        # to rounding.
        k_rr = polynomial_kernel(real, real, degree, gamma, coef0)
        k_rf = polynomial_kernel(real, fake, degree, gamma, coef0)
        k_ff = polynomial_kernel(fake, fake, degree, gamma, coef0)
        for i, (r, f) in enumerate(drawn):
            values[i] = mmd2_unbiased(k_rr[np.ix_(r, r)], k_rf[np.ix_(r, f)], k_ff[np.ix_(f, f)])
        return {"value": float(values.mean()), "std": float(values.std())}
    for i, (r, f) in enumerate(drawn):
        x, y = real[r], fake[f]
        values[i] = mmd2_unbiased(
            polynomial_kernel(x, x, degree, gamma, coef0),
            polynomial_kernel(x, y, degree, gamma, coef0),
            polynomial_kernel(y, y, degree, gamma, coef0),
        )
    return {"value": float(values.mean()), "std": float(values.std())}
