"""Training-speed benchmark: throughput and time-to-quality of uvbook's models against the tutorials'.

It lives outside the teaching package (it imports uvbook; uvbook never imports it).
``python -m benchmarks [--quick] [--out _build/bench.json]`` trains, in one process and on
the same Fashion-MNIST data, uvbook's own models exactly as the chapters build and feed
them, and small re-implementations *in the style of* the official tutorials:

=====================  ==================================================================
family                 runners
=====================  ==================================================================
``vae``                uvbook's conv VAE (:data:`uvbook.recipes.FASHION_VAE_CONFIG`,
                       batch 128, dynamic binarisation, ``make_pipeline``); a VAE in the
                       style of the TensorFlow tutorial "Convolutional Variational
                       Autoencoder" (custom ``tf.function`` loop, batch 32, Adam 1e-4,
                       single-sample Monte Carlo ELBO); a VAE in the style of the keras.io
                       example "Variational AutoEncoder" (``fit`` with a custom
                       ``train_step``, batch 128, summed BCE + KL). Both references use
                       uvbook's latent size (16; the tutorials use 2) so that their
                       qualities compare.
``dcgan``              uvbook's DCGAN (:func:`uvbook.recipes.build_fashion_dcgan`,
                       :data:`~uvbook.recipes.DCGAN_CONFIG`, batch 32); a DCGAN in the
                       style of the TensorFlow tutorial "Deep Convolutional Generative
                       Adversarial Network" (batch 256, Adam 1e-4 for both, images in
                       [-1, 1]).
``ae``                 Chapter 3's ``conv_ae_32`` (:data:`~uvbook.recipes.CHAPTER3_MODELS`,
                       fed NumPy arrays through ``fit`` as Chapter 3 does) and the same
                       model fed by ``make_pipeline`` (the ``tf.data`` fast path).
``wgan``               Chapter 4's WGAN-GP (the article's ReLU MLPs, 5 critic steps of 16
                       images, Adam(2e-4, 0.5, 0.9)), and in full mode the same with XLA
                       (``jit_compile=True``), the one fast path that won on throughput.
=====================  ==================================================================

Quality metrics, all on held-out Fashion-MNIST *test* images, lower is better:

* VAE: minus the ELBO in nats per image on test images binarised once
  (:func:`uvbook.models.vae.binarize`, seed 0), one reparameterised sample per image
  with fixed noise (the same for every model) and the KL in closed form;
* GAN: the Fréchet distance on the domain classifier's features
  (:func:`uvbook.evaluate.domain_frechet_distance`) of ``n_frechet`` samples from fixed
  noise to the whole test set;
* AE: test MSE per pixel.

How it measures. Every runner has its own *training clock*: only its training steps
count, never its evaluations (timed and reported apart), and its first step, which
traces the graph, is timed apart too (``trace_s``) and left off the clock, as is any later
step that traces again (``retrace_s``; a tutorial's ``tf.function`` retraces for a partial
last batch) and the part of any step beyond :data:`SPIKE_FACTOR` times the runner's median
step (``spike_s``: stalls of the shared machine, not the model's cost). Runners of
one family are *interleaved*: each trains for a slice of about ``slice_s`` seconds in
turn, so that the load of a shared machine falls on all of them alike, and each is
evaluated whenever its clock passes a point of a fixed schedule (the same for all:
a geometric start, then every tenth of the budget). Throughput is images per second
of training clock. A reference trains for ``budget`` seconds; its *final quality* is
its last evaluation; ``reference_seconds`` is the first evaluation at which it was
already that good, ``uvbook_seconds`` the first evaluation at which uvbook was at
least as good (an upper bound: the truth lies between it and the evaluation before),
and the time-to-quality ratio is ``reference_seconds / uvbook_seconds`` (above 1: uvbook
reaches the reference's quality sooner). A target uvbook does not reach within its budget gives the ratio
``reference_seconds / budget`` with ``reached = False``, an upper bound.

Then, per uvbook model, the usual fast paths are measured as throughput
ratios against the default (graph mode, float32): XLA (``jit_compile=True``), mixed
precision (``mixed_bfloat16``) and other batch sizes, alternating the variants in rounds;
a variant's ratio is the median over rounds of its rate over the default's in the same
round (the best round against the best round is reported too).
``--candidates`` also races uvbook's VAE at batch 64 and 32, its DCGAN at batch 64 and its
AE at batch 256 (same classes and learning rates) against the same baselines, for
time-to-quality.

Sizes: ``--quick`` (or ``UVBOOK_QUICK=1``) trains 2,048 images for a few seconds per runner
and skips the variants (about 40 s of CPU; 60-75 s wall measured on the 2-core CI machine
under load 4-5); full mode trains on all 60,000 images with budgets of 100 s (VAE, DCGAN),
30 s (AE) and 40 s (WGAN-GP) per runner: 24-30 minutes measured on that machine under load
2.5-4, of which about 11 are training clocks (stalls, tracing and evaluations are off the
clocks, not off the wall). Nothing here changes uvbook's models or the chapters' cached results.

The numbers go into the results record (:func:`uvbook.results.record`, keys ``bench.*``)
and, in full detail, into a JSON file (``--out``, default ``_build/bench.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from uvbook import results
from uvbook._io import atomic_write
from uvbook.data import load_dataset, make_pipeline
from uvbook.evaluate import domain_features, domain_frechet_distance
from uvbook.models.autoencoder import Autoencoder
from uvbook.models.classifier import build_cnn_classifier
from uvbook.models.gan import WGANGP, build_mlp_discriminator, build_mlp_generator
from uvbook.models.vae import binarize, build_vae
from uvbook.modes import is_quick, set_seed
from uvbook.recipes import (CHAPTER3_MODELS, CHAPTER3_TRAINING, DCGAN_CONFIG, FASHION_VAE_CONFIG, build_fashion_dcgan,
                            domain_classifier, fashion_vae_sizes)

FAMILIES = ("vae", "dcgan", "ae", "wgan")
#: A training step slower than this many times the runner's median step (of its last 50) is
#: counted at that cap: the excess is a stall, not the model's cost. Seen on the 2-core CI
#: machine: single steps of 17-58 s among steps of 0.02-0.1 s, always the first step of a new
#: epoch's iterator, in some runners and epochs only (a fresh process creates those iterators
#: in 0.05-0.6 s). The excess is reported (``spike_s``, ``stall_events``).
SPIKE_FACTOR = 10.0
PRECISIONS = ("float32", "mixed_bfloat16")
DEFAULT_OUT = Path("_build") / "bench.json"

#: What each reference re-implements (tutorial names; they are re-implementations in the
#: tutorials' style, written here, not the tutorials' code).
REFERENCES = {
    "cvae_tutorial": "in the style of the TensorFlow tutorial 'Convolutional Variational Autoencoder' "
                     "(custom tf.function loop, batch 32, Adam 1e-4, single-sample Monte Carlo ELBO "
                     "log p(x|z) + log p(z) - log q(z|x); latent 16 instead of the tutorial's 2; trained "
                     "on one fixed Bernoulli binarisation of the training images, the tutorial "
                     "thresholds at 0.5 once)",
    "kerasio_vae": "in the style of the keras.io example 'Variational AutoEncoder' (fit with a custom "
                   "train_step, batch 128, Adam 1e-3, loss = BCE summed over pixels + KL; latent 16 "
                   "instead of the example's 2; trained on the same fixed binarisation as the CVAE "
                   "reference)",
    "dcgan_tutorial": "in the style of the TensorFlow tutorial 'Deep Convolutional Generative Adversarial "
                      "Network' (batch 256, Adam 1e-4 for both, noise 100, generator Dense 7x7x256 -> "
                      "Conv2DTranspose 128, 64, 1 with BN + LeakyReLU and tanh, discriminator Conv 64, "
                      "128 stride 2 + LeakyReLU + Dropout 0.3 -> Dense 1, images in [-1, 1])",
}

#: Sizes by mode. ``budget`` is each runner's training-clock budget in seconds.
SIZES: dict[str, dict[str, Any]] = {
    "quick": {"n_train": 2048, "n_test": 300, "n_frechet": 100, "slice_s": 0.5,
              "budget": {"vae": 1.5, "dcgan": 1.5, "ae": 1.0, "wgan": 1.0},
              "ae_target": 0.1, "wgan_target": None, "variants": False, "variant_rounds": 2,
              "variant_slice_s": 0.5, "classifier": "domain", "evals": 2, "extra_runners": False},
    "full": {"n_train": None, "n_test": 5000, "n_frechet": 2000, "slice_s": 3.0,
             "budget": {"vae": 100.0, "dcgan": 100.0, "ae": 30.0, "wgan": 40.0},
             "ae_target": 0.013, "wgan_target": 100.0, "variants": True, "variant_rounds": 4,
             "variant_slice_s": 2.5, "classifier": "domain", "evals": 10, "extra_runners": True},
}

METRICS = {"vae": "test -ELBO (nats/image, binarised test images)",
           "dcgan": "Fréchet distance (domain-classifier features) to the test set",
           "ae": "test MSE per pixel",
           "wgan": "Fréchet distance (domain-classifier features) to the test set"}


def _log(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------- settings

@dataclasses.dataclass
class Settings:
    """What one benchmark run does; :func:`settings_for` fills it from the mode and arguments."""

    mode: str = "full"
    families: tuple[str, ...] = FAMILIES
    budget: dict[str, float] = dataclasses.field(default_factory=dict)
    n_train: int | None = None
    n_test: int = 5000
    n_frechet: int = 2000
    slice_s: float = 3.0
    ae_target: float | None = None
    wgan_target: float | None = None
    variants: bool = True
    variant_rounds: int = 3
    variant_slice_s: float = 4.0
    classifier: str = "domain"
    evals: int = 10
    candidates: bool = False
    extra_runners: bool = True
    races: bool = True
    seed: int = 0


def _positive_number(value, name: str) -> float:
    """``value`` as a float if it is a finite number > 0; else ValueError naming it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return number


