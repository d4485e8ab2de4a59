"""Fréchet distance (Heusel et al. 2017) and FD-infinity (Chong & Forsyth 2020).

FD between Gaussians fitted to two feature sets::

    FD = |mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr((S_r S_f)^(1/2))

The usual code (pytorch-fid, clean-fid, dgm-eval) takes ``scipy.linalg.sqrtm`` of the
non-symmetric product S_r S_f: a complex Schur decomposition that is slow at
d = 2048 and breaks down when a covariance is singular (fewer samples than
dimensions). Here the trace term comes from a symmetric matrix instead. With any
factor F of one covariance (S_a = F F^T), the eigenvalues of S_a S_b equal those of
the symmetric positive semi-definite F^T S_b F, so

    tr((S_a S_b)^(1/2)) = sum of sqrt(eigenvalues of F^T S_b F)

F is the centred data divided by sqrt(n - 1) when a set has no more samples than
dimensions (exact, no decomposition at all), otherwise the Cholesky factor of the
covariance (or, should it be singular, V diag(sqrt(lambda)) from its
eigendecomposition). When both sets are that small, the trace is the sum of
singular values of F_a^T F_b, and no d x d matrix is ever formed.

Eigenvalues at rounding level are dropped, in the covariance's
eigendecomposition and in F^T S_b F alike: those at or below
``k * eps * (largest eigenvalue)`` for a k x k matrix (:func:`significant`).
A symmetric eigensolver returns an eigenvalue that is exactly 0 (an all-zero
"dead" feature column, common with ReLU features; a feature constant in both
sets; the centring's null direction when n <= d) as noise of about
eps * (largest eigenvalue), and the square root turns that noise into about
sqrt(eps) ~ 1e-8 of the trace term per eigenvalue (docs/metrics.md has measurements).
A genuine eigenvalue that small cannot be told from that noise, so dropping it
loses nothing the arithmetic could have kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike

from analysis.metrics.validation import as_feature_pair, check_positive_int, require_samples


@dataclass(frozen=True)
class Gaussian:
    """Mean and covariance of a feature set, with a covariance factor made on demand."""

    centred: np.ndarray  # samples minus their mean, shape (n, d)
    mean: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Gaussian:
        mean = x.mean(axis=0)
        return cls(centred=x - mean, mean=mean)

    @property
    def n(self) -> int:
        return self.centred.shape[0]

    @property
    def d(self) -> int:
        return self.centred.shape[1]

    @property
    def small(self) -> bool:
        """No more samples than dimensions: the covariance is singular; use the data."""
        return self.n <= self.d

    @cached_property
    def trace(self) -> float:
        """tr(S), without forming S."""
        return float(np.einsum("ij,ij->", self.centred, self.centred)) / (self.n - 1)

    @cached_property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (divisor n - 1), as ``np.cov``."""
        return (self.centred.T @ self.centred) / (self.n - 1)

    @cached_property
    def factor(self) -> np.ndarray:
        """F with F F^T = S: the centred data / sqrt(n - 1) (d x n) if small, else d x d.

        For a d x d factor, Cholesky is several times faster than an eigendecomposition
        and as accurate (both are backward stable); a covariance that is singular
        after all (a constant feature, say) falls back to V sqrt(L) over the
        eigenvalues above the threshold (d x rank).
        """
        if self.small:
            return self.centred.T / np.sqrt(self.n - 1)
        try:
            return np.linalg.cholesky(self.cov)
        except np.linalg.LinAlgError:
            eigenvalues, vectors = np.linalg.eigh(self.cov)
            keep = significant(eigenvalues)
            return vectors[:, keep] * np.sqrt(eigenvalues[keep])  # d x rank


def significant(eigenvalues: np.ndarray) -> np.ndarray:
    """Mask of the eigenvalues of a k x k symmetric matrix above k * eps * the largest.

    Below that, a computed eigenvalue is rounding noise (see the module docstring).
    """
    eigenvalues = np.asarray(eigenvalues)
    if eigenvalues.size == 0:
        return np.zeros(0, dtype=bool)
    largest = eigenvalues.max()
    return eigenvalues > eigenvalues.size * np.finfo(np.float64).eps * max(largest, 0.0)


def trace_sqrt_product(a: Gaussian, b: Gaussian) -> float:
    """tr((S_a S_b)^(1/2)) through a symmetric eigenproblem (or an SVD when both are small)."""
    if a.small and b.small:
        # Eigenvalues of S_a S_b are the squared singular values of F_a^T F_b (n_a x n_b).
        return float(np.linalg.svd(a.factor.T @ b.factor, compute_uv=False).sum())
    if b.small:
        a, b = b, a  # factor the small one: its centred data, no decomposition needed
    f = a.factor
    if f.shape[1] == 0:
        return 0.0  # S_a = 0: every feature constant
    eigenvalues = np.linalg.eigvalsh(f.T @ (b.cov @ f))  # reads one triangle only
    return float(np.sqrt(eigenvalues[significant(eigenvalues)]).sum())


def frechet_distance(a: Gaussian, b: Gaussian) -> float:
    """FD between two fitted Gaussians."""
    diff = a.mean - b.mean
    return float(diff @ diff + a.trace + b.trace - 2.0 * trace_sqrt_product(a, b))


def fd(real: ArrayLike, fake: ArrayLike) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017).

    Lower is better; 0 for identical sets. Equals pytorch-fid's and torch-fidelity's
    value where theirs is well defined, and stays exact when a set has fewer samples
    than dimensions. Not clipped at 0: rounding can leave about -1e-12 * tr(S).
    """
    real, fake = as_feature_pair(real, fake)
    require_samples(real, "real", 2, "a covariance")
    require_samples(fake, "fake", 2, "a covariance")
    return frechet_distance(Gaussian.fit(real), Gaussian.fit(fake))


def fd_infinity_sizes(n_fake: int, points: int = 15) -> np.ndarray:
    """dgm-eval's subset sizes: ``points`` evenly spaced from min(5000, max(n//10, 2)) to n."""
    first = min(5000, max(n_fake // 10, 2))
    return np.linspace(first, n_fake, points).astype(np.int64)


def fd_infinity(real: ArrayLike, fake: ArrayLike, points: int = 15, seed: int = 0) -> float:
    """FD extrapolated to infinitely many fake samples (Chong & Forsyth 2020), as dgm-eval.

    FD is biased upwards by about c / N for N fake samples. At each of ``points``
    subset sizes N (see :func:`fd_infinity_sizes`), FD of the full real set against
    a random subset of N fake samples (drawn without replacement with
    ``numpy.random.default_rng(seed)``); a least-squares line of FD against 1/N;
    its intercept at 1/N = 0.
    """
    real, fake = as_feature_pair(real, fake)
    points = check_positive_int(points, "points", minimum=2)
    require_samples(real, "real", 2, "a covariance")
    require_samples(fake, "fake", 3, "fd_infinity (two different subset sizes)")
    sizes = fd_infinity_sizes(fake.shape[0], points)
    rng = np.random.default_rng(seed)
    reference = Gaussian.fit(real)  # its factor is computed once and reused for every N
    values = []
    for size in sizes:
        subset = fake[rng.choice(fake.shape[0], size=int(size), replace=False)]
        values.append(frechet_distance(reference, Gaussian.fit(subset)))
    _slope, intercept = np.polyfit(1.0 / sizes, np.array(values), deg=1)
    return float(intercept)
