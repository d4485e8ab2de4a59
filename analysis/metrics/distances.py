"""Euclidean distances in row blocks, so N x M distance matrices never exist in full.

Every nearest-neighbour metric (precision/recall/density/coverage, realism,
authenticity, the C_T test, energy distance) goes through :func:`distance_blocks`.
Each block holds about ``BLOCK_BYTES`` of float64, which bounds memory whatever N is:
at 50,000 x 50,000 the full matrix would take 20 GB; one block takes 128 MiB.

Distances use the same formula, in the same order of float64 operations, as
scikit-learn's ``euclidean_distances`` (which the ``prdc`` package calls):
``sqrt(max(-2 x.y + |x|^2 + |y|^2, 0))``, with exact zeros on the diagonal of a set
against itself. Comparisons against neighbour radii then agree with ``prdc`` to the
bit whenever the underlying dot products do (BLAS may round the last bit differently
for different block shapes; that can only matter for a distance within about 1e-15
of a radius).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

BLOCK_BYTES = 128 * 2**20


def squared_norms(x: np.ndarray) -> np.ndarray:
    """Row-wise squared Euclidean norms, computed as scikit-learn's ``row_norms`` does."""
    return np.einsum("ij,ij->i", x, x)


def block_rows(n_columns: int, block_bytes: int = BLOCK_BYTES) -> int:
    """How many rows of a float64 block with ``n_columns`` columns fit in ``block_bytes``."""
    return max(1, block_bytes // (8 * max(1, n_columns)))


def distance_blocks(
    a: np.ndarray, b: np.ndarray | None = None, block_bytes: int = BLOCK_BYTES
) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(rows, D)``: D[i, j] is the distance from ``a[rows][i]`` to ``b[j]``.

    With ``b`` omitted, ``a`` is compared with itself and each row's distance to itself
    is exactly 0 (rounding would otherwise leave small positive values there). The
    caller may modify each block in place; a fresh one is made for every step.
    """
    same = b is None
    if same:
        b = a
    a_sq = squared_norms(a)
    b_sq = a_sq if same else squared_norms(b)
    step = block_rows(b.shape[0], block_bytes)
    for start in range(0, a.shape[0], step):
        rows = slice(start, min(start + step, a.shape[0]))
        d = a[rows] @ b.T
        d *= -2.0
        d += a_sq[rows, None]
        d += b_sq[None, :]
        np.maximum(d, 0.0, out=d)
        np.sqrt(d, out=d)
        if same:
            idx = np.arange(rows.stop - rows.start)
            d[idx, idx + start] = 0.0
        yield rows, d


def kth_neighbour_distance(x: np.ndarray, k: int, block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """Distance from each row of ``x`` to its k-th nearest other row (the k-NN radius).

    The row itself counts as its own 0th neighbour, as in ``prdc``: the radius is the
    (k+1)-th smallest distance, self included. Needs more than k rows.
    """
    radii = np.empty(x.shape[0])
    for rows, d in distance_blocks(x, block_bytes=block_bytes):
        d.partition(k, axis=1)
        radii[rows] = d[:, k]
    return radii


def nearest_distance(
    queries: np.ndarray, reference: np.ndarray, block_bytes: int = BLOCK_BYTES
) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the distance to its nearest reference row and that row's index."""
    dist = np.empty(queries.shape[0])
    index = np.empty(queries.shape[0], dtype=np.intp)
    for rows, d in distance_blocks(queries, reference, block_bytes=block_bytes):
        index[rows] = d.argmin(axis=1)
        dist[rows] = d[np.arange(d.shape[0]), index[rows]]
    return dist, index
