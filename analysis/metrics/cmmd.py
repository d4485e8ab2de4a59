"""CMMD (Jayasumana et al. 2024): MMD with a Gaussian RBF kernel on CLIP embeddings, x 1000.

As the paper's code (google-research/google-research, ``cmmd/distance.py``)::

    k(x, y) = exp(-|x - y|^2 / (2 sigma^2)),  sigma = 10
    CMMD = 1000 * (mean k(x, x') + mean k(y, y') - 2 mean k(x, y))

The means run over *all* pairs, each sample with itself included: the biased
(V-statistic) estimate of MMD^2, as the reference computes it. Its embeddings are
CLIP ViT-L/14@336px image embeddings (after the projection), scaled to unit
length: the encoder ``clip-vitl14-336`` gives exactly those. Squared distances use
the reference's formula |x|^2 + |y|^2 - 2 x.y, in float64 and in row blocks, so no
N x M matrix is held whole.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from analysis.metrics.distances import block_rows, squared_norms
from analysis.metrics.validation import as_feature_pair, require_samples

SIGMA = 10.0
SCALE = 1000.0
# The encoder whose embeddings CMMD is defined on (docs/encoders.md).
ENCODER = "clip-vitl14-336"


def rbf_kernel_mean(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Mean of exp(-|x_i - y_j|^2 / (2 sigma^2)) over every pair (i, j), in row blocks."""
    gamma = 1.0 / (2.0 * sigma**2)
    x_sq, y_sq = squared_norms(x), squared_norms(y)
    step = block_rows(y.shape[0])
    total = 0.0
    for start in range(0, x.shape[0], step):
        rows = slice(start, min(start + step, x.shape[0]))
        d2 = x[rows] @ y.T
        d2 *= -2.0
        d2 += x_sq[rows, None]
        d2 += y_sq[None, :]
        d2 *= -gamma
        total += float(np.exp(d2, out=d2).sum())
    return total / (x.shape[0] * y.shape[0])


def cmmd(real: ArrayLike, fake: ArrayLike, sigma: float = SIGMA, scale: float = SCALE) -> float:
    """CMMD: ``scale`` x the biased MMD^2 with a Gaussian RBF kernel of width ``sigma``.

    Lower is better; 0 for identical sets. Meant for ``clip-vitl14-336`` embeddings
    (unit length), for which sigma = 10 and the scale 1000 were chosen; on other
    features it is still the same formula.
    """
    real, fake = as_feature_pair(real, fake)
    require_samples(real, "real", 2, "cmmd")
    require_samples(fake, "fake", 2, "cmmd")
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    k_xx = rbf_kernel_mean(real, real, sigma)
    k_yy = rbf_kernel_mean(fake, fake, sigma)
    k_xy = rbf_kernel_mean(real, fake, sigma)
    return float(scale * (k_xx + k_yy - 2.0 * k_xy))
