"""Callbacks: resume an interrupted run, stop a diverging one, report a collapsed GAN; monitors; progress.

The recipes of :mod:`uvbook.recipes` pass ``resumable(backup)`` to ``fit``, where ``backup``
is the per-key folder that :func:`uvbook.train.train_or_load` hands to them:

* :class:`EpochCheckpoint` saves, after every complete epoch, the model's variables
  (weights, batch-norm statistics and the states of its ``SeedGenerator`` s), the
  variables of *every* optimizer the model holds (``optimizer``, or a GAN's
  ``d_optimizer`` and ``g_optimizer``: their step counts and moments), the epoch and the
  history so far. A run that is interrupted (an exception, a killed kernel) and started
  again with the same cache key resumes from the last complete epoch and ends with the
  weights an uninterrupted run would have had, bit for bit on the CPU. Keras'
  ``BackupAndRestore`` restores the weights and (a GAN builds its optimizers at
  ``compile``) every optimizer, but not the state of a ``SeedGenerator``, so a resumed
  GAN would draw other noise than the uninterrupted run (a unit test shows it); nor does
  it advance a ``tf.data`` shuffle to the resumed epoch or skip a corrupt backup for an
  older one.
* :class:`DivergenceGuard` stops training at the first step whose loss (any training
  metric) is NaN or infinite, and at the end of an epoch whose weights are, by raising
  :class:`TrainingDiverged`, whose message names the epoch, the step and the likely cause
  (a learning rate too high). The checkpoint of the last complete epoch is kept: a
  diverged epoch is never saved.
* :class:`CollapseGuard` watches a GAN's ``d_fake`` (the mean probability D gives generated
  images): when it stays below ``threshold`` for ``patience`` consecutive steps the
  discriminator has won completely. It then warns (:class:`GANCollapseWarning`) and
  records ``d_collapsed`` = 1.0 for that epoch in the history (0.0 otherwise); with
  ``action="raise"`` it stops training with :class:`GANCollapsed` instead. Warning is the
  default because Chapter 4 provokes exactly this failure on purpose.

Files are written atomically (write, then rename), the record of a checkpoint (its
``.json``) last and with the SHA-256 of its arrays; a checkpoint whose arrays do not match
their record, or do not fit the model, is skipped with a message, never loaded. Arrays are
read with ``allow_pickle=False``.

Monitors write what they measure into each epoch's logs, hence into the history that
:func:`uvbook.train.train_or_load` caches: :class:`FrechetMonitor` (a GAN's sample
quality), :class:`NeighbourMonitor` (a representation's k-NN accuracy), :class:`ClusterMonitor`
(a clustering's accuracy on held-out examples),
:class:`WatchAccuracy` (a classifier's held-out accuracy), :class:`SampleGrid` (a GAN's
samples as a figure). :class:`EpochLog` prints one line an epoch: the progress a reader
sees while a recipe trains.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import matplotlib.pyplot as plt
import numpy as np

from uvbook._io import atomic_write, sha256
from uvbook.evaluate import cluster_accuracy, leave_one_out_knn_accuracy, nmi
from uvbook.models.semisup import predict_logits
from uvbook.plots import image_grid
from uvbook.validate import check_images, check_labels, check_positive_int

CHECKPOINT_FORMAT = 1
_EPOCH_FILE = re.compile(r"^epoch-(\d{4,})\.json$")


class TrainingDiverged(FloatingPointError):
    """A loss or a weight became NaN or infinite during training."""


class GANCollapsed(RuntimeError):
    """A GAN's discriminator won completely (raised by ``CollapseGuard(action="raise")``)."""


class GANCollapseWarning(UserWarning):
    """A GAN's discriminator won completely (the default report of :class:`CollapseGuard`)."""


# --------------------------------------------------------------------------- helpers

