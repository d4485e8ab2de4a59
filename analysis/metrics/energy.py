"""Normalised energy distance (Székely & Rizzo 2013), dgm-eval's ``energy``.

E = (2 E|X - Y| - E|X - X'| - E|Y - Y'|) / (2 E|X - Y|): 0 when the two sets come
from the same distribution, up to 1. Expectations are means over all pairs, each
sample's zero distance to itself included (V-statistics), as in dgm-eval.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from analysis.metrics.distances import distance_blocks
from analysis.metrics.validation import as_feature_pair


def _mean_distance(a: np.ndarray, b: np.ndarray | None = None) -> float:
    total = sum(d.sum() for _, d in distance_blocks(a, b))
    return float(total) / (a.shape[0] * (a.shape[0] if b is None else b.shape[0]))


def energy(real: ArrayLike, fake: ArrayLike) -> float:
    """Normalised energy distance between two feature sets. Lower is better.

    dgm-eval divides sums rather than means; with equal set sizes the two agree.
    Means keep the value meaningful when the sizes differ.
    """
    real, fake = as_feature_pair(real, fake)
    between = _mean_distance(real, fake)
    if between == 0:
        return 0.0  # every sample identical to every other: the same distribution
    return (2 * between - _mean_distance(real) - _mean_distance(fake)) / (2 * between)
