"""Precision, recall, density, coverage (Naeem et al. 2020) and the realism score
(Kynkäänniemi et al. 2019), from k-nearest-neighbour balls, in bounded memory.

Every sample gets a ball reaching its k-th nearest neighbour within its own set.
- precision: share of fake samples inside at least one real ball (fidelity);
- recall: share of real samples inside at least one fake ball (diversity);
- density: real balls containing each fake sample, averaged, divided by k (fidelity);
- coverage: share of real balls that contain at least one fake sample (diversity).
"Inside" is strictly closer than the radius, as in the ``prdc`` package.

The ``prdc`` package builds three full N x N distance matrices (18.6 GiB each at
N = 50,000). Here the real-fake distances come one block of real rows at a time
(see :mod:`analysis.metrics.distances`) and only what the four numbers need is
kept: each sample's radius, each fake sample's count of real balls, and per real
sample whether a fake lies inside its ball or it lies inside a fake ball.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from analysis.metrics.distances import BLOCK_BYTES, distance_blocks, kth_neighbour_distance
from analysis.metrics.validation import as_feature_pair, check_positive_int, require_samples


def _radii(x: np.ndarray, name: str, k: int, block_bytes: int) -> np.ndarray:
    require_samples(x, name, k + 1, f"a k-nearest-neighbour radius with k={k}")
    return kth_neighbour_distance(x, k, block_bytes)


def prdc(
    real: ArrayLike, fake: ArrayLike, k: int = 5, block_bytes: int = BLOCK_BYTES
) -> dict[str, float]:
    """``{"precision", "recall", "density", "coverage"}`` with k neighbours. Higher is better.

    Equal to ``prdc.compute_prdc(real, fake, nearest_k=k)`` on the same float64
    inputs. Memory beyond the inputs stays near ``block_bytes`` (128 MiB by default)
    whatever the number of samples. Each set needs more than k samples.
    """
    real, fake = as_feature_pair(real, fake)
    k = check_positive_int(k, "k")
    real_radii = _radii(real, "real", k, block_bytes)
    fake_radii = _radii(fake, "fake", k, block_bytes)
    balls_per_fake = np.zeros(fake.shape[0], dtype=np.int64)
    real_in_fake_ball = np.empty(real.shape[0], dtype=bool)
    real_ball_covered = np.empty(real.shape[0], dtype=bool)
    for rows, d in distance_blocks(real, fake, block_bytes):
        balls_per_fake += (d < real_radii[rows, None]).sum(axis=0)
        real_in_fake_ball[rows] = (d < fake_radii[None, :]).any(axis=1)
        real_ball_covered[rows] = d.min(axis=1) < real_radii[rows]
    return {
        "precision": float((balls_per_fake > 0).mean()),
        "recall": float(real_in_fake_ball.mean()),
        "density": float((1.0 / k) * balls_per_fake.mean()),  # the reference's order of rounding
        "coverage": float(real_ball_covered.mean()),
    }


def realism_scores(
    real: ArrayLike, fake: ArrayLike, k: int = 5, block_bytes: int = BLOCK_BYTES
) -> np.ndarray:
    """Per fake sample, the realism score R = max over real r of radius(r) / |fake - r|.

    Only real samples whose k-NN radius is below the median radius take part (the
    paper drops the larger half of the balls, where outliers make them huge). R >= 1
    means the sample lies in one of those balls; an exact copy of one of those real
    samples scores infinity. As dgm-eval's ``compute_prdc(..., realism=True)``.
    """
    real, fake = as_feature_pair(real, fake)
    k = check_positive_int(k, "k")
    radii = _radii(real, "real", k, block_bytes)
    small = radii < np.median(radii)
    kept, kept_radii = real[small], radii[small]
    if kept.shape[0] == 0:
        raise ValueError("real: every k-NN radius equals the median; realism is undefined")
    # Real rows against fake columns, as the reference orients its distance matrix.
    scores = np.zeros(fake.shape[0])
    with np.errstate(divide="ignore"):  # distance 0: an exact copy, realism infinity
        for rows, d in distance_blocks(kept, fake, block_bytes):
            np.maximum(scores, (kept_radii[rows, None] / d).max(axis=0), out=scores)
    return scores


def realism(real: ArrayLike, fake: ArrayLike, k: int = 5, block_bytes: int = BLOCK_BYTES) -> float:
    """Median realism score of the fake samples (:func:`realism_scores`). Higher is better."""
    return float(np.median(realism_scores(real, fake, k, block_bytes)))