def _positive_int(value, name: str) -> int:
    try:
        number = int(value)
        ok = not isinstance(value, bool) and float(value) == number and number > 0
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return number


def settings_for(quick: bool | None = None, families: Sequence[str] | str | None = None,
                 budget: float | None = None, **overrides) -> Settings:
    """The settings of a run: the mode's :data:`SIZES`, then the given overrides.

    Args:
        quick: quick mode (default: ``UVBOOK_QUICK``).
        families: which of :data:`FAMILIES` to run (a list or a comma-separated string).
        budget: training seconds of every runner, for every family (default: the mode's).
        overrides: any other field of :class:`Settings` (``n_test``, ``n_frechet``...).

    Raises:
        ValueError: an unknown family or field, or a value out of range (the message
            names what was expected and what was given).
    """
    mode = "quick" if (is_quick() if quick is None else quick) else "full"
    sizes = SIZES[mode]
    s = Settings(mode=mode, budget=dict(sizes["budget"]),
                 **{k: v for k, v in sizes.items() if k != "budget" and k in Settings.__dataclass_fields__})
    if families is not None:
        names = [f.strip() for f in families.split(",")] if isinstance(families, str) else list(families)
        bad = [f for f in names if f not in FAMILIES]
        if not names or bad:
            raise ValueError(f"families must be a non-empty selection of {FAMILIES}; got {families!r}")
        s.families = tuple(dict.fromkeys(names))
    if budget is not None:
        b = _positive_number(budget, "budget (training seconds per runner)")
        s.budget = {f: b for f in FAMILIES}
    for key, value in overrides.items():
        if key not in Settings.__dataclass_fields__ or key in ("mode", "families", "budget"):
            fields = sorted(set(Settings.__dataclass_fields__) - {"mode", "families", "budget"})
            raise ValueError(f"unknown setting {key!r}; expected one of {fields}")
        if value is None and key in ("n_train", "ae_target", "wgan_target"):
            setattr(s, key, None)
        elif key in ("n_train", "n_test", "n_frechet", "variant_rounds", "evals"):
            setattr(s, key, _positive_int(value, key))
        elif key in ("slice_s", "variant_slice_s", "ae_target", "wgan_target"):
            setattr(s, key, _positive_number(value, key))
        elif key in ("variants", "candidates", "extra_runners", "races"):
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be True or False; got {value!r}")
            setattr(s, key, value)
        elif key == "classifier":
            if value not in ("domain", "untrained"):
                raise ValueError(f"classifier must be 'domain' (the cached domain classifier) or "
                                 f"'untrained' (random features, for tests); got {value!r}")
            s.classifier = value
        elif key == "seed":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"seed must be a non-negative integer; got {value!r}")
            s.seed = value
    if s.n_frechet < 2:
        raise ValueError(f"n_frechet must be at least 2 (a covariance needs two samples); got {s.n_frechet}")
    return s


# --------------------------------------------------------------------------- data

@dataclasses.dataclass
class BenchData:
    """The arrays every runner shares, loaded once."""

    x_train: np.ndarray          # grey, [0, 1], (N, 28, 28, 1)
    x_train_fixed_bin: np.ndarray  # one fixed Bernoulli draw (the references' training data)
    x_test: np.ndarray           # grey test subset
    x_test_bin: np.ndarray       # binarised once with seed 0 (the VAE metric's data)
    classifier: Any              # the domain classifier (features layer "features")
    test_features: np.ndarray    # its features of the whole test set
    real_floor: float            # Fréchet distance of n_frechet real training images to the test set


def load_data(s: Settings, classifier=None) -> BenchData:
    """Fashion-MNIST for the run (``n_train`` training images, ``n_test`` test images)."""
    x_train, _ = load_dataset("fashion_mnist", "train", n=s.n_train)
    x_test_all, _ = load_dataset("fashion_mnist", "test")
    x_test, _ = load_dataset("fashion_mnist", "test", n=min(s.n_test, len(x_test_all)))
    if classifier is None:
        classifier = _classifier(s)
    test_features = domain_features(classifier, x_test_all if s.mode == "full" else x_test)
    rng = np.random.default_rng(s.seed + 7)
    real = x_train[rng.choice(len(x_train), size=min(s.n_frechet, len(x_train)), replace=False)]
    return BenchData(x_train=x_train, x_train_fixed_bin=binarize(x_train, seed=1), x_test=x_test,
                     x_test_bin=binarize(x_test, seed=0), classifier=classifier,
                     test_features=test_features,
                     real_floor=domain_frechet_distance(classifier, real, test_features))


def _classifier(s: Settings):
    if s.classifier == "domain":
        return domain_classifier(verbose=False)
    set_seed(0)
    return build_cnn_classifier(num_classes=10, width=8)


# --------------------------------------------------------------------------- runners

