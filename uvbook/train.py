"""Training helpers: train once, reuse everywhere (Chapters 3-6).

:func:`train_or_load` caches a trained model as a ``.keras`` file under
:func:`cache_dir`, keyed by everything that determines its weights (the caller's key:
model config, data, epochs, seed; plus the mode and uvbook's version). A later
notebook that asks for the same key loads it instead of retraining; a changed key
retrains; an entry whose file does not match its recorded SHA-256, or does not
load, is retrained, never used (the message names the file and both hashes). Models
load with ``safe_mode=True``. Writes are atomic (write to a temporary file in the same
folder, flush it to disk, then rename).

Training itself is resumable: ``train_or_load`` hands a ``train`` callable that has a
``backup`` parameter its own backup folder, ``<cache>/<name>-<digest16>.backup/``; the
helpers pass ``uvbook.callbacks.resumable(backup)`` to ``fit``, which checkpoints every
epoch there and resumes an interrupted run from its last complete epoch. The folder is
removed once the trained model is safely cached. A model whose weights are NaN or
infinite is never cached (:class:`uvbook.callbacks.TrainingDiverged`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras

from uvbook import __version__
from uvbook._io import atomic_write, sha256
from uvbook.callbacks import TrainingDiverged, non_finite_variables
from uvbook.modes import mode_name


def cache_dir() -> Path:
    """``$UVBOOK_CACHE_DIR`` or ``~/.cache/uvbook``, created if needed.

    Raises:
        OSError: the folder cannot be created or written to (names the folder).
    """
    return _writable_folder(Path(os.environ.get("UVBOOK_CACHE_DIR") or Path.home() / ".cache" / "uvbook"))


def _writable_folder(path: Path) -> Path:
    """``path``, created if needed; an ``OSError`` naming it if it cannot be created or written to."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(f"uvbook cache folder {path} cannot be created: {err}; "
                      "set UVBOOK_CACHE_DIR (or pass folder=) to a writable folder") from err
    if not os.access(path, os.W_OK):
        raise OSError(f"uvbook cache folder {path} is not writable; "
                      "set UVBOOK_CACHE_DIR (or pass folder=) to a writable folder")
    return path


def cache_key(key: Mapping[str, Any]) -> str:
    """A stable hex digest of ``key`` plus the mode and uvbook's version."""
    if not isinstance(key, Mapping) or not key:
        raise ValueError(f"key must be a non-empty mapping of what determines the weights; got {key!r}")
    full = {"key": dict(key), "mode": mode_name(), "uvbook": __version__}
    text = json.dumps(full, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def weights_digest(model: keras.Model) -> str:
    """The first 16 hex digits of the SHA-256 of ``model``'s weights (order, shapes and values;
    not their names, which Keras makes unique per process).

    Put it into the cache key of anything whose weights or recorded history depend on
    another model, e.g. a GAN whose per-epoch Fréchet curve the domain classifier scores:
    when that model changes, the key changes and the dependent model is retrained.
    A model saved and loaded again has the same digest.

    Raises:
        ValueError: ``model`` is not a built Keras model.
    """
    if not isinstance(model, keras.Model) or not model.built:
        raise ValueError(f"model must be a built keras.Model; got {type(model).__name__}")
    digest = hashlib.sha256()
    for weight in model.weights:
        value = keras.ops.convert_to_numpy(weight)
        digest.update(f"{value.shape}:{value.dtype}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:16]


def _takes_backup(train: Callable) -> bool:
    """Whether ``train`` has a parameter named ``backup`` (for its backup folder), e.g. ``train(model, backup)``."""
    try:
        param = inspect.signature(train).parameters.get("backup")
    except (TypeError, ValueError):
        return False
    return param is not None and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)


def train_or_load(name: str, build: Callable[[], keras.Model],
                  train: Callable[..., Any], key: Mapping[str, Any],
                  folder: str | os.PathLike | None = None,
                  verbose: bool = True) -> tuple[keras.Model, dict[str, list[float]]]:
    """Return ``(model, history)``: loaded from the cache when ``key`` matches, else trained.

    Args:
        name: a short file-name-safe name, e.g. ``"conv_ae_32"``.
        build: makes the untrained, compiled model.
        train: trains it in place; may return a Keras ``History`` or a dict of per-epoch lists.
            If it has a parameter named ``backup`` (``def train(model, backup=None)``), it gets
            the run's backup folder (a ``Path``, created by the first checkpoint) to pass to
            :func:`uvbook.callbacks.resumable`.
        key: everything that determines the weights (config, dataset and split, epochs, seed...).
        folder: the cache folder (default :func:`cache_dir`); checked to be writable before
            anything is trained (``OSError`` naming it otherwise).

    Raises:
        ValueError: a bad ``name``, ``key``, ``build`` or ``train``.
        OSError: the cache folder cannot be created or written to.
        uvbook.callbacks.TrainingDiverged: training left non-finite weights (nothing is cached).
    """
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name) \
            or name.startswith("."):
        raise ValueError(f"name must be a non-empty file-name-safe string (letters, digits, - _ ., "
                         f"not starting with .); got {name!r}")
    for what, fn in (("build", build), ("train", train)):
        if not callable(fn):
            raise ValueError(f"{what} must be a callable; got {type(fn).__name__}")
    digest = cache_key(key)
    folder = _writable_folder(Path(folder)) if folder is not None else cache_dir()
    model_path = folder / f"{name}-{digest[:16]}.keras"
    meta_path = model_path.with_suffix(".json")
    backup = model_path.with_suffix(".backup")
    if model_path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("digest") != digest:
                raise ValueError(f"{meta_path} records key digest {meta.get('digest')!r}, expected {digest}")
            actual = sha256(model_path)
            if meta.get("sha256") != actual:
                raise ValueError(f"its SHA-256 is {actual}, but {meta_path} expects {meta.get('sha256')}")
            model = keras.models.load_model(model_path, safe_mode=True)
            if verbose:
                print(f"uvbook: loaded {name} from {model_path} (trained in {meta['seconds']:.0f} s)")
            shutil.rmtree(backup, ignore_errors=True)  # a leftover of an earlier run: not needed
            return model, meta["history"]
        except Exception as err:  # noqa: BLE001 - any defect means "retrain"
            print(f"uvbook: cache entry {model_path} is unusable ({err}); retraining")
    model = build()
    start = time.perf_counter()
    result = train(model, backup=backup) if _takes_backup(train) else train(model)
    seconds = time.perf_counter() - start
    history = getattr(result, "history", result) or {}
    history = {k: [float(v) for v in vals] for k, vals in dict(history).items()}
    bad = non_finite_variables(model)
    if bad:
        raise TrainingDiverged(f"uvbook: {name} was trained to non-finite weights ({', '.join(bad[:3])}); "
                               "not caching it. The likely cause is a learning rate too high.")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(model_path, lambda tmp: model.save(tmp), suffix=".keras")
    meta = {"name": name, "digest": digest, "key": json.loads(json.dumps(dict(key), default=str)),
            "mode": mode_name(), "seconds": seconds, "history": history, "sha256": sha256(model_path)}
    atomic_write(meta_path, lambda tmp: tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8"),
                  suffix=".json")
    shutil.rmtree(backup, ignore_errors=True)  # the run is cached: its checkpoints are not needed
    if verbose:
        print(f"uvbook: trained {name} in {seconds:.0f} s; cached at {model_path}")
    return model, history
