"""Input checks shared by every metric: float64, 2-D, finite, matching widths, enough rows.

Modelled on scikit-learn's ``check_array``: each metric calls these first, so a bad
array fails at once with a message naming it, not deep inside a linear-algebra
routine with a message about something else.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def as_features(x: ArrayLike, name: str) -> np.ndarray:
    """``x`` as a C-contiguous float64 array of shape (samples, features), all finite.

    Raises ValueError naming ``name`` when the array is not numeric, not 2-D, empty,
    or holds NaN or infinity (features from a failed encoder pass often do).
    """
    arr = np.asarray(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(f"{name}: expected numeric features, got an array of dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ValueError(f"{name}: expected real-valued features, got complex numbers")
    if arr.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D array of shape (samples, features), got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: the array is empty (shape {arr.shape})")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    # Column sums are finite exactly when every value is, short of overflow: a screen
    # that needs no n x d temporary (large feature sets are most of the memory there is).
    if np.isfinite(arr.sum(axis=0)).all():
        return arr
    finite = np.isfinite(arr)
    if not finite.all():
        bad = ~finite
        row = int(np.argmax(bad.any(axis=1)))
        raise ValueError(
            f"{name}: {int(bad.sum())} values are NaN or infinite (the first in row {row}); "
            "recompute the features or drop those samples"
        )
    return arr


def as_feature_pair(
    real: ArrayLike, fake: ArrayLike, names: tuple[str, str] = ("real", "fake")
) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays through :func:`as_features`, and the same number of features in each."""
    a, b = as_features(real, names[0]), as_features(fake, names[1])
    check_same_width(a.shape[1], b.shape[1], names)
    return a, b


def check_same_width(d_real: int, d_fake: int, names: tuple[str, str] = ("real", "fake")) -> None:
    """Raise ValueError unless both sets have the same number of features per sample."""
    if d_real != d_fake:
        raise ValueError(
            f"{names[0]} has {d_real} features per sample but {names[1]} has {d_fake}; "
            "both must come from the same encoder"
        )


def require_samples(x: np.ndarray, name: str, minimum: int, why: str) -> None:
    """Raise ValueError unless ``x`` has at least ``minimum`` rows; ``why`` names the need."""
    if x.shape[0] < minimum:
        raise ValueError(f"{name} has {x.shape[0]} samples but {why} needs at least {minimum}")


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    """``value`` as an int when it is a whole number >= ``minimum``; a clear ValueError if not."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)
