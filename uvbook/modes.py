"""Quick vs full mode, seeding and device set-up (Preface, "How to run this book").

Every notebook reads its size knobs from one parameter cell that calls
:func:`by_mode`, so the same code path runs in both modes, only smaller in quick
mode. Quick mode is switched on with the environment variable ``UVBOOK_QUICK=1``;
CI and ``make test`` set it, ``make book`` and a reader's Jupyter do not.
"""

from __future__ import annotations

import os
from typing import TypeVar

import numpy as np

T = TypeVar("T")

QUICK_ENV = "UVBOOK_QUICK"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def is_quick() -> bool:
    """Return True when ``UVBOOK_QUICK`` asks for quick mode.

    Raises:
        ValueError: the variable holds something other than 1/0/true/false/yes/no/on/off.
    """
    raw = os.environ.get(QUICK_ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(
        f"{QUICK_ENV} must be one of 1/0/true/false/yes/no/on/off (or unset); got {raw!r}"
    )


def mode_name() -> str:
    """``"quick"`` or ``"full"``: printed at the top of every notebook."""
    return "quick" if is_quick() else "full"


def by_mode(*, quick: T, full: T) -> T:
    """Pick a value by mode: ``epochs = by_mode(quick=2, full=30)``."""
    return quick if is_quick() else full


def set_seed(seed: int = 0) -> None:
    """Seed Python's ``random``, NumPy and Keras/TensorFlow at once.

    On the CPU this makes a rerun reproduce the book's numbers; on a GPU some
    kernels stay non-deterministic and numbers may differ in the last digits.

    Raises:
        ValueError: ``seed`` is not a non-negative integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    import keras  # imported here: TensorFlow takes seconds to import

    keras.utils.set_random_seed(int(seed))  # seeds Python's random, NumPy and the backend


def setup_devices(verbose: bool = True) -> list[str]:
    """Turn on GPU memory growth where a GPU is present and return the devices used.

    Without memory growth TensorFlow reserves the whole GPU at start-up, which
    breaks a second notebook running beside the first.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: growth can no longer change
            pass
    devices = [d.name for d in gpus] or ["CPU"]
    if verbose:
        print(f"uvbook: {mode_name()} mode; training on {', '.join(devices)}")
    return devices