class Runner:
    """One model in training: a step function, an evaluation, and its own training clock.

    ``step()`` trains on one batch and returns the number of training images it used;
    ``evaluate()`` returns the quality metric (lower is better). ``tracing_count()``, when
    given, counts the traces of the compiled step: a later step that traces again (a
    partial last batch given to a ``tf.function`` without relaxed shapes) is timed apart
    (``retrace_s``) and left off the training clock, like the first step.
    """

    def __init__(self, name: str, label: str, family: str, batch_size: int,
                 step: Callable[[], int], evaluate: Callable[[], float], source: str = "uvbook",
                 tracing_count: Callable[[], int] | None = None):
        self.name, self.label, self.family, self.source = name, label, family, source
        self.batch_size = batch_size
        self._step, self._evaluate = step, evaluate
        self._tracing_count = tracing_count or (lambda: 0)
        self.clock = 0.0          # training seconds, without the first step, retraces and evaluations
        self.trace_s = math.nan   # the first step (tracing included)
        self.retraces = 0         # later steps that traced again
        self.retrace_s = 0.0
        self.steps = 0
        self.images = 0
        self.untimed_images = 0   # images of the steps left off the clock
        self.eval_s = 0.0
        self.next_eval = 0
        self.spike_factor = SPIKE_FACTOR
        self.spikes = 0           # steps slower than spike_factor x the median step (a shared machine's stalls)
        self.spike_s = 0.0        # their excess over that cap, left off the clock
        self._recent: list[float] = []
        self.stall_events: list[tuple[int, float]] = []  # (step number, its wall seconds)
        self.history: list[tuple[float, int, float, float]] = []  # (clock, steps, metric, eval seconds)

    def warm_up(self) -> None:
        start = time.perf_counter()
        size = self._step()
        self.trace_s = time.perf_counter() - start
        self.images += size
        self.untimed_images += size
        self.steps += 1

    def train_until(self, clock: float) -> None:
        """Train whole steps until the training clock reaches ``clock``."""
        while self.clock < clock:
            traced = self._tracing_count()
            start = time.perf_counter()
            size = self._step()
            spent = time.perf_counter() - start
            self.steps += 1
            self.images += size
            if self._tracing_count() > traced:
                self.retraces += 1
                self.retrace_s += spent
                self.untimed_images += size
                continue
            if len(self._recent) >= 10:
                cap = self.spike_factor * float(np.median(self._recent))
                if spent > cap:
                    self.spikes += 1
                    self.spike_s += spent - cap
                    self.stall_events.append((self.steps, spent))
                    spent = cap
            self._recent = self._recent[-49:] + [spent]
            self.clock += spent

    def evaluate(self) -> float:
        start = time.perf_counter()
        value = float(self._evaluate())
        spent = time.perf_counter() - start
        self.eval_s += spent
        self.history.append((self.clock, self.steps, value, spent))
        return value

    @property
    def images_per_s(self) -> float:
        return (self.images - self.untimed_images) / self.clock if self.clock > 0 else math.nan

    def summary(self) -> dict[str, Any]:
        return {"label": self.label, "source": self.source, "batch_size": self.batch_size,
                "images_per_s": self.images_per_s, "trace_s": self.trace_s, "retraces": self.retraces,
                "retrace_s": self.retrace_s, "spikes": self.spikes, "spike_s": self.spike_s,
                "stall_events": [list(e) for e in self.stall_events[:50]],
                "train_s": self.clock, "eval_s": self.eval_s,
                "steps": self.steps, "images": self.images,
                "final_metric": self.history[-1][2] if self.history else math.nan,
                "history": [list(h) for h in self.history]}


class _Epochs:
    """Batches from a fresh iterator every epoch (as ``fit`` makes one per epoch)."""

    def __init__(self, dataset, n: int, batch_size: int):
        self.dataset, self.n, self.batch_size = dataset, n, batch_size
        self.steps_per_epoch = math.ceil(n / batch_size)
        self.iterator = None
        self.position = self.steps_per_epoch

    def next_iterator(self) -> tuple[Any, int]:
        """The iterator to pull the next batch from, and that batch's size."""
        if self.position >= self.steps_per_epoch:
            self.iterator, self.position = iter(self.dataset), 0
        size = min(self.batch_size, self.n - self.position * self.batch_size)
        self.position += 1
        return self.iterator, size


def _keras_tracing_count(model) -> Callable[[], int]:
    """How often ``model.train_function`` has traced (0 before it exists)."""
    def count() -> int:
        fn = getattr(model, "train_function", None)
        get = getattr(fn, "experimental_get_tracing_count", None)
        return int(get()) if get else 0
    return count


def _keras_step(model, dataset, n: int, batch_size: int) -> Callable[[], int]:
    """One step of ``model.fit``'s own compiled train function, on ``dataset``'s batches.

    The first call runs ``fit`` on one batch (which builds the optimizer and traces the
    function exactly as ``fit`` does); later calls call ``model.train_function`` directly
    with a per-epoch iterator, which is ``fit``'s inner loop without its callbacks.
    """
    epochs = _Epochs(dataset, n, batch_size)
    state = {"first": True}

    def step() -> int:
        if state["first"]:
            state["first"] = False
            with warnings.catch_warnings():  # "input ran out of data": one batch is what we ask for
                warnings.simplefilter("ignore")
                model.fit(dataset.take(1), epochs=1, verbose=0)
            return min(batch_size, n)
        iterator, size = epochs.next_iterator()
        model.train_function(iterator)
        return size

    return step


def _fn_step(train_step: Callable, dataset, n: int, batch_size: int) -> Callable[[], int]:
    """One call of a tutorial's ``@tf.function`` ``train_step(batch)``, epoch by epoch."""
    epochs = _Epochs(dataset, n, batch_size)

    def step() -> int:
        iterator, size = epochs.next_iterator()
        train_step(next(iterator))
        return size

    return step


def _numpy_fit_dataset(x: np.ndarray, batch_size: int):
    """The ``tf.data`` pipeline ``fit(x, batch_size=..., shuffle=True)`` makes from a NumPy array."""
    try:
        from keras.src.trainers.data_adapters import get_data_adapter

        return get_data_adapter(x, batch_size=batch_size, shuffle=True).get_tf_dataset()
    except Exception:  # noqa: BLE001 - a Keras without that internal: the plain equivalent
        return tf.data.Dataset.from_tensor_slices(x).shuffle(len(x)).batch(batch_size).prefetch(tf.data.AUTOTUNE)


@contextlib.contextmanager
def _precision(policy: str):
    """Build models under a Keras dtype policy, then restore the previous one."""
    if policy not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {policy!r}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# ----- evaluators

def _vae_evaluator(encode: Callable, log_likelihood: Callable, data: BenchData, latent_dim: int,
                   batch: int = 1000) -> Callable[[], float]:
    """Minus the ELBO, nats per image, on ``data.x_test_bin`` with fixed noise.

    ``encode(x) -> (mean, log_var)``; ``log_likelihood(x, z) -> (B,)`` summed over pixels.
    The KL is the closed form; the noise ``eps`` is the same for every model.
    """
    eps = np.random.default_rng(12345).standard_normal((len(data.x_test_bin), latent_dim)).astype(np.float32)

    @tf.function(reduce_retracing=True)
    def elbo(x, e):
        mean, log_var = encode(x)
        mean, log_var = tf.cast(mean, tf.float32), tf.cast(log_var, tf.float32)
        z = mean + tf.exp(0.5 * log_var) * e
        kl = 0.5 * tf.reduce_sum(tf.square(mean) + tf.exp(log_var) - 1.0 - log_var, axis=-1)
        return tf.cast(log_likelihood(x, z), tf.float32) - kl

    def evaluate() -> float:
        x = data.x_test_bin
        total = sum(float(tf.reduce_sum(elbo(x[i:i + batch], eps[i:i + batch]))) for i in range(0, len(x), batch))
        return -total / len(x)

    return evaluate


def _frechet_evaluator(generate: Callable[[], np.ndarray], data: BenchData) -> Callable[[], float]:
    return lambda: domain_frechet_distance(data.classifier, generate(), data.test_features)


def _mse_evaluator(model, data: BenchData, batch: int = 1000) -> Callable[[], float]:
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def evaluate() -> float:
        x = data.x_test
        sq = sum(float(tf.reduce_sum(tf.square(tf.cast(forward(x[i:i + batch]), tf.float32) - x[i:i + batch])))
                 for i in range(0, len(x), batch))
        return sq / x.size

    return evaluate


# ----- uvbook's models, as the chapters build and feed them

@dataclasses.dataclass(frozen=True)
class Variant:
    """A fast-path setting measured against uvbook's default (graph mode, float32, the chapter's batch)."""

    name: str = "default"
    jit_compile: bool = False
    precision: str = "float32"
    batch_size: int | None = None   # None: the chapter's
    pipeline: str | None = None     # AE only: "numpy" (Chapter 3's fit on arrays) or "tfdata"


