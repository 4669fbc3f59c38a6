"""Argument checks shared by uvbook's public functions.

Each raises a ``ValueError`` that names what was expected and what was given, so a
reader who passes RGB images or a label array of the wrong length learns exactly
what is wrong instead of meeting a shape error deep inside TensorFlow.
"""

from __future__ import annotations

import numbers

import numpy as np


def check_positive_int(value, name: str) -> int:
    """``value`` as an int if it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def check_number(value, name: str, lo: float = -np.inf, hi: float = np.inf, lo_open: bool = False,
                 hi_open: bool = False) -> float:
    """``value`` as a float if it is a finite real number in the interval from ``lo`` to ``hi``
    (each end closed unless ``lo_open``/``hi_open``): ``check_number(t, "threshold", 0, 1, True, True)``
    accepts 0 < t < 1."""
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    wanted = f"in {interval}" if np.isfinite(lo) or np.isfinite(hi) else "a finite real number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be {wanted}; got {value!r}")
    below = value <= lo if lo_open else value < lo
    above = value >= hi if hi_open else value > hi
    if below or above:
        raise ValueError(f"{name} must be {wanted}; got {value!r}")
    return float(value)


def describe(x) -> str:
    """How an error message names a value it was given: an array's (or a tensor's) shape and
    dtype, else the value's type."""
    shape = getattr(x, "shape", None)
    if shape is not None:
        return f"an array of shape {tuple(shape)} and dtype {getattr(x, 'dtype', None)}"
    return type(x).__name__


def check_images(x, name: str = "images", shape: tuple | None = None,
                 pixel_range: tuple[float, float] | None = (0.0, 1.0)) -> np.ndarray:
    """``x`` as a float NumPy array of images, finite and in ``pixel_range``.

    Args:
        x: an array, a tensor or nested lists of images.
        name: how the error messages call ``x``.
        shape: the shape of one image, e.g. ``(28, 28, 1)``; None accepts any grey-scale
            ``(height, width, 1)``.
        pixel_range: the closed interval the pixels must lie in, or None for any finite value.

    Raises:
        ValueError: naming the expected shape, dtype or range and what was given.
    """
    if not isinstance(x, np.ndarray):
        if hasattr(x, "numpy"):  # a TensorFlow tensor
            x = x.numpy()
        try:
            x = np.asarray(x)
        except (TypeError, ValueError):
            pass
    if shape is None:
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[-1] != 1:
            raise ValueError(f"{name} must be grey-scale images shaped (N, height, width, 1); got {describe(x)}")
    elif not isinstance(x, np.ndarray) or x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"{name} must be images shaped (N, {', '.join(map(str, shape))}); got {describe(x)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one image; got an empty array {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        interval = "" if pixel_range is None else f" in [{pixel_range[0]:g}, {pixel_range[1]:g}]"
        hint = " (divide uint8 pixels by 255)" if np.issubdtype(x.dtype, np.integer) else ""
        raise ValueError(f"{name} must be floating-point pixels{interval}{hint}; got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite; got {int(np.sum(~np.isfinite(x)))} NaN/inf values")
    if pixel_range is not None:
        lo, hi = float(x.min()), float(x.max())
        if lo < pixel_range[0] or hi > pixel_range[1]:
            raise ValueError(f"{name} must lie in [{pixel_range[0]:g}, {pixel_range[1]:g}]; "
                             f"got values from {lo:g} to {hi:g}")
    return x


def check_labels(y, name: str = "labels", length: int | None = None) -> np.ndarray:
    """Integer class labels, 1-D, non-empty, optionally of a given length."""
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of class labels; got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer class labels; got dtype {y.dtype}")
    if length is not None and len(y) != length:
        raise ValueError(f"{name} must have one label per example ({length}); got {len(y)}")
    return y


def check_features(x, name: str = "features", length: int | None = None) -> np.ndarray:
    """A finite 2-D float matrix (examples x features); images are flattened first."""
    x = np.asarray(x)
    if x.ndim > 2:
        x = x.reshape(len(x), -1)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty (examples, features) matrix or a batch of images; "
            f"got shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers; got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite; got {int(np.sum(~np.isfinite(x)))} NaN/inf values")
    if length is not None and len(x) != length:
        raise ValueError(f"{name} must have {length} rows (one per label); got {len(x)}")
    return x
