"""Vendi score (Friedman & Dieng 2023): the effective number of distinct samples in a set.

With unit-normalised features and the linear (cosine) kernel, K = X X^T / n has
eigenvalues lambda summing to 1; Vendi = exp(Shannon entropy of lambda) for q = 1,
or exp(Renyi entropy of order q). It ranges from 1 (all samples alike) to the
rank of X. It looks at one set (the generated images) alone.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from analysis.metrics.validation import as_features


def vendi(fake: ArrayLike, q: float = 1.0, normalize: bool = True) -> float:
    """Vendi score with the linear kernel (dgm-eval's default). Higher is more diverse.

    ``q`` is the order of the entropy (1: Shannon, ``float("inf")``: min-entropy).
    The eigenvalues of X X^T / n equal those of X^T X / n, so the smaller of the
    two matrices is used: d x d when there are more samples than dimensions.
    """
    x = as_features(fake, "fake")
    if normalize:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms == 0).any():
            raise ValueError("fake: a sample with all-zero features cannot be normalised")
        x = x / norms
    n, d = x.shape
    gram = (x @ x.T if n <= d else x.T @ x) / n
    w = np.linalg.eigvalsh(gram)
    p = w[w > 0]
    if q == 1:
        entropy = -(p * np.log(p)).sum()
    elif np.isinf(q):
        entropy = -np.log(p.max())
    else:
        entropy = np.log((p**q).sum()) / (1 - q)
    return float(np.exp(entropy))