def optimizers_of(model) -> dict[str, keras.optimizers.Optimizer]:
    """Every optimizer a model trains with, by attribute name: ``optimizer``, ``d_optimizer``...

    Custom models such as :class:`uvbook.models.gan.GAN` keep theirs in attributes of
    their own; each is listed once, in a fixed order (``optimizer`` first, then by name).
    """
    found: dict[str, keras.optimizers.Optimizer] = {}
    seen: set[int] = set()
    candidates = [("optimizer", getattr(model, "optimizer", None))]
    candidates += sorted(((k, v) for k, v in vars(model).items() if k != "optimizer"),
                         key=lambda kv: kv[0])
    for name, value in candidates:
        if isinstance(value, keras.optimizers.Optimizer) and id(value) not in seen:
            found[name] = value
            seen.add(id(value))
    return found


def _numpy(variable) -> np.ndarray:
    value = variable.numpy() if hasattr(variable, "numpy") else keras.ops.convert_to_numpy(variable)
    return np.asarray(value)


def non_finite_variables(model, arrays: Mapping[str, np.ndarray] | None = None) -> list[str]:
    """Paths of the model's (and its optimizers') float variables holding NaN or inf."""
    if arrays is None:
        pairs = [(v.path, _numpy(v)) for v in model.variables]
        pairs += [(f"{name}/{v.path}", _numpy(v))
                  for name, opt in optimizers_of(model).items() for v in opt.variables]
    else:
        pairs = list(arrays.items())
    return [path for path, a in pairs
            if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a))]


def _learning_rates(model) -> str:
    parts = []
    for name, opt in optimizers_of(model).items():
        try:
            lr = float(_numpy(opt.learning_rate))
        except Exception:  # noqa: BLE001 - a rate we cannot read is simply not quoted
            continue
        parts.append(f"{name} {type(opt).__name__} learning_rate={lr:g}")
    return ", ".join(parts) or "its optimizer's learning rate"


def _finite(value) -> bool:
    try:
        return bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))
    except (TypeError, ValueError):
        return True  # not a number (a string, say): nothing to judge


def _check_folder(folder, name: str = "folder") -> Path:
    if isinstance(folder, bool) or not isinstance(folder, (str, os.PathLike)) or not str(folder):
        raise ValueError(f"{name} must be a path (str or os.PathLike) to a folder; got {folder!r}")
    return Path(folder)


# --------------------------------------------------------------------------- checkpoints