def _runner_name(base: str, v: Variant) -> str:
    """``base`` for the default variant, else ``base_<variant name as an identifier>``."""
    if v.name == "default":
        return base
    slug = "_".join("".join(c if c.isalnum() else " " for c in v.name.lower()).split())
    return f"{base}_{slug}"


def uvbook_vae(data: BenchData, v: Variant = Variant()) -> Runner:
    """Chapter 5's conv VAE: ``build_vae(**FASHION_VAE_CONFIG)``, ``make_pipeline`` batches of 128."""
    cfg = FASHION_VAE_CONFIG
    bs = v.batch_size or fashion_vae_sizes()["batch_size"]
    with _precision(v.precision):
        set_seed(0)
        vae = build_vae(seed=0, name="bench_vae", **cfg)
    if v.jit_compile:
        vae.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]), jit_compile=True)
    ds = make_pipeline(data.x_train, batch_size=bs, seed=0)
    step = _keras_step(vae, ds, len(data.x_train), bs)

    def log_likelihood(x, z):
        return vae.log_likelihood(x, tf.cast(vae.decoder(z, training=False), tf.float32))

    evaluate = _vae_evaluator(lambda x: vae.encoder(x, training=False), log_likelihood, data, vae.latent_dim)
    return Runner(_runner_name("uvbook_vae", v), f"uvbook VAE ({v.name})", "vae", bs, step, evaluate,
                  tracing_count=_keras_tracing_count(vae))


def uvbook_dcgan(data: BenchData, v: Variant = Variant(), n_frechet: int = 2000) -> Runner:
    """Chapter 4's DCGAN: ``build_fashion_dcgan(DCGAN_CONFIG)``, ``make_pipeline`` batches of 32."""
    cfg = DCGAN_CONFIG
    bs = v.batch_size or cfg["batch_size"]
    with _precision(v.precision):
        set_seed(0)
        gan = build_fashion_dcgan(cfg["latent_dim"], cfg["g_filters"], cfg["d_filters"], *cfg["adam"])
    if v.jit_compile:
        lr, beta_1 = cfg["adam"]
        gan.compile(d_optimizer=keras.optimizers.Adam(lr, beta_1=beta_1),
                    g_optimizer=keras.optimizers.Adam(lr, beta_1=beta_1), jit_compile=True)
    ds = make_pipeline(data.x_train, batch_size=bs, seed=0)
    step = _keras_step(gan, ds, len(data.x_train), bs)
    evaluate = _frechet_evaluator(lambda: gan.generate(n_frechet, seed=1), data)
    return Runner(_runner_name("uvbook_dcgan", v), f"uvbook DCGAN ({v.name})", "dcgan", bs, step, evaluate,
                  tracing_count=_keras_tracing_count(gan))


def uvbook_wgan(data: BenchData, v: Variant = Variant(), n_frechet: int = 2000) -> Runner:
    """Chapter 4's WGAN-GP: the article's ReLU MLPs, 5 critic steps of 16 images, Adam(2e-4, 0.5, 0.9)."""
    latent, critic_steps = 100, 5
    bs = v.batch_size or 16 * critic_steps
    with _precision(v.precision):
        set_seed(0)
        gan = WGANGP(build_mlp_generator(latent, activation="relu"), build_mlp_discriminator(activation="relu"),
                     latent, critic_steps=critic_steps, gp_weight=10.0, seed=0)
    gan.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.9),
                g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.9),
                **({"jit_compile": True} if v.jit_compile else {}))
    ds = make_pipeline(data.x_train, batch_size=bs, seed=0)
    step = _keras_step(gan, ds, len(data.x_train), bs)
    evaluate = _frechet_evaluator(lambda: gan.generate(n_frechet, seed=1), data)
    return Runner(_runner_name("uvbook_wgan", v), f"uvbook WGAN-GP ({v.name})", "wgan", bs, step, evaluate,
                  tracing_count=_keras_tracing_count(gan))


def uvbook_ae(data: BenchData, v: Variant = Variant()) -> Runner:
    """Chapter 3's ``conv_ae_32``: Adam(2e-3), batch 128, fed NumPy arrays through ``fit`` (or ``make_pipeline``)."""
    arch = {k: val for k, val in CHAPTER3_MODELS["conv_ae_32"].items() if k != "class"}
    cfg = CHAPTER3_TRAINING
    bs = v.batch_size or cfg["batch_size"]
    with _precision(v.precision):
        set_seed(cfg["seed"])
        ae = Autoencoder.conv(**arch)
    ae.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]),
               **({"jit_compile": True} if v.jit_compile else {}))
    pipeline = v.pipeline or "numpy"
    ds = make_pipeline(data.x_train, batch_size=bs, seed=0) if pipeline == "tfdata" \
        else _numpy_fit_dataset(data.x_train, bs)
    step = _keras_step(ae, ds, len(data.x_train), bs)
    how = "fit on NumPy arrays, as Chapter 3" if pipeline == "numpy" else "make_pipeline"
    return Runner(_runner_name("uvbook_ae", v), f"uvbook conv AE ({how}; {v.name})", "ae", bs, step,
                  _mse_evaluator(ae, data),
                  tracing_count=_keras_tracing_count(ae))


# ----- the references, re-implemented in the tutorials' style

def cvae_tutorial(data: BenchData, latent_dim: int = 16) -> Runner:
    """A VAE in the style of the TensorFlow tutorial "Convolutional Variational Autoencoder".

    Its encoder (Conv2D 32, 64 stride 2, valid padding -> Dense 2 x latent) and decoder
    (Dense 7x7x32 -> Conv2DTranspose 64, 32 stride 2 -> Conv2DTranspose 1, logits), its
    loss (the single-sample Monte Carlo estimate of minus the ELBO,
    ``-(log p(x|z) + log p(z) - log q(z|x))``), its ``@tf.function`` training step, batch 32,
    Adam 1e-4, and its input pipeline (``from_tensor_slices -> shuffle -> batch``). Latent
    16 (uvbook's) instead of the tutorial's 2. Trained on one fixed Bernoulli draw of the
    training images (the tutorial thresholds its images once at 0.5; this keeps static
    binarisation but draws it the way the test metric's images are drawn).
    """
    from keras import layers
    set_seed(0)
    encoder = keras.Sequential([keras.Input(shape=(28, 28, 1)),
                                layers.Conv2D(32, 3, strides=2, activation="relu"),
                                layers.Conv2D(64, 3, strides=2, activation="relu"),
                                layers.Flatten(), layers.Dense(latent_dim + latent_dim)], name="cvae_encoder")
    decoder = keras.Sequential([keras.Input(shape=(latent_dim,)),
                                layers.Dense(7 * 7 * 32, activation="relu"), layers.Reshape((7, 7, 32)),
                                layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu"),
                                layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu"),
                                layers.Conv2DTranspose(1, 3, strides=1, padding="same")], name="cvae_decoder")
    optimizer = keras.optimizers.Adam(1e-4)
    variables = encoder.trainable_variables + decoder.trainable_variables
    log2pi = tf.math.log(2.0 * np.pi)

    def encode(x):
        mean, logvar = tf.split(encoder(x), num_or_size_splits=2, axis=1)
        return mean, logvar

    def log_normal_pdf(sample, mean, logvar, raxis=1):
        return tf.reduce_sum(-0.5 * ((sample - mean) ** 2.0 * tf.exp(-logvar) + logvar + log2pi), axis=raxis)

    def compute_loss(x):
        mean, logvar = encode(x)
        z = tf.random.normal(shape=tf.shape(mean)) * tf.exp(logvar * 0.5) + mean
        x_logit = decoder(z)
        cross_ent = tf.nn.sigmoid_cross_entropy_with_logits(logits=x_logit, labels=x)
        logpx_z = -tf.reduce_sum(cross_ent, axis=[1, 2, 3])
        logpz = log_normal_pdf(z, 0.0, 0.0)
        logqz_x = log_normal_pdf(z, mean, logvar)
        return -tf.reduce_mean(logpx_z + logpz - logqz_x)

    @tf.function
    def train_step(x):
        with tf.GradientTape() as tape:
            loss = compute_loss(x)
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    x = data.x_train_fixed_bin
    batch = 32
    ds = tf.data.Dataset.from_tensor_slices(x).shuffle(len(x)).batch(batch)

    def log_likelihood(xb, z):
        return -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(logits=decoder(z), labels=xb), axis=[1, 2, 3])

    return Runner("cvae_tutorial", "CVAE, TF tutorial style", "vae", batch, _fn_step(train_step, ds, len(x), batch),
                  _vae_evaluator(encode, log_likelihood, data, latent_dim), source=REFERENCES["cvae_tutorial"],
                  tracing_count=train_step.experimental_get_tracing_count)


