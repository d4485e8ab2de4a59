"""Inception Score (Salimans et al. 2016) from classifier logits, as torch-fidelity; IS-infinity.

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


def _one_split_score(log_p: np.ndarray) -> float:
    """IS of one set of log-probabilities taken as a single split: exp(mean KL(p(y|x) || p(y)))."""
    p = np.exp(log_p)
    log_q = np.log(p.mean(axis=0, keepdims=True))
    return float(np.exp((p * (log_p - log_q)).sum(axis=1).mean()))


def inception_score_infinity(logits: ArrayLike, points: int = 15, seed: int = 0) -> float:
    """IS extrapolated to infinitely many samples (Chong & Forsyth 2020). Higher is better.

    The Inception Score of N samples is biased (downwards) by about c / N. As
    Chong & Forsyth's ``calculate_IS_infinity``: the IS of one split of a random
    subset of N samples at each of ``points`` sizes, a least-squares line of IS
    against 1/N, and its intercept at 1/N = 0. The sizes are the project's FD-infinity
    ones (:func:`analysis.metrics.fd.fd_infinity_sizes`, dgm-eval's), and the subsets
    are drawn without replacement with ``numpy.random.default_rng(seed)``, as for
    :func:`analysis.metrics.fd.fd_infinity`.
    """
    from analysis.metrics.fd import fd_infinity_sizes

    logits = as_features(logits, "logits")
    points = check_positive_int(points, "points", minimum=2)
    require_samples(logits, "logits", 3, "inception_score_infinity (two different subset sizes)")
    if logits.shape[1] < 2:
        raise ValueError("logits: need at least 2 classes (one column per class)")
    n = logits.shape[0]
    log_p = log_softmax(logits, axis=1)
    sizes = fd_infinity_sizes(n, points)
    rng = np.random.default_rng(seed)
    scores = [_one_split_score(log_p[rng.choice(n, size=int(s), replace=False)]) for s in sizes]
    _slope, intercept = np.polyfit(1.0 / sizes, np.array(scores), deg=1)
    return float(intercept)