class EpochCheckpoint(keras.callbacks.Callback):
    """Save the whole training state after every epoch; resume from the last one on the next ``fit``.

    Args:
        folder: where the checkpoints live (one per run: :func:`uvbook.train.train_or_load`
            gives each cache key its own). Created when the first epoch ends.
        data: the ``tf.data.Dataset`` passed to ``fit`` (without ``steps_per_epoch``), if it
            reshuffles every epoch: each new iterator over it draws the next shuffle order,
            so on resuming from epoch ``k`` the callback creates as many iterators as the
            uninterrupted run had created by then, and the resumed epochs see the batches
            the uninterrupted run saw. Keras 3's ``fit`` creates two per epoch when the number
            of batches is known (one when an epoch ends, another when the next begins) and
            one otherwise; ``iterators_per_epoch`` overrides that count. Not needed for NumPy
            arrays (Keras' array shuffle repeats the same order every epoch of a ``fit``).
        cumulative: history keys that count from the start of ``fit`` (``"elapsed"``, the
            training time that :class:`uvbook.callbacks.FrechetMonitor` logs): after a
            resume the value restored for the last complete epoch is added to them.
        verbose: print a line when resuming or skipping an unusable checkpoint.

    Put it last among the callbacks, so that it saves what the others wrote into the logs.
    ``restored_epoch`` and ``last_saved_epoch`` count complete epochs (0: none).
    """

    def __init__(self, folder, data=None, cumulative=("elapsed",), verbose: bool = True,
                 iterators_per_epoch: int | None = None):
        super().__init__()
        if iterators_per_epoch is not None and (isinstance(iterators_per_epoch, bool) or not isinstance(
                iterators_per_epoch, numbers.Integral) or iterators_per_epoch < 0):
            raise ValueError(f"iterators_per_epoch must be a non-negative integer or None; got {iterators_per_epoch!r}")
        self.iterators_per_epoch = iterators_per_epoch
        self.folder = _check_folder(folder)
        if data is not None and not hasattr(data, "__iter__"):
            raise ValueError(f"data must be the tf.data.Dataset given to fit (or None); got {type(data).__name__}")
        self.data = data
        self.cumulative = tuple(cumulative)
        self.verbose = verbose
        self.history: dict[str, list[float]] = {}
        self.restored_epoch = 0
        self.last_saved_epoch = 0
        self._restored_history: dict[str, list[float]] = {}

    # -- restoring ---------------------------------------------------------------------
    def checkpoints(self) -> list[tuple[int, Path]]:
        """``(epoch, record path)`` of the checkpoints in ``folder``, newest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := _EPOCH_FILE.match(p.name))]
        return sorted(found, reverse=True)

    def on_train_begin(self, logs=None):
        self.history, self._restored_history = {}, {}
        self.restored_epoch = self.last_saved_epoch = 0
        epochs = (self.params or {}).get("epochs")
        found = self.checkpoints()
        for epoch, record in found:
            try:
                if epochs is not None and epoch > epochs:
                    raise ValueError(f"it is for epoch {epoch}, but this fit runs {epochs} epochs")
                history = self._restore(record)
            except Exception as err:  # noqa: BLE001 - any defect means "do not use it"
                if self.verbose:
                    print(f"uvbook: checkpoint {record} is unusable ({err}); trying an older one")
                continue
            self.restored_epoch = self.last_saved_epoch = epoch
            self.history = {k: list(v) for k, v in history.items()}
            self._restored_history = {k: list(v) for k, v in history.items()}
            self.model._initial_epoch = epoch  # what keras.callbacks.BackupAndRestore sets, too
            if self.data is not None:  # each new iterator draws the next shuffle order
                per_epoch = self.iterators_per_epoch
                if per_epoch is None:
                    per_epoch = 2 if (self.params or {}).get("steps") else 1
                for _ in range(epoch * per_epoch):
                    iter(self.data)
            if self.verbose:
                print(f"uvbook: resuming after epoch {epoch} from the checkpoint in {self.folder}")
            return
        if found and self.verbose:
            print(f"uvbook: no usable checkpoint in {self.folder}; training from the first epoch")

    def _restore(self, record: Path) -> dict[str, list[float]]:
        meta = json.loads(record.read_text(encoding="utf-8"))
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT}")
        arrays_path = record.with_suffix(".npz")
        actual = sha256(arrays_path)
        if actual != meta["sha256"]:
            raise ValueError(f"{arrays_path} has SHA-256 {actual}, its record expects {meta['sha256']}")
        with np.load(arrays_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        model_vars = self.model.variables
        opts = optimizers_of(self.model)
        if sorted(meta["optimizers"]) != sorted(opts):
            raise ValueError(f"it holds optimizers {sorted(meta['optimizers'])}, the model has {sorted(opts)}")
        targets = [(f"model/{i:05d}", v) for i, v in enumerate(model_vars)]
        self._check_arrays(targets, arrays, prefix="model/")
        for name in meta["optimizers"]:
            opt = opts[name]
            if not opt.built:  # a GAN builds its optimizers at compile, Keras model.optimizer at the first step
                if name != "optimizer":
                    raise ValueError(f"the model's {name} is not built, so its state has nowhere to go")
                opt.build(self.model.trainable_variables)  # what Keras' fit does at the first step
            opt_targets = [(f"{name}/{i:05d}", v) for i, v in enumerate(opt.variables)]
            self._check_arrays(opt_targets, arrays, prefix=f"{name}/")
            targets += opt_targets
        for key, variable in targets:  # everything checked: now assign
            variable.assign(arrays[key])
        return meta["history"]

    @staticmethod
    def _check_arrays(targets, arrays, prefix: str) -> None:
        stored = sorted(k for k in arrays if k.startswith(prefix))
        if stored != sorted(k for k, _ in targets):
            raise ValueError(f"it holds {len(stored)} {prefix[:-1]} variables, the model has {len(targets)}")
        for key, variable in targets:
            a = arrays[key]
            if tuple(a.shape) != tuple(variable.shape) or np.dtype(a.dtype) != np.dtype(variable.dtype):
                raise ValueError(f"{key} is {a.dtype}{tuple(a.shape)}, the model's {variable.path} is "
                                 f"{variable.dtype}{tuple(variable.shape)}")

    # -- saving --------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {f"model/{i:05d}": _numpy(v) for i, v in enumerate(self.model.variables)}
        optimizers = {}
        for name, opt in optimizers_of(self.model).items():
            optimizers[name] = {"variables": len(opt.variables)}
            arrays.update({f"{name}/{i:05d}": _numpy(v) for i, v in enumerate(opt.variables)})
        return arrays, optimizers

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        for key in self.cumulative:
            previous = self._restored_history.get(key)
            if previous and key in logs and _finite(previous[-1]):
                logs[key] = float(logs[key]) + float(previous[-1])
        arrays, optimizers = self._state()
        bad = non_finite_variables(self.model, arrays)
        if bad:
            raise TrainingDiverged(divergence_message(
                self.model, epoch, None, f"the weights became non-finite ({_shorten(bad)})", self, self.params))
        for key, value in logs.items():
            try:
                self.history.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                continue
        done = epoch + 1
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays_path = self.folder / f"epoch-{done:04d}.npz"
        record = arrays_path.with_suffix(".json")

        def write_arrays(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_write(arrays_path, write_arrays, suffix=".npz")
        meta = {"format": CHECKPOINT_FORMAT, "epoch": done, "sha256": sha256(arrays_path),
                "optimizers": optimizers, "history": self.history}
        atomic_write(record, lambda tmp: tmp.write_text(json.dumps(meta), encoding="utf-8"), suffix=".json")
        self.last_saved_epoch = done
        for old_epoch, old_record in self.checkpoints():  # the new one is complete: drop the rest
            if old_epoch != done:
                old_record.unlink(missing_ok=True)
                old_record.with_suffix(".npz").unlink(missing_ok=True)

    def on_train_end(self, logs=None):
        history = getattr(self.model, "history", None)
        if self._restored_history and isinstance(history, keras.callbacks.History):
            resumed = history.history
            history.history = {k: list(v) + list(resumed.get(k, [])) for k, v in self._restored_history.items()}
            history.history.update({k: v for k, v in resumed.items() if k not in history.history})
            history.epoch = list(range(len(next(iter(history.history.values()), []))))
        self.model._initial_epoch = None


def _shorten(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def divergence_message(model, epoch: int, step: int | None, what: str,
                       checkpoint: EpochCheckpoint | None = None, params: Mapping | None = None) -> str:
    """The message of :class:`TrainingDiverged`: where, what, the likely cause, what was kept."""
    params = params or {}
    epochs, steps = params.get("epochs"), params.get("steps")
    where = f"epoch {epoch + 1}" + (f" of {epochs}" if epochs else "")
    where += f", step {step}" + (f" of {steps}" if steps else "") if step is not None else ", at its end"
    text = (f"uvbook: training diverged at {where}: {what}. The likely cause is a learning rate too "
            f"high ({_learning_rates(model)}): lower it, e.g. 10 times, and train again.")
    if checkpoint is not None:
        if checkpoint.last_saved_epoch:
            text += (f" The checkpoint of the last complete epoch ({checkpoint.last_saved_epoch}) is kept "
                     f"in {checkpoint.folder}; nothing of the diverged epoch was saved.")
        else:
            text += " No epoch completed, so no checkpoint was written."
    return text


# --------------------------------------------------------------------------- guards

class DivergenceGuard(keras.callbacks.Callback):
    """Raise :class:`TrainingDiverged` at the first step whose training loss or metric is NaN or inf.

    Checks the batch logs (the model's training metrics: ``loss``, or a GAN's ``d_loss``,
    ``g_loss``...) after every step, and at the end of each epoch those same metrics and
    every weight (a step can turn the weights into NaN while its own loss was still
    finite). Values other callbacks add to the epoch logs (``frechet``, which is NaN on
    unscored epochs by design) are not judged. Unlike ``keras.callbacks.TerminateOnNaN``
    it raises, so that :func:`uvbook.train.train_or_load` caches nothing; place it before
    an :class:`EpochCheckpoint` (``checkpoint``, quoted in the message) so that a diverged
    epoch is never saved.
    """

    def __init__(self, checkpoint: EpochCheckpoint | None = None):
        super().__init__()
        self.checkpoint = checkpoint
        self._epoch = 0
        self._keys: set[str] = set()

    def on_train_begin(self, logs=None):
        self._keys = set()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _raise(self, step, what):
        raise TrainingDiverged(divergence_message(self.model, self._epoch, step, what, self.checkpoint,
                                                  self.params))

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self._keys.update(logs)
        bad = {k: v for k, v in logs.items() if not _finite(v)}
        if bad:
            shown = ", ".join(f"{k} = {float(np.asarray(v)):g}" for k, v in bad.items())
            self._raise(batch + 1, f"{shown} (the mean of this epoch's steps so far)")

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = epoch
        logs = logs or {}
        bad = {k: logs[k] for k in self._keys if k in logs and not _finite(logs[k])}
        if bad:
            self._raise(None, ", ".join(f"{k} = {float(np.asarray(v)):g}" for k, v in bad.items()))
        weights = non_finite_variables(self.model)
        if weights:
            self._raise(None, f"the weights became non-finite ({_shorten(weights)}) while the losses were finite")


class CollapseGuard(keras.callbacks.Callback):
    """Report a GAN whose discriminator has won completely: ``d_fake`` near 0 for many steps.

    ``d_fake`` in the batch logs is the running mean over the epoch; the guard recovers each
    step's own value from consecutive running means. When it stays below ``threshold`` for
    ``patience`` consecutive steps, the generator's gradient carries almost no signal (with
    the minimax loss it vanishes) and training has collapsed. ``action="warn"`` (default)
    issues a :class:`GANCollapseWarning` once and keeps training; ``"raise"`` stops with
    :class:`GANCollapsed`. Either way the epoch logs (hence the history) get ``flag``
    (``"d_collapsed"``): 1.0 for an epoch during which the condition held, else 0.0.
    Meant for :class:`~uvbook.models.gan.GAN`, whose ``d_fake`` is a probability; a WGAN
    critic's scores are not, so :func:`uvbook.recipes.train_gan` does not add it there.
    """

    ACTIONS = ("warn", "raise")

    def __init__(self, metric: str = "d_fake", threshold: float = 0.01, patience: int = 100,
                 action: str = "warn", flag: str = "d_collapsed"):
        super().__init__()
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"metric must be the name of a logged metric such as 'd_fake'; got {metric!r}")
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 < threshold < 1:
            raise ValueError(f"threshold must be a probability in (0, 1); got {threshold!r}")
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 1:
            raise ValueError(f"patience must be a positive integer (consecutive steps); got {patience!r}")
        if action not in self.ACTIONS:
            raise ValueError(f"action must be one of {self.ACTIONS}; got {action!r}")
        self.metric, self.threshold, self.patience = metric, float(threshold), int(patience)
        self.action, self.flag = action, flag
        self.collapsed_at: tuple[int, int] | None = None  # (epoch, step), 1-based, first detection
        self._run = 0
        self._previous = 0.0
        self._epoch = 0
        self._epoch_collapsed = False

    def on_train_begin(self, logs=None):
        self._run, self.collapsed_at = 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._previous, self._epoch_collapsed = epoch, 0.0, False

    def on_train_batch_end(self, batch, logs=None):
        if not logs or self.metric not in logs:
            return
        mean = float(np.asarray(logs[self.metric]))
        value = (batch + 1) * mean - batch * self._previous  # this step's own value
        self._previous = mean
        self._run = self._run + 1 if math.isfinite(value) and value < self.threshold else 0
        if self._run < self.patience:
            return
        self._epoch_collapsed = True
        if self.collapsed_at is not None:
            return
        self.collapsed_at = (self._epoch + 1, batch + 1)
        message = (f"uvbook: the GAN's discriminator has won completely: mean D(G(z)) ({self.metric}) stayed "
                   f"below {self.threshold:g} for {self.patience} consecutive steps (epoch {self._epoch + 1}, "
                   f"step {batch + 1}). The generator then gets almost no gradient (none with the minimax "
                   "loss) and training has collapsed. Try the non-saturating loss, a lower discriminator "
                   "learning rate, one-sided label smoothing (real_label=0.9) or WGAN-GP.")
        if self.action == "raise":
            raise GANCollapsed(message)
        warnings.warn(message, GANCollapseWarning, stacklevel=2)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[self.flag] = 1.0 if self._epoch_collapsed else 0.0


def resumable(folder=None, data=None) -> list[keras.callbacks.Callback]:
    """The callbacks a uvbook helper passes to ``fit``: ``[DivergenceGuard, EpochCheckpoint]``.

    ``folder`` is the backup folder :func:`uvbook.train.train_or_load` gives the ``train``
    callable (``None``: no checkpoints, the divergence guard only); ``data`` is the
    reshuffling ``tf.data.Dataset`` given to ``fit``, if any (see :class:`EpochCheckpoint`).
    Put them after every other callback.
    """
    if folder is None:
        return [DivergenceGuard()]
    checkpoint = EpochCheckpoint(folder, data=data)
    return [DivergenceGuard(checkpoint), checkpoint]


# --------------------------------------------------------------------------- monitors
# Callbacks that measure while a model trains; they write into the epoch's logs, hence the history.

class SampleGrid(keras.callbacks.Callback):
    """Draw the generator's images for fixed noise every ``every`` epochs, and keep them.

    The same noise at every epoch shows how each sample evolves. ``snapshots`` holds
    ``(epoch, images in [0, 1])`` pairs; ``show=False`` only records them.
    """

    def __init__(self, noise, every: int = 1, ncols: int = 10, show: bool = True, size: float = 0.8):
        super().__init__()
        self.noise = np.asarray(noise, dtype=np.float32)
        if self.noise.ndim != 2:
            raise ValueError(f"noise must have shape (n, latent_dim); got {self.noise.shape}")
        self.every = check_positive_int(every, "every")
        self.ncols = check_positive_int(ncols, "ncols")
        self.show = show
        self.size = size
        self.snapshots: list[tuple[int, np.ndarray]] = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        images = self.model.generate_from(self.noise)
        self.snapshots.append((epoch + 1, images))
        if self.show:
            image_grid(images, ncols=self.ncols, size=self.size,
                       suptitle=f"epoch {epoch + 1}: the same noise every epoch")
            plt.show()


class _TimedMonitor(keras.callbacks.Callback):
    """A monitor: after every epoch it writes ``elapsed``, the training seconds so far without
    the monitor's own time (the x-axis of a quality-against-time curve), and whatever
    :meth:`measure` adds to the epoch's logs, hence to the training history."""

    _start = _spent = 0.0

    def on_train_begin(self, logs=None):
        self._start, self._spent = time.perf_counter(), 0.0

    def measure(self, epoch: int, logs: dict) -> None:
        """Add this monitor's measurements of the model after ``epoch`` (0-based) to ``logs``."""
        raise NotImplementedError

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        now = time.perf_counter()
        logs["elapsed"] = now - self._start - self._spent
        self.measure(epoch, logs)
        self._spent += time.perf_counter() - now