def kerasio_vae(data: BenchData, latent_dim: int = 16) -> Runner:
    """A VAE in the style of the keras.io example "Variational AutoEncoder".

    Its encoder (Conv2D 32, 64 stride 2 -> Dense 16 -> z_mean, z_log_var, Sampling), its
    decoder (Dense 7x7x64 -> Conv2DTranspose 64, 32 stride 2 -> Conv2DTranspose 1,
    sigmoid), its ``train_step`` (``mean(sum(binary_crossentropy))`` over pixels plus the
    closed-form KL), ``Adam()`` and ``fit(x, batch_size=128)`` on a NumPy array. Latent 16
    instead of the example's 2; trained on the CVAE reference's fixed binarisation.
    """
    from keras import layers, ops
    class Sampling(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seed_generator = keras.random.SeedGenerator(1337)

        def call(self, inputs):
            z_mean, z_log_var = inputs
            epsilon = keras.random.normal(shape=ops.shape(z_mean), seed=self.seed_generator)
            return z_mean + ops.exp(0.5 * z_log_var) * epsilon

    class KerasIOVAE(keras.Model):
        def __init__(self, encoder, decoder, **kwargs):
            super().__init__(**kwargs)
            self.encoder, self.decoder = encoder, decoder
            self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
            self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
            self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

        @property
        def metrics(self):
            return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

        def train_step(self, data):
            with tf.GradientTape() as tape:
                z_mean, z_log_var, z = self.encoder(data)
                reconstruction = self.decoder(z)
                reconstruction_loss = ops.mean(ops.sum(keras.losses.binary_crossentropy(data, reconstruction),
                                                       axis=(1, 2)))
                kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
                kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
                total_loss = reconstruction_loss + kl_loss
            grads = tape.gradient(total_loss, self.trainable_weights)
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
            self.total_loss_tracker.update_state(total_loss)
            self.reconstruction_loss_tracker.update_state(reconstruction_loss)
            self.kl_loss_tracker.update_state(kl_loss)
            return {m.name: m.result() for m in self.metrics}

    set_seed(0)
    inputs = keras.Input(shape=(28, 28, 1))
    h = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(inputs)
    h = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(h)
    h = layers.Flatten()(h)
    h = layers.Dense(16, activation="relu")(h)
    z_mean = layers.Dense(latent_dim, name="z_mean")(h)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(h)
    encoder = keras.Model(inputs, [z_mean, z_log_var, Sampling()([z_mean, z_log_var])], name="encoder")
    latent_inputs = keras.Input(shape=(latent_dim,))
    h = layers.Dense(7 * 7 * 64, activation="relu")(latent_inputs)
    h = layers.Reshape((7, 7, 64))(h)
    h = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(h)
    h = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(h)
    outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(h)
    decoder = keras.Model(latent_inputs, outputs, name="decoder")
    vae = KerasIOVAE(encoder, decoder)
    vae.compile(optimizer=keras.optimizers.Adam())

    x = data.x_train_fixed_bin
    batch = 128
    step = _keras_step(vae, _numpy_fit_dataset(x, batch), len(x), batch)

    def encode(xb):
        mean, log_var, _ = encoder(xb, training=False)
        return mean, log_var

    def log_likelihood(xb, z):
        p = tf.clip_by_value(decoder(z, training=False), 1e-7, 1.0 - 1e-7)  # as keras' BCE clips
        return tf.reduce_sum(xb * tf.math.log(p) + (1.0 - xb) * tf.math.log(1.0 - p), axis=[1, 2, 3])

    return Runner("kerasio_vae", "VAE, keras.io example style", "vae", batch, step,
                  _vae_evaluator(encode, log_likelihood, data, latent_dim), source=REFERENCES["kerasio_vae"],
                  tracing_count=_keras_tracing_count(vae))


def dcgan_tutorial(data: BenchData, n_frechet: int = 2000) -> Runner:
    """A DCGAN in the style of the TensorFlow tutorial "Deep Convolutional Generative Adversarial Network".

    Its generator and discriminator (5x5 kernels), its losses (BCE on logits, generator
    against label 1), its ``@tf.function`` step that updates both players from one
    forward pass under two tapes, Adam 1e-4 for both, batch 256 and noise of 100, on
    images scaled to [-1, 1] (``from_tensor_slices -> shuffle -> batch``).
    """
    from keras import layers
    noise_dim, batch = 100, 256
    set_seed(0)
    generator = keras.Sequential([
        keras.Input(shape=(noise_dim,)),
        layers.Dense(7 * 7 * 256, use_bias=False), layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Reshape((7, 7, 256)),
        layers.Conv2DTranspose(128, (5, 5), strides=(1, 1), padding="same", use_bias=False),
        layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Conv2DTranspose(64, (5, 5), strides=(2, 2), padding="same", use_bias=False),
        layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Conv2DTranspose(1, (5, 5), strides=(2, 2), padding="same", use_bias=False, activation="tanh"),
    ], name="tutorial_generator")
    discriminator = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(64, (5, 5), strides=(2, 2), padding="same"), layers.LeakyReLU(), layers.Dropout(0.3),
        layers.Conv2D(128, (5, 5), strides=(2, 2), padding="same"), layers.LeakyReLU(), layers.Dropout(0.3),
        layers.Flatten(), layers.Dense(1),
    ], name="tutorial_discriminator")
    cross_entropy = keras.losses.BinaryCrossentropy(from_logits=True)
    g_opt, d_opt = keras.optimizers.Adam(1e-4), keras.optimizers.Adam(1e-4)

    @tf.function
    def train_step(images):
        noise = tf.random.normal([batch, noise_dim])
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            generated_images = generator(noise, training=True)
            real_output = discriminator(images, training=True)
            fake_output = discriminator(generated_images, training=True)
            gen_loss = cross_entropy(tf.ones_like(fake_output), fake_output)
            disc_loss = (cross_entropy(tf.ones_like(real_output), real_output)
                         + cross_entropy(tf.zeros_like(fake_output), fake_output))
        g_grads = gen_tape.gradient(gen_loss, generator.trainable_variables)
        d_grads = disc_tape.gradient(disc_loss, discriminator.trainable_variables)
        g_opt.apply_gradients(zip(g_grads, generator.trainable_variables))
        d_opt.apply_gradients(zip(d_grads, discriminator.trainable_variables))
        return gen_loss, disc_loss

    x = data.x_train * 2.0 - 1.0
    ds = tf.data.Dataset.from_tensor_slices(x).shuffle(len(x)).batch(batch)
    fixed_noise = np.random.default_rng(1).standard_normal((n_frechet, noise_dim)).astype(np.float32)

    def generate() -> np.ndarray:
        out = np.concatenate([np.asarray(generator(fixed_noise[i:i + 500], training=False))
                              for i in range(0, n_frechet, 500)])
        return np.clip((out + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)

    return Runner("dcgan_tutorial", "DCGAN, TF tutorial style", "dcgan", batch,
                  _fn_step(train_step, ds, len(x), batch), _frechet_evaluator(generate, data),
                  source=REFERENCES["dcgan_tutorial"], tracing_count=train_step.experimental_get_tracing_count)


# --------------------------------------------------------------------------- racing

def eval_schedule(budget: float, evals: int = 10) -> list[float]:
    """Training-clock times of the evaluations: 0, then ``budget * i / evals``, with three more
    halving down from the first of those (a finer start, where the curves fall fastest)."""
    first = budget / evals
    points = {0.0, *(first / 2 ** k for k in range(1, 4)), *(budget * i / evals for i in range(1, evals + 1))}
    return sorted(points)


def race(runners: Sequence[Runner], budget: float, slice_s: float, evals: int = 10, log=_log) -> None:
    """Interleave ``runners``: warm each up, then train each for ``slice_s`` seconds in turn, to ``budget``.

    Each is evaluated whenever its training clock passes a point of :func:`eval_schedule`
    (the evaluation is not on the clock); the order of the runners rotates every round.
    """
    schedule = eval_schedule(budget, evals)
    for r in runners:
        r.warm_up()
        log(f"  {r.name}: first step (tracing included) {r.trace_s:.1f} s")
        r.evaluate()
        r.next_eval = 1  # index into schedule
    active = list(runners)
    turn = 0
    while active:
        order = active[turn % len(active):] + active[:turn % len(active)]
        turn += 1
        for r in order:
            stop = min(r.clock + slice_s, budget)
            while r.clock < stop:
                r.train_until(min(stop, schedule[r.next_eval]))
                if r.clock >= schedule[r.next_eval]:
                    while r.next_eval < len(schedule) - 1 and r.clock >= schedule[r.next_eval]:
                        r.next_eval += 1
                    value = r.evaluate()
                    log(f"  {r.name}: t={r.clock:6.1f} s, {r.steps} steps, metric {value:.4g} "
                        f"(eval {r.history[-1][3]:.1f} s)")
            if r.clock >= budget:
                active.remove(r)


def seconds_to_reach(history: Sequence[Sequence[float]], target: float) -> float | None:
    """Training-clock seconds of the first evaluation with metric <= ``target`` (None if never)."""
    for clock, _, value, _ in history:
        if value <= target:
            return float(clock)
    return None


def interpolated_seconds(history: Sequence[Sequence[float]], target: float) -> float | None:
    """Where the metric first crosses ``target``, linearly between the two evaluations around it."""
    for i, (clock, _, value, _) in enumerate(history):
        if value <= target:
            if i == 0:
                return float(clock)
            c0, v0 = history[i - 1][0], history[i - 1][2]
            return float(c0 + (clock - c0) * (v0 - target) / (v0 - value)) if v0 != value else float(clock)
    return None


def compare(uv: Runner, ref: Runner, budget: float, evals: int = 10) -> dict[str, Any]:
    """Time-to-quality of ``uv`` to ``ref``'s final quality, and the ratios uvbook / reference."""
    target = ref.history[-1][2]
    ref_s = seconds_to_reach(ref.history, target) or ref.clock
    uv_s = seconds_to_reach(uv.history, target)
    reached = uv_s is not None
    if reached and uv_s == 0.0:  # already there before training: bound by the first interval
        uv_s = eval_schedule(budget, evals)[1]
    ratio = ref_s / (uv_s if reached else max(uv.clock, budget))
    uv_i, ref_i = interpolated_seconds(uv.history, target), interpolated_seconds(ref.history, target)
    return {"uvbook": uv.name, "reference": ref.name, "target": target, "reference_seconds": ref_s,
            "uvbook_seconds": uv_s if reached else None, "reached": reached,
            "time_to_quality_ratio": ratio,
            # the same with both crossings interpolated between evaluations (a point estimate, not a bound)
            "time_to_quality_ratio_interpolated": (ref_i / uv_i) if reached and uv_i and ref_i else None,
            "throughput_ratio": uv.images_per_s / ref.images_per_s,
            "final_quality_ratio": uv.history[-1][2] / target if target else math.nan,
            "trace_ratio": uv.trace_s / ref.trace_s}


def fixed_target(r: Runner, target: float | None) -> dict[str, Any]:
    """Seconds for ``r`` to reach a fixed metric ``target`` (default: its own final value)."""
    final = r.history[-1][2]
    target = final if target is None else target
    s = seconds_to_reach(r.history, target)
    return {"runner": r.name, "target": target, "seconds": s, "reached": s is not None}


# --------------------------------------------------------------------------- fast-path variants

def measure_variants(build: Callable[[Variant], Runner], variants: Sequence[Variant], rounds: int,
                     slice_s: float, log=_log) -> dict[str, dict[str, Any]]:
    """Throughput of each variant against the first, alternating them in ``rounds`` rounds of ``slice_s`` seconds.

    Each round trains every variant for ``slice_s`` training seconds, in a rotating order,
    so that a burst of load on the shared machine falls on neighbours alike. The ratio of a
    variant is the *median over rounds* of its rate divided by the first variant's rate in
    the same round (paired, robust to a round that a burst spoilt). Returns per variant:
    ``images_per_s`` (the median of its round rates), ``round_rates``, ``ratio``,
    ``trace_s``, or ``error`` if it fails to build or run.
    """
    runners: dict[str, Runner] = {}
    out: dict[str, dict[str, Any]] = {}
    for v in variants:
        try:
            r = build(v)
            r.warm_up()
            r.train_until(min(slice_s, 1.0))  # a few untimed steps more: first-call effects settle
            runners[v.name] = r
        except Exception as err:  # noqa: BLE001 - a variant that does not run is a result too
            out[v.name] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}
            log(f"  {v.name}: fails ({out[v.name]['error']})")
    rates: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for k in range(rounds):
        for name in (names[k % len(names):] + names[:k % len(names)]) if names else []:
            r = runners[name]
            c0, i0 = r.clock, r.images
            r.train_until(r.clock + slice_s)
            rates[name].append((r.images - i0) / (r.clock - c0))
    base = names[0] if names else None
    ordered: dict[str, dict[str, Any]] = {}
    for v in variants:
        if v.name not in runners:
            ordered[v.name] = out[v.name]
            continue
        r = runners[v.name]
        paired = [x / y for x, y in zip(rates[v.name], rates[base])]
        ips = float(np.median(rates[v.name]))
        ratio = float(np.median(paired))
        best = max(rates[v.name]) / max(rates[base])  # best round against best round: the least loaded
        ordered[v.name] = {"images_per_s": ips, "round_rates": rates[v.name], "paired_ratios": paired,
                           "trace_s": r.trace_s, "batch_size": r.batch_size, "jit_compile": v.jit_compile,
                           "precision": v.precision, "ratio": ratio, "ratio_best": best}
        log(f"  {v.name:22s} {ips:8.0f} images/s  ({ratio:.2f}x, median of per-round ratios "
            f"{', '.join(f'{x:.2f}' for x in paired)}; best round vs best round {best:.2f}x; "
            f"first step {r.trace_s:.1f} s)")
    return ordered


