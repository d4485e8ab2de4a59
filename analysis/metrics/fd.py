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

from analysis.metrics.validation import (
    as_features,
    check_positive_int,
    check_same_width,
    require_samples,
)


@dataclass(frozen=True, eq=False)
class Gaussian:
    """Mean, trace and covariance of a feature set, with a covariance factor made on demand.

    The centred data is kept only for a small set (n <= d), where it is the factor;
    a larger set keeps its d x d covariance alone, so at most one centred copy of
    one set's data is alive at a time (at 50,000 x 2,048 float64, 0.8 GB each).
    """

    mean: np.ndarray
    n: int
    d: int
    trace: float  # tr(S)
    centred: np.ndarray | None  # samples minus their mean, (n, d); None unless small
    full_cov: np.ndarray | None  # S, (d, d); None when small (made on demand then)

    @classmethod
    def fit(cls, x: np.ndarray, owned: bool = False) -> Gaussian:
        """The Gaussian of float64 samples ``x`` (n, d).

        ``owned``: nobody else holds ``x`` (a converted or indexed copy), so it is
        centred in place instead of into a second copy.
        """
        n, d = x.shape
        mean = x.mean(axis=0)
        centred = np.subtract(x, mean, out=x if owned else None)
        if n <= d:
            trace = float(np.einsum("ij,ij->", centred, centred)) / (n - 1)
            return cls(mean, n, d, trace, centred, None)
        # A product with its own transpose: numpy makes it one BLAS syrk call, half a gemm.
        cov = centred.T @ centred
        cov /= n - 1
        return cls(mean, n, d, float(np.trace(cov)), None, cov)

    @classmethod
    def of(cls, x: ArrayLike, name: str) -> Gaussian:
        """The Gaussian of a feature set, validated (see ``as_features``), >= 2 samples."""
        arr = as_features(x, name)
        require_samples(arr, name, 2, "a covariance")
        # as_features copies when it converts (float32 features, lists): centre that copy.
        return cls.fit(arr, owned=not np.may_share_memory(arr, np.asarray(x)))

    @property
    def small(self) -> bool:
        """No more samples than dimensions: the covariance is singular; use the data."""
        return self.n <= self.d

    @cached_property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (divisor n - 1), as ``np.cov``."""
        if self.full_cov is not None:
            return self.full_cov
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
    # One set at a time, so only one set's converted/centred copy is alive at once.
    a = Gaussian.of(real, "real")
    b = Gaussian.of(fake, "fake")
    check_same_width(a.d, b.d)
    return frechet_distance(a, b)


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
    points = check_positive_int(points, "points", minimum=2)
    reference = Gaussian.of(real, "real")  # its factor is computed once and reused for every N
    fake = as_features(fake, "fake")
    check_same_width(reference.d, fake.shape[1])
    require_samples(fake, "fake", 3, "fd_infinity (two different subset sizes)")
    sizes = fd_infinity_sizes(fake.shape[0], points)
    rng = np.random.default_rng(seed)
    values = []
    for size in sizes:
        subset = fake[rng.choice(fake.shape[0], size=int(size), replace=False)]
        values.append(frechet_distance(reference, Gaussian.fit(subset, owned=True)))
    _slope, intercept = np.polyfit(1.0 / sizes, np.array(values), deg=1)
    return float(intercept)