class FrechetMonitor(_TimedMonitor):
    """Add ``logs["elapsed"]`` (training seconds so far, not counting this monitor) and, when given, ``logs["frechet"]``.

    ``frechet`` is ``distance(images)`` for ``n`` images generated from fixed noise every
    ``every`` epochs (``nan`` on the others); pass e.g.
    ``lambda x: uvbook.evaluate.domain_frechet_distance(classifier, x, real)``. For a GAN that
    keeps a moving average of its generator (``ema_decay``), ``frechet`` scores the average
    and ``frechet_raw`` the generator itself. The keys land in the ``History`` (it runs after
    user callbacks), hence in ``train_or_load``'s cache.
    """

    def __init__(self, distance: Callable[[np.ndarray], float] | None = None, n: int = 1000,
                 every: int = 1, seed: int = 1):
        super().__init__()
        self.distance = distance
        self.n = check_positive_int(n, "n")
        self.every = check_positive_int(every, "every")
        self.seed = seed

    def measure(self, epoch: int, logs: dict) -> None:
        if self.distance is not None:
            averaged = getattr(self.model, "ema_generator", None) is not None
            keys = {"frechet": None, "frechet_raw": False} if averaged else {"frechet": None}
            for key, which in keys.items():
                if (epoch + 1) % self.every == 0:
                    options = {"averaged": which} if averaged else {}
                    images = self.model.generate(self.n, seed=self.seed, **options)
                    logs[key] = float(self.distance(images))
                else:
                    logs[key] = float("nan")