def _variant_sets(s: Settings, data: BenchData) -> dict[str, tuple[Callable[[Variant], Runner], list[Variant]]]:
    common = [Variant("default (graph, fp32)"), Variant("xla", jit_compile=True),
              Variant("mixed_bfloat16", precision="mixed_bfloat16")]
    return {
        "vae": (lambda v: uvbook_vae(data, v), common + [Variant("batch 256", batch_size=256)]),
        "dcgan": (lambda v: uvbook_dcgan(data, v, s.n_frechet), common + [Variant("batch 128", batch_size=128)]),
        "ae": (lambda v: uvbook_ae(data, v),
               [Variant("default (graph, fp32)"), Variant("tf.data pipeline", pipeline="tfdata"),
                Variant("xla", jit_compile=True), Variant("mixed_bfloat16", precision="mixed_bfloat16"),
                Variant("batch 256", batch_size=256)]),
        "wgan": (lambda v: uvbook_wgan(data, v, s.n_frechet), common),
    }


# --------------------------------------------------------------------------- the run

def hardware() -> dict[str, Any]:
    """CPU model, cores, GPUs, TensorFlow and Keras versions, Python, OS and load average."""
    info = dict(results.hardware())
    info["tensorflow"] = tf.__version__
    info["keras"] = keras.__version__
    info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    info["intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    return info


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def run(s: Settings | None = None, classifier=None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark with settings ``s`` (default: :func:`settings_for` of the mode); return its results.

    ``classifier``: a model with a ``"features"`` layer for the Fréchet distances
    (default: the domain classifier, or an untrained CNN with ``s.classifier == "untrained"``).
    """
    s = s or settings_for()
    log = log or _log
    tf.get_logger().setLevel("ERROR")
    started = time.perf_counter()
    result: dict[str, Any] = {"mode": s.mode, "settings": dataclasses.asdict(s), "hardware": hardware(),
                              "load_start": _load(), "families": {}, "variants": {}, "references": REFERENCES}
    hw = result["hardware"]
    log(f"uvbook bench ({s.mode}): {hw.get('cpu')}, {hw.get('cores')} cores, GPUs {hw.get('gpus') or 'none'}, "
        f"TensorFlow {hw['tensorflow']}, Keras {hw['keras']}; load average {result['load_start']}")
    data = load_data(s, classifier)
    result["data"] = {"n_train": len(data.x_train), "n_test": len(data.x_test),
                      "n_test_features": len(data.test_features), "n_frechet": s.n_frechet,
                      "frechet_real_floor": data.real_floor}
    log(f"data: {len(data.x_train)} training images, {len(data.x_test)} test images; Fréchet distance of "
        f"{s.n_frechet} real training images to the test set (the floor): {data.real_floor:.3g}")

    builders: dict[str, list[Callable[[], Runner]]] = {
        "vae": [lambda: uvbook_vae(data), lambda: cvae_tutorial(data), lambda: kerasio_vae(data)],
        "dcgan": [lambda: uvbook_dcgan(data, n_frechet=s.n_frechet),
                  lambda: dcgan_tutorial(data, n_frechet=s.n_frechet)],
        "ae": [lambda: uvbook_ae(data), lambda: uvbook_ae(data, Variant("tfdata", pipeline="tfdata"))],
        "wgan": [lambda: uvbook_wgan(data, n_frechet=s.n_frechet)],
    }
    # (candidate, baseline) pairs: the candidate's time to the baseline's final quality
    pairs = {"vae": [("uvbook_vae", "cvae_tutorial"), ("uvbook_vae", "kerasio_vae")],
             "dcgan": [("uvbook_dcgan", "dcgan_tutorial")],
             "ae": [("uvbook_ae_tfdata", "uvbook_ae")], "wgan": []}
    if s.extra_runners:  # the fast path that won on throughput, raced for time-to-quality
        builders["wgan"].append(lambda: uvbook_wgan(data, Variant("xla", jit_compile=True), n_frechet=s.n_frechet))
        pairs["wgan"].append(("uvbook_wgan_xla", "uvbook_wgan"))
    if s.candidates:  # uvbook's classes with other batch sizes, raced against the same baselines
        builders["ae"].append(lambda: uvbook_ae(data, Variant("batch 256", batch_size=256)))
        pairs["ae"].append(("uvbook_ae_batch_256", "uvbook_ae"))
        for family, b in (("vae", 64), ("vae", 32), ("dcgan", 64)):
            v = Variant(f"batch {b}", batch_size=b)
            build = uvbook_vae if family == "vae" else uvbook_dcgan
            kwargs = {} if family == "vae" else {"n_frechet": s.n_frechet}
            builders[family].append(lambda build=build, v=v, kwargs=kwargs: build(data, v, **kwargs))
            refs = ("cvae_tutorial", "kerasio_vae") if family == "vae" else ("dcgan_tutorial",)
            pairs[family] += [(_runner_name(f"uvbook_{family}", v), ref) for ref in refs]
    for family in (s.families if s.races else ()):
        budget = s.budget[family]
        log(f"\n[{family}] {METRICS[family]}; budget {budget:g} training seconds per runner, interleaved")
        runners = {r.name: r for r in (b() for b in builders[family])}
        race(list(runners.values()), budget, s.slice_s, s.evals, log=log)
        fam: dict[str, Any] = {"metric": METRICS[family], "budget_s": budget,
                               "runners": {name: r.summary() for name, r in runners.items()},
                               "comparisons": [compare(runners[a], runners[b], budget, s.evals)
                                               for a, b in pairs[family]]}
        if family in ("ae", "wgan"):
            target = s.ae_target if family == "ae" else s.wgan_target
            fam["fixed_target"] = [fixed_target(r, target) for r in runners.values()]
        result["families"][family] = fam
    if s.variants:
        sets = _variant_sets(s, data)
        for family in s.families:
            build, variants = sets[family]
            log(f"\n[{family}] fast paths: throughput against the default, {s.variant_rounds} alternating "
                f"rounds of {s.variant_slice_s:g} s (median of per-round ratios)")
            result["variants"][family] = measure_variants(build, variants, s.variant_rounds, s.variant_slice_s,
                                                          log=log)
    result["load_end"] = _load()
    result["wall_s"] = time.perf_counter() - started
    result["ratios"] = headline(result)
    return result


def headline(result: dict[str, Any]) -> dict[str, float]:
    """The flat ``bench.*`` numbers of a result (the keys written to the results record)."""
    out: dict[str, float] = {}
    for family, fam in result["families"].items():
        for name, r in fam["runners"].items():
            out[f"bench.{family}.{name}.images_per_s"] = r["images_per_s"]
            out[f"bench.{family}.{name}.trace_s"] = r["trace_s"]
            out[f"bench.{family}.{name}.final_metric"] = r["final_metric"]
        ttq = []
        for c in fam["comparisons"]:
            ref = c["reference"]
            main = c["uvbook"] == f"uvbook_{family}"  # uvbook as the chapters train it
            prefix = f"bench.{family}.{ref}" if main else f"bench.{family}.{c['uvbook']}.vs_{ref}"
            for k in ("time_to_quality_ratio", "throughput_ratio", "final_quality_ratio"):
                out[f"{prefix}.{k}"] = c[k]
            if c["uvbook_seconds"] is not None:
                out[f"{prefix}.uvbook_seconds"] = c["uvbook_seconds"]
            out[f"{prefix}.reference_seconds"] = c["reference_seconds"]
            if main:
                ttq.append(c["time_to_quality_ratio"])
        if ttq and family in ("vae", "dcgan"):
            out[f"bench.{family}.time_to_quality_ratio"] = min(ttq)  # against the stronger reference
        for t in fam.get("fixed_target", []):
            if t["reached"]:
                out[f"bench.{family}.{t['runner']}.seconds_to_target"] = t["seconds"]
    for family, variants in result["variants"].items():
        for vname, v in variants.items():
            if "ratio" in v:
                key = "".join(c if c.isalnum() else "_" for c in vname.lower()).strip("_")
                key = "_".join(p for p in key.split("_") if p)
                out[f"bench.{family}.variant.{key}.throughput_ratio"] = v["ratio"]
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}


# --------------------------------------------------------------------------- reporting

def format_report(result: dict[str, Any]) -> str:
    """The tables a person reads: per runner, per comparison (ratios uvbook / reference), per variant."""
    hw = result["hardware"]
    lines = [f"uvbook bench, {result['mode']} mode, {result.get('wall_s', 0):.0f} s wall",
             f"hardware: {hw.get('cpu')}, {hw.get('cores')} cores, GPUs: {', '.join(hw.get('gpus') or []) or 'none'}; "
             f"TensorFlow {hw.get('tensorflow')}, Keras {hw.get('keras')}, Python {hw.get('python')}",
             f"load average (1, 5, 15 min): start {result.get('load_start')}, end {result.get('load_end')}",
             f"data: {result['data']['n_train']} training images; metric on {result['data']['n_test']} test images "
             f"(VAE, AE) / {result['data']['n_test_features']} test images vs {result['data']['n_frechet']} samples "
             f"(GANs; real-data floor {result['data']['frechet_real_floor']:.3g})", ""]
    head = f"{'runner':34s} {'batch':>5s} {'images/s':>9s} {'1st step s':>10s} {'train s':>8s} {'eval s':>7s} " \
           f"{'stalls s':>8s} {'steps':>6s} {'final metric':>12s}"
    for family, fam in result["families"].items():
        lines += [f"[{family}] {fam['metric']}; budget {fam['budget_s']:g} s per runner", head,
                  "  (1st step: tracing included, off the clock; stalls: retraces and stalled steps' excess, "
                  "off the clock)"]
        for name, r in fam["runners"].items():
            lines.append(f"{name[:34]:34s} {r['batch_size']:5d} {r['images_per_s']:9.0f} {r['trace_s']:10.1f} "
                         f"{r['train_s']:8.1f} {r['eval_s']:7.1f} {r['spike_s'] + r['retrace_s']:8.1f} {r['steps']:6d} "
                         f"{r['final_metric']:12.4g}")
        for c in fam["comparisons"]:
            a, b = c["uvbook"], c["reference"]
            uv_s = f"{c['uvbook_seconds']:.1f} s" if c["reached"] else f"not within {fam['budget_s']:g} s"
            bound = "" if c["reached"] else " (upper bound)"
            lines.append(f"  {a} vs {b}: {b}'s final {c['target']:.4g} reached by {b} at "
                         f"{c['reference_seconds']:.1f} s, by {a} at {uv_s}")
            interp = c.get("time_to_quality_ratio_interpolated")
            interp = f" (interpolated {interp:.2f})" if interp else ""
            lines.append(f"    time-to-quality ratio ({b} s / {a} s) {c['time_to_quality_ratio']:.2f}{bound}{interp}; "
                         f"{a} / {b}: throughput {c['throughput_ratio']:.2f}, final metric "
                         f"{c['final_quality_ratio']:.3f} (< 1: {a} better), first step {c['trace_ratio']:.2f}")
        for t in fam.get("fixed_target", []):
            got = f"after {t['seconds']:.1f} s" if t["reached"] else f"not within {fam['budget_s']:g} s"
            lines.append(f"  {t['runner']}: fixed target metric <= {t['target']:.4g} {got}")
        lines.append("")
    lines += [f"{name}: re-implemented {text}" for name, text in result["references"].items()] + [""]
    for family, variants in result["variants"].items():
        lines.append(f"[{family}] fast paths (throughput; ratio to the default: median of per-round paired ratios)")
        for vname, v in variants.items():
            if "error" in v:
                lines.append(f"  {vname:22s} fails: {v['error']}")
            else:
                pr = v.get("paired_ratios") or [v["ratio"]]
                lines.append(f"  {vname:22s} batch {v['batch_size']:4d} {v['images_per_s']:8.0f} images/s "
                             f"ratio {v['ratio']:.2f} (rounds {min(pr):.2f}-{max(pr):.2f}; best vs best "
                             f"{v.get('ratio_best', math.nan):.2f})  first step {v['trace_s']:.1f} s")
        lines.append("")
    return "\n".join(lines)


def save(result: dict[str, Any], out: str | os.PathLike | None, record: bool = True) -> list[str]:
    """Write ``result`` as JSON to ``out`` and its :func:`headline` numbers to the results record.

    Returns where they went. The record is :mod:`uvbook.results`, in the run's own mode.
    """
    written = []
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(result, indent=1, default=_json_default),
                                                      encoding="utf-8"), suffix=".tmp")
        written.append(str(path))
    if record:
        notes = _notes(result)
        # the record of the run's mode, whatever UVBOOK_QUICK says (`--quick` may be given without it)
        for key, value in result["ratios"].items():
            path = results.record(key, value, notes.get(key), mode=result["mode"])
        if result["ratios"]:
            written.append(str(path))
    return written


def _notes(result: dict[str, Any]) -> dict[str, str]:
    hw = result["hardware"]
    where = f"{hw.get('cpu')}, {hw.get('cores')} cores, TF {hw.get('tensorflow')}, load {result.get('load_start')}"
    notes = {}
    for family, fam in result["families"].items():
        for c in fam["comparisons"]:
            main = c["uvbook"] == f"uvbook_{family}"
            prefix = f"bench.{family}.{c['reference']}" if main else f"bench.{family}.{c['uvbook']}.vs_{c['reference']}"
            notes[f"{prefix}.time_to_quality_ratio"] = (
                f"reference seconds / uvbook seconds to the reference's final {fam['metric']} after "
                f"{fam['budget_s']:g} s ({'reached' if c['reached'] else 'not reached: upper bound'}); {where}")
        if family in ("vae", "dcgan") and fam["comparisons"]:
            notes[f"bench.{family}.time_to_quality_ratio"] = "the smaller of the ratios to the references; " + where
    return notes


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# --------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks``: run the benchmark, print its tables, save the numbers.

    Raises:
        ValueError: a bad argument (naming what was expected and what was given).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0],
                                     allow_abbrev=False, exit_on_error=False)
    parser.add_argument("--quick", action="store_true", help="tiny budgets, under a minute (also UVBOOK_QUICK=1)")
    parser.add_argument("--families", default=None, help=f"comma-separated subset of {','.join(FAMILIES)}")
    parser.add_argument("--budget", default=None, help="training seconds per runner (default: by mode and family)")
    parser.add_argument("--n-train", default=None, help="training images (default: all in full mode, 2048 in quick)")
    parser.add_argument("--n-test", default=None, help="test images for the VAE and AE metrics")
    parser.add_argument("--n-frechet", default=None, help="generated samples per Fréchet distance")
    parser.add_argument("--slice", dest="slice_s", default=None, help="seconds per turn when interleaving")
    parser.add_argument("--ae-target", default=None, help="fixed AE test MSE to time (default: its final)")
    parser.add_argument("--wgan-target", default=None, help="fixed WGAN-GP Fréchet distance to time")
    parser.add_argument("--no-variants", action="store_true", help="skip the XLA / mixed precision / batch variants")
    parser.add_argument("--variants", action="store_true", help="measure the variants (also in quick mode)")
    parser.add_argument("--variants-only", action="store_true", help="only the variants, no time-to-quality races")
    parser.add_argument("--candidates", action="store_true",
                        help="also race uvbook's VAE at batch 64 and 32, its DCGAN at batch 64, its AE at batch 256")
    parser.add_argument("--evals", default=None, help="evaluations per budget after the first few (default 10)")
    parser.add_argument("--classifier", default=None, help="'domain' (default) or 'untrained' (random features)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON file (default {DEFAULT_OUT})")
    parser.add_argument("--no-record", action="store_true", help="do not write into the results record")
    try:
        args, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as err:
        raise ValueError(f"bad arguments {argv}: {err}; expected the options of "
                         "`python -m benchmarks --help`") from err
    if unknown:
        raise ValueError(f"unknown arguments {unknown}; expected the options of `python -m benchmarks --help`")
    overrides: dict[str, Any] = {}
    for name in ("n_train", "n_test", "n_frechet", "slice_s", "ae_target", "wgan_target", "classifier", "evals"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    if args.no_variants and args.variants:
        raise ValueError("expected at most one of --variants and --no-variants; got both")
    if args.no_variants or args.variants:
        overrides["variants"] = bool(args.variants)
    if args.candidates:
        overrides["candidates"] = True
    if args.variants_only:
        if args.no_variants:
            raise ValueError("expected at most one of --variants-only and --no-variants; got both")
        overrides.update(variants=True, races=False)
    s = settings_for(quick=True if args.quick else None, families=args.families, budget=args.budget, **overrides)
    result = run(s)
    print()
    print(format_report(result))
    for where in save(result, args.out, record=not args.no_record):
        print(f"numbers written to {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
