"""Are an encoder's features Gaussian? Mardia's tests on the top principal components.

Every Fréchet distance assumes the features of a set are Gaussian; Betzalel et al.
2022 test that assumption for Inception and CLIP features. `diagnose` projects one
set's features on its top `components` principal components and computes Mardia's
(1970) multivariate skewness b1 and kurtosis b2 there:

    z_i = S^(-1/2) (y_i - mean)   (S with divisor n)
    b1 = (1/n^2) sum_ij (z_i . z_j)^3      b2 = (1/n) sum_i |z_i|^4

Under normality n b1 / 6 is chi-squared with k(k+1)(k+2)/6 degrees of freedom and
(b2 - k(k+2)) / sqrt(8 k (k+2) / n) standard normal (k components). Why this and not
Anderson-Darling on random directions: a random 1-D projection of almost any
high-dimensional set looks Gaussian (Diaconis & Freedman 1984), so random directions
miss exactly what matters for FD; the top principal components carry most of the
covariance FD compares, and Mardia's statistics are joint over them. Why not all d
dimensions: b1 needs n > k and its power falls as k grows; 10 components keep the test
well defined from 12 samples up. docs/metrics.md has the details.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from analysis.metrics.validation import as_features

COMPONENTS = 10
MAX_SAMPLES = 5000  # b1 costs n^2 k: larger sets are subsampled (with the seed)
COLUMNS = (
    "dataset",
    "source",
    "model",
    "encoder",
    "encoder_pretrained",
    "n",
    "d",
    "components",
    "explained",
    "skewness",
    "skewness_statistic",
    "skewness_p",
    "kurtosis",
    "kurtosis_ratio",
    "kurtosis_z",
    "kurtosis_p",
)


def mardia(y: ArrayLike) -> dict[str, float]:
    """Mardia's skewness and kurtosis of the rows of `y` (n, k), with their p-values.

    `kurtosis_ratio` is b2 / (k (k + 2)): 1 for a Gaussian. Raises ValueError for
    fewer than k + 2 rows or a singular covariance.
    """
    from scipy import stats

    y = as_features(y, "features")
    n, k = y.shape
    if n < k + 2:
        raise ValueError(f"Mardia's test needs more than {k + 1} samples, got {n}")
    centred = y - y.mean(axis=0)
    cov = centred.T @ centred / n
    eigenvalues, vectors = np.linalg.eigh(cov)
    if eigenvalues.min() <= k * np.finfo(np.float64).eps * max(eigenvalues.max(), 0.0):
        raise ValueError("Mardia's test: the covariance is singular (a constant direction)")
    z = centred @ (vectors / np.sqrt(eigenvalues))  # whitened: z_i . z_j = y_i S^-1 y_j
    b1 = 0.0
    for start in range(0, n, 1024):  # n x n Gram matrix in blocks: bounded memory
        b1 += float(((z[start : start + 1024] @ z.T) ** 3).sum())
    b1 /= n * n
    b2 = float(np.mean(np.einsum("ij,ij->i", z, z) ** 2))
    dof = k * (k + 1) * (k + 2) / 6
    skew_stat = n * b1 / 6
    kurt_z = (b2 - k * (k + 2)) / np.sqrt(8 * k * (k + 2) / n)
    return {
        "skewness": b1,
        "skewness_statistic": float(skew_stat),
        "skewness_p": float(stats.chi2.sf(skew_stat, dof)),
        "kurtosis": b2,
        "kurtosis_ratio": b2 / (k * (k + 2)),
        "kurtosis_z": float(kurt_z),
        "kurtosis_p": float(2 * stats.norm.sf(abs(kurt_z))),
    }


def diagnose(
    features: ArrayLike,
    *,
    components: int = COMPONENTS,
    max_samples: int = MAX_SAMPLES,
    seed: int = 0,
) -> dict[str, float | int]:
    """Mardia's tests on the top `components` principal components of one feature set.

    At most `max_samples` rows are used, drawn without replacement with `seed`. Fewer
    components are used when the set has fewer than components + 2 samples or a lower
    rank (`components` in the result says how many; 0: no test, NaN statistics).
    `explained` is the share of the total variance those components carry.
    """
    x = as_features(features, "features")
    n, d = x.shape
    if n > max_samples:
        x = x[np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))]
    centred = x - x.mean(axis=0)
    # PCA by SVD of the centred data: no d x d covariance for wide sets.
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    total = float(variance.sum())
    rank = (
        int((variance > variance.size * np.finfo(np.float64).eps * variance.max()).sum())
        if total
        else 0
    )
    k = max(0, min(components, rank, len(x) - 2))
    result: dict[str, float | int] = {
        "n": len(x),
        "d": d,
        "components": k,
        "explained": float(variance[:k].sum() / total) if total else float("nan"),
    }
    if k == 0:
        nan = float("nan")
        keys = ("skewness", "skewness_statistic", "skewness_p", "kurtosis")
        return {
            **result,
            **dict.fromkeys((*keys, "kurtosis_ratio", "kurtosis_z", "kurtosis_p"), nan),
        }
    return {**result, **mardia(centred @ vt[:k].T)}