class NeighbourMonitor(_TimedMonitor):
    """After every ``every`` epochs, how well the model's representation recognises held-out images.

    The model must have an ``encode(images)`` method (:class:`uvbook.models.contrastive.SimCLR`
    has). Each image of ``images`` is classified by the majority label of its ``k`` nearest
    neighbours among the *other* monitored images (leave-one-out, Euclidean distance on the
    representation scaled to unit length), and the accuracy is written to the epoch's logs
    as ``name`` (NaN on the epochs in between), so that it lands in the training history,
    together with ``logs["elapsed"]``: the training seconds so far, not counting the
    monitor's own (the x-axis of a quality-against-time curve). The labels are used for this
    report only: nothing of it reaches the loss. Pass images that training does not see.
    """

    def __init__(self, images, labels, k: int = 5, every: int = 1, name: str = "knn_accuracy"):
        super().__init__()
        self.labels = check_labels(labels, "labels")
        self.images = check_images(images, "images")
        if len(self.images) != len(self.labels):
            raise ValueError(f"labels must have one label per image ({len(self.images)}); got {len(self.labels)}")
        self.k = check_positive_int(k, "k")
        if self.k >= len(self.labels):
            raise ValueError(f"k must be smaller than the number of monitored images ({len(self.labels)}); got {k}")
        self.every = check_positive_int(every, "every")
        self.name = name

    def accuracy(self) -> float:
        """The leave-one-out k-NN accuracy of the model's current representation."""
        return leave_one_out_knn_accuracy(self.model.encode(self.images), self.labels, k=self.k, unit=True)

    def measure(self, epoch: int, logs: dict) -> None:
        due = (epoch + 1) % self.every == 0 or epoch + 1 == self.params.get("epochs")
        logs[self.name] = self.accuracy() if due else float("nan")   # NaN keeps the history aligned


