"""Memorisation: authenticity (Alaa et al. 2022) and the C_T data-copying test (Meehan et al. 2020).

Both ask whether generated samples sit closer to the real (training) samples than
new samples from the same distribution would. As in dgm-eval, the real set plays
the role of the training set; the C_T test also needs held-out real samples.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import mannwhitneyu

from analysis.metrics.distances import distance_blocks, nearest_distance
from analysis.metrics.validation import as_feature_pair, as_features, require_samples

CT_CELLS = 3  # k-means cells, as dgm-eval
CT_COMPONENTS = 64  # PCA dimensions before clustering, as dgm-eval
CT_MIN_FAKE = 20  # a cell counts when it holds more than this many of the tested samples


def authpct(real: ArrayLike, fake: ArrayLike) -> float:
    """Percentage of fake samples judged authentic (not copies). Higher is better.

    For each fake sample: d1 = distance to its nearest real sample r; d2 = distance
    from r to r's own nearest other real sample. Authentic when d2 < d1 (the fake lies
    farther from r than r's real neighbour does). As dgm-eval's ``compute_authpct``
    (from the FLS repository), in float64 instead of float32 and in bounded memory.
    """
    real, fake = as_feature_pair(real, fake)
    require_samples(real, "real", 2, "authpct (a nearest other real sample)")
    real_gap = np.empty(real.shape[0])
    for rows, d in distance_blocks(real):
        idx = np.arange(rows.stop - rows.start)
        d[idx, idx + rows.start] = np.inf  # a sample is not its own neighbour
        real_gap[rows] = d.min(axis=1)
    fake_gap, nearest = nearest_distance(fake, real)
    return float(100.0 * (real_gap[nearest] < fake_gap).mean())


def ct(real: ArrayLike, fake: ArrayLike, test: ArrayLike | None = None, seed: int = 0) -> float:
    """C_T data-copying statistic of fake against real (training) samples. Near 0 is best.

    A Z-scored Mann-Whitney U test per k-means cell of the real samples: are the
    fake samples' distances to their nearest real sample smaller (C_T << 0: copying)
    or larger (C_T >> 0: underfitting) than those of held-out ``test`` samples?
    Cells are weighted by their share of test samples; cells with no more than 20
    fake samples are left out. As dgm-eval's ``compute_CTscore``: features above 64
    dimensions are projected on the real set's first 64 principal components, and the
    cells are 3 k-means clusters (best of 10 seeded k-means++ starts).

    Without ``test``, a seeded random half of ``real`` is held out as the test set
    (and the rest plays the training set); that is dgm-eval's ``ct_test`` variant.
    """
    train, held_out, fake = _ct_sets(real, fake, test, seed)
    return _ct_score(train, held_out, fake, np.random.default_rng(seed))


def ct_modified(
    real: ArrayLike, fake: ArrayLike, test: ArrayLike | None = None, seed: int = 0
) -> float:
    """C_T with real and fake swapped, so that it reacts to memorisation only (dgm-eval).

    The cells and nearest neighbours come from the fake set; the statistic compares
    the real (training) samples' distances to the fake set with the held-out test
    samples'. Strongly negative when fake samples copy training samples (those then
    lie closer to the fake set than held-out samples do); near 0 otherwise, whether
    or not the model underfits. Higher is better. ``test`` as in :func:`ct`.
    """
    train, held_out, fake = _ct_sets(real, fake, test, seed)
    return _ct_score(fake, held_out, train, np.random.default_rng(seed))


def _ct_sets(
    real: ArrayLike, fake: ArrayLike, test: ArrayLike | None, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    real, fake = as_feature_pair(real, fake)
    if test is None:
        require_samples(real, "real", 2 * CT_CELLS, "ct without a test set (split in halves)")
        order = np.random.default_rng(seed).permutation(real.shape[0])
        half = real.shape[0] // 2
        return real[order[:half]], real[order[half:]], fake
    test = as_features(test, "test")
    if test.shape[1] != real.shape[1]:
        raise ValueError(
            f"real has {real.shape[1]} features per sample but test has {test.shape[1]}; "
            "all must come from the same encoder"
        )
    return real, test, fake


def _ct_score(
    train: np.ndarray, test: np.ndarray, gen: np.ndarray, rng: np.random.Generator
) -> float:
    """dgm-eval's C_T(train, test, gen): PCA, k-means cells on train, per-cell Z_U, weighted."""
    require_samples(train, "the training set of ct", CT_CELLS, f"{CT_CELLS} k-means cells")
    if train.shape[1] > CT_COMPONENTS:
        mean = train.mean(axis=0)
        centred = train - mean
        _, vectors = np.linalg.eigh(centred.T @ centred)
        components = vectors[:, ::-1][:, :CT_COMPONENTS]  # largest variance first
        train, test, gen = ((x - mean) @ components for x in (train, test, gen))
    centres = kmeans(train, CT_CELLS, rng)
    train_cell, test_cell, gen_cell = (_assign(x, centres) for x in (train, test, gen))

    weights, scores = [], []
    for cell in range(CT_CELLS):
        t, p, q = train[train_cell == cell], test[test_cell == cell], gen[gen_cell == cell]
        if len(t) == 0 or len(p) == 0:
            raise ValueError(
                f"ct: k-means cell {cell} holds no training or no test samples; "
                "more samples are needed"
            )
        if len(q) <= CT_MIN_FAKE:
            continue  # dgm-eval's tau = 20 / len(gen): too few tested samples in this cell
        weights.append(len(p) / len(test))
        scores.append(_z_u(p, q, t))
    if not scores:
        raise ValueError(
            f"ct: no k-means cell holds more than {CT_MIN_FAKE} of the {len(gen)} tested "
            "samples; more samples are needed"
        )
    return float(np.dot(weights, scores) / np.sum(weights))


def _z_u(test: np.ndarray, gen: np.ndarray, train: np.ndarray) -> float:
    """Z-scored Mann-Whitney U of gen's vs test's nearest-train distances (dgm-eval's ``Zu``)."""
    l_gen, _ = nearest_distance(gen, train)
    l_test, _ = nearest_distance(test, train)
    m, n = len(l_gen), len(l_test)
    u = mannwhitneyu(l_gen, l_test, alternative="less").statistic
    mean = n * m / 2 - 0.5  # with dgm-eval's continuity correction
    std = np.sqrt(n * m * (n + m + 1) / 12)
    return float((u - mean) / std)


def _assign(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for each row."""
    return nearest_distance(x, centres)[1]


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, starts: int = 10) -> np.ndarray:
    """Centres of k clusters: Lloyd's algorithm from k-means++ seeds, best of ``starts`` runs."""
    best, best_inertia = None, np.inf
    for _ in range(starts):
        centres = _kmeans_plus_plus(x, k, rng)
        labels = None
        for _ in range(300):
            new_labels = _assign(x, centres)
            if labels is not None and np.array_equal(labels, new_labels):
                break
            labels = new_labels
            for j in range(k):
                if (labels == j).any():  # an empty cluster keeps its centre
                    centres[j] = x[labels == j].mean(axis=0)
        inertia = ((x - centres[labels]) ** 2).sum()
        if inertia < best_inertia:
            best, best_inertia = centres, inertia
    return best


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each new seed drawn by squared distance."""
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min([((x - c) ** 2).sum(axis=1) for c in centres], axis=0)
        total = d2.sum()
        p = d2 / total if total > 0 else None  # all points equal: any choice will do
        centres.append(x[rng.choice(len(x), p=p)])
    return np.array(centres)
