"""Inception Score (Salimans et al. 2016) from classifier logits, as torch-fidelity.

IS = exp(E_x KL(p(y|x) || p(y))), computed on each of ``splits`` parts of a seeded
shuffle of the samples, with p(y) the mean prediction within the part; the value
is the mean over parts and the spread their standard deviation. It looks at the
generated images alone, through a classifier's (Inception's 1008-way) logits.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import log_softmax

from analysis.metrics.validation import as_features, check_positive_int, require_samples


def inception_score(logits: ArrayLike, splits: int = 10, seed: int = 0) -> dict[str, float]:
    """Inception Score ``{"value": mean over splits, "std": their std}``. Higher is better.

    Parts are rows ``i*N//splits`` to ``(i+1)*N//splits`` of the samples shuffled by
    ``numpy.random.default_rng(seed).permutation``, as torch-fidelity does with its own
    generator (so the two agree exactly on the same order of samples).
    """
    logits = as_features(logits, "logits")
    splits = check_positive_int(splits, "splits")
    require_samples(logits, "logits", splits, f"inception_score with splits={splits}")
    if logits.shape[1] < 2:
        raise ValueError("logits: need at least 2 classes (one column per class)")
    n = logits.shape[0]
    log_p = log_softmax(logits[np.random.default_rng(seed).permutation(n)], axis=1)
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        part = slice(i * n // splits, (i + 1) * n // splits)
        log_q = np.log(p[part].mean(axis=0, keepdims=True))
        kl = (p[part] * (log_p[part] - log_q)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return {"value": float(np.mean(scores)), "std": float(np.std(scores))}