class ClusterMonitor(_TimedMonitor):
    """After every epoch, how well a clustering model's clusters of held-out examples match their classes.

    The model must have a ``cluster(features)`` method (:class:`uvbook.models.scan.SCAN` has).
    Its clusters of ``features`` are scored against ``labels`` by the clustering accuracy
    and the NMI (:func:`uvbook.evaluate.cluster_accuracy`, :func:`uvbook.evaluate.nmi`),
    written to the epoch's logs as ``cluster_acc`` and ``cluster_nmi`` together with
    ``elapsed``, the training seconds so far without the monitor's own, so that they land in
    the training history. The labels serve this report only: nothing of it reaches the loss.
    """

    def __init__(self, features, labels):
        super().__init__()
        self.labels = check_labels(labels, "labels")
        self.features = np.asarray(features, dtype=np.float32)
        if self.features.ndim != 2 or len(self.features) != len(self.labels):
            raise ValueError(f"features must be a 2-D array with one row per label ({len(self.labels)}); "
                             f"got shape {self.features.shape}")

    def measure(self, epoch: int, logs: dict) -> None:
        clusters = self.model.cluster(self.features)
        logs["cluster_acc"] = cluster_accuracy(self.labels, clusters)
        logs["cluster_nmi"] = nmi(self.labels, clusters)


class WatchAccuracy(keras.callbacks.Callback):
    """After every epoch, the accuracy of the model's classifier on held-out labelled images, and the
    training seconds so far (``watch_accuracy`` and ``elapsed`` in the logs and the history).
    ``classifier``: the network that maps the images to logits, when it is not the model or its
    ``classifier`` attribute (for example a classifier of features behind a frozen encoder)."""

    def __init__(self, x, y, batch_size: int = 1000, classifier: keras.Model | None = None):
        super().__init__()
        if classifier is not None and not isinstance(classifier, keras.Model):
            raise ValueError(f"classifier must be a keras.Model or None; got {type(classifier).__name__}")
        self.classifier = classifier
        self.x = check_images(x, "x")
        self.y = check_labels(y, "y", length=len(self.x))
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        net = self.classifier or getattr(self.model, "classifier", self.model)
        pred = predict_logits(net, self.x, self.batch_size).argmax(axis=1)
        if logs is not None:
            logs["watch_accuracy"] = float(np.mean(pred == self.y))
            logs["elapsed"] = time.perf_counter() - self.start


class EpochLog(keras.callbacks.Callback):
    """One line an epoch: the epoch, every logged number, the seconds spent and an estimate of those left.

    The recipes of :mod:`uvbook.recipes` train with Keras' own output off and this on (when
    ``verbose``), so that a reader running a chapter in Jupyter sees each model progress,
    and the built site keeps a few lines rather than hundreds of progress bars::

        fashion_vae  epoch 3/8  loss 251.2  kl 24.71  val_loss 254.9  |  41 s spent, about 68 s left

    The estimate assumes the remaining epochs take as long as the mean of those done.
    Keys whose value is NaN this epoch (a monitor that reports every few epochs) are left out.
    """

    def __init__(self, name: str, print_fn: Callable[[str], None] = print):
        super().__init__()
        self.name = name
        self.print_fn = print_fn
        self._start = 0.0
        self._first_epoch = 0

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()
        self._first_epoch = -1

    def on_epoch_end(self, epoch, logs=None):
        if self._first_epoch < 0:
            self._first_epoch = epoch  # a resumed run starts at a later epoch
        done = epoch + 1 - self._first_epoch
        total = self.params.get("epochs") or epoch + 1
        spent = time.perf_counter() - self._start
        left = spent / done * (total - epoch - 1)
        numbers = "  ".join(f"{k} {float(v):.4g}" for k, v in (logs or {}).items()
                            if k != "elapsed" and _finite(v))
        self.print_fn(f"{self.name}  epoch {epoch + 1}/{total}  {numbers}  |  "
                      f"{spent:.0f} s spent, about {left:.0f} s left")
