"""Every model the book trains, from one config each: trained once, cached, then loaded by any chapter.

Each recipe is a config (a module-level dict), a function giving its sizes in the current
mode (quick or full) and a ``train_*`` function that builds, fits and caches the model
through :func:`uvbook.train.train_or_load`: the first chapter that calls it trains the model,
every later call (another chapter, a rerun) loads the same weights.

====================================================  ==============================  ==========
recipe                                                model                           trained in
====================================================  ==============================  ==========
:func:`train_fashion_cnn`                             Chapter 2's CNN                 Chapter 2
:func:`chapter3_model`                                two conv autoencoders           Chapter 3
:func:`train_linear_ae`, :func:`train_sparse_ae`      the linear and sparse AEs       Chapter 3
:func:`train_code_size_ae`, :func:`train_anomaly_ae`  the code-size sweep, anomalies  Chapter 3
:func:`train_gan`, :func:`train_fashion_dcgan`        the GANs, the DCGAN             Chapter 4
:func:`train_gan_recipe`                              GAN techniques, the cGAN        Chapter 4
:func:`train_cas_classifier`                          the CNN on generated images     Chapter 4
:func:`train_fashion_vae`                             the conv VAE                    Chapter 5
:func:`train_dense_vae`, :func:`train_mnist_vae`      dense VAEs, the MNIST VAE       Chapter 5
:func:`train_fashion_simclr`                          SimCLR                          Chapter 6
:func:`train_fashion_scan`                            the SCAN clustering head        Chapter 6
:func:`train_few_label_classifier`                    the few-label classifiers       Chapter 7
:func:`train_simclr_twin_ae`                          SimCLR's autoencoder twin       Chapter 8
:func:`train_diffusion`, :func:`train_masked_ae`      diffusion, masked AEs           Chapter 8
:func:`train_beta_vae`, :func:`train_overfit_ae`      beta-VAEs, the overfit study    Chapter 8
====================================================  ==============================  ==========

The cache keys keep the strings they had before the recipes moved here (for example
``"uvbook.models.gan.build_fashion_dcgan"``): they name what was trained, and changing
them would retrain every cached model.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from uvbook.callbacks import (ClusterMonitor, CollapseGuard, EpochLog, FrechetMonitor, NeighbourMonitor, WatchAccuracy,
                              resumable)
from uvbook.data import available_mnist, few_labels, load_dataset, make_pipeline, prefetched, stratified_subset
from uvbook.evaluate import domain_features, domain_frechet_distance
from uvbook.models.autoencoder import Autoencoder, DenoisingAutoencoder, SparseAutoencoder
from uvbook.models.classifier import build_cnn_classifier
from uvbook.models.contrastive import SimCLR, build_simclr
from uvbook.models.diffusion import Diffusion, build_denoiser
from uvbook.models.gan import (GAN, WGANGP, ConditionalGAN, build_conditional_generator, build_dcgan_discriminator,
                               build_dcgan_generator, build_projection_discriminator)
from uvbook.models.masked import MaskedAutoencoder, patch_mask
from uvbook.models.scan import SCAN, build_scan_head, mine_neighbours, neighbour_pairs
from uvbook.models.semigen import M2, SemiSupervisedGAN, build_sgan_discriminator, build_sgan_generator
from uvbook.models.semisup import FixMatch, semisup_batches, semisup_pipeline, weak_augment
from uvbook.models.vae import VAE, binarize, build_vae
from uvbook.modes import by_mode, set_seed
from uvbook.train import train_or_load, weights_digest
from uvbook.validate import check_images, check_labels, check_number, check_positive_int


def progress(name: str, verbose: bool) -> list[keras.callbacks.Callback]:
    """The callbacks that show a recipe's training: one :class:`~uvbook.callbacks.EpochLog` line an
    epoch when ``verbose``, nothing otherwise."""
    return [EpochLog(name)] if verbose else []


# --------------------------------------------------------------------------- Chapter 2: the supervised CNN (also the domain classifier of Chapters 4 and 6)

DOMAIN_CLASSIFIER_NAME = "fashion_mnist_domain_classifier"


def fashion_cnn_sizes() -> dict:
    """Training sizes of :func:`train_fashion_cnn` in the current mode (Chapter 2).

    Full mode: all 60,000 training images, 5,000 of them held out as a stratified
    validation split, 3 epochs (0.917 test accuracy in the book's full build). Quick
    mode: a 6,000-image subset with 600 held out, 2 epochs.
    """
    return {"n_train": by_mode(quick=6000, full=None), "n_val": by_mode(quick=600, full=5000),
            "epochs": by_mode(quick=2, full=3), "batch_size": 128, "adam_lr": 1e-3,
            "bn_momentum": 0.9, "seed": 0}


def fashion_cnn_split(n_train: int | None, n_val: int):
    """``(x_fit, y_fit, x_val, y_val)``: Fashion-MNIST's training set (or its stratified
    ``n_train`` subset), minus a stratified validation split of ``n_val`` images drawn
    with seed 0. Chapter 2 shows this split; :func:`train_fashion_cnn` trains on it.
    """
    if n_train is not None:
        check_positive_int(n_train, "n_train")
    check_positive_int(n_val, "n_val")
    x, y = load_dataset("fashion_mnist", "train", n=n_train)
    if n_val >= len(y):
        raise ValueError(f"n_val must be smaller than the {len(y)} training images; got {n_val}")
    is_val = np.zeros(len(y), dtype=bool)
    is_val[stratified_subset(y, n_val, seed=0)] = True
    return x[~is_val], y[~is_val], x[is_val], y[is_val]


def build_fashion_cnn(bn_momentum: float = 0.9, seed: int = 0):
    """The untrained Chapter-2 CNN (:func:`uvbook.models.classifier.build_cnn_classifier`) with its
    batch-normalisation momentum set to ``bn_momentum`` (see Chapter 2, "Batch
    normalisation in short runs")."""
    if not 0.0 <= bn_momentum < 1.0:
        raise ValueError(f"bn_momentum must be in [0, 1); got {bn_momentum!r}")
    set_seed(seed)
    model = build_cnn_classifier(num_classes=10)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = bn_momentum
    return model


def train_fashion_cnn(n_train: int | None | str = "auto", n_val: int | str = "auto",
                      epochs: int | None = None, batch_size: int = 128, folder=None,
                      verbose: bool = True):
    """Chapter 2's supervised CNN, trained once and cached: returns ``(model, history)``.

    :func:`build_fashion_cnn` trained on :func:`fashion_cnn_split` with Adam (learning
    rate 1e-3 decayed to 0 along a cosine), the validation split evaluated after every
    epoch (``history`` has ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``).
    Trained through :func:`uvbook.train.train_or_load`, so Chapter 2 trains it and
    Chapters 4 and 6 load the same weights as :func:`domain_classifier`; a missing or
    corrupt cache entry is retrained. ``"auto"`` sizes come from :func:`fashion_cnn_sizes`;
    with an explicit ``n_train`` the default ``n_val`` is a tenth of it.
    """
    sizes = fashion_cnn_sizes()
    auto_train = isinstance(n_train, str) and n_train == "auto"
    if auto_train:
        n_train = sizes["n_train"]
    elif n_train is not None:
        check_positive_int(n_train, "n_train")
    if isinstance(n_val, str) and n_val == "auto":
        n_val = sizes["n_val"] if auto_train else max(10, (n_train or 60000) // 10)
    check_positive_int(n_val, "n_val")
    epochs = sizes["epochs"] if epochs is None else epochs
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    key = {"model": "build_cnn_classifier(num_classes=10)", "data": "fashion_mnist/train",
           "n_train": n_train, "n_val": n_val, "split_seed": 0, "epochs": epochs,
           "batch_size": batch_size, "adam_lr": sizes["adam_lr"], "schedule": "cosine",
           "bn_momentum": sizes["bn_momentum"], "seed": sizes["seed"]}
    return _train_cnn_on(DOMAIN_CLASSIFIER_NAME, lambda: fashion_cnn_split(n_train, n_val), key,
                         {**sizes, "epochs": epochs, "batch_size": batch_size}, folder, verbose)


def _train_cnn_on(name: str, split: Callable[[], tuple], key: Mapping[str, Any], sizes: Mapping[str, Any],
                  folder, verbose: bool):
    """Chapter 2's CNN on ``split() = (x_fit, y_fit, x_val, y_val)``: Adam with a cosine decay,
    ``sizes``' epochs, batch size, learning rate, batch-norm momentum and seed; cached under ``key``."""
    lr, momentum, seed = sizes["adam_lr"], sizes["bn_momentum"], sizes["seed"]
    epochs, batch_size = sizes["epochs"], sizes["batch_size"]

    def build():
        return build_fashion_cnn(momentum, seed=seed)

    def train(model, backup=None):
        x_fit, y_fit, x_val, y_val = split()
        steps = epochs * int(np.ceil(len(x_fit) / batch_size))
        model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps)),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        data = make_pipeline(x_fit, y_fit, batch_size=batch_size, seed=seed)
        val = make_pipeline(x_val, y_val, batch_size=batch_size, shuffle=False)
        return model.fit(data, validation_data=val, epochs=epochs, shuffle=False,
                         verbose=0, callbacks=[*progress(name, verbose), *resumable(backup, data=data)])

    return train_or_load(name, build, train, dict(key), folder=folder, verbose=verbose)


def domain_classifier(n_train: int | None | str = "auto", epochs: int | None = None, batch_size: int = 128,
                      folder=None, verbose: bool = True):
    """The Chapter-2 CNN of :func:`train_fashion_cnn` (trained once, cached as a ``.keras`` file).

    Every chapter calling ``domain_classifier()`` gets the network Chapter 2 trained, with
    the mode's sizes (:func:`fashion_cnn_sizes`). Its penultimate ``"features"`` layer
    (128 ReLU units) is the feature space of :func:`~uvbook.evaluate.domain_frechet_distance`; its
    predictions give :func:`~uvbook.evaluate.class_coverage`.
    """
    model, _ = train_fashion_cnn(n_train=n_train, epochs=epochs, batch_size=batch_size,
                                 folder=folder, verbose=verbose)
    return model


# --------------------------------------------------------------------------- Chapter 3: the autoencoders that Chapter 6 reuses

#: The two models that Chapter 3 trains and Chapter 6 reuses, by name, with their architecture.
CHAPTER3_MODELS = {
    "conv_ae_32": {"class": "Autoencoder", "code_dim": 32, "filters": (16, 32), "dense_units": 256},
    "denoising_ae_32": {"class": "DenoisingAutoencoder", "code_dim": 32, "filters": (16, 32),
                        "dense_units": 256, "noise": "gaussian", "noise_level": 0.3},
}
#: How the models of ``CHAPTER3_MODELS`` are trained (Adam, MSE per pixel) on Fashion-MNIST's
#: training split, all of it in full mode and a fixed stratified subset in quick mode.
CHAPTER3_TRAINING = {"dataset": "fashion_mnist", "n_train": {"quick": 3000, "full": None},
                     "epochs": {"quick": 10, "full": 6}, "batch_size": 128, "learning_rate": 2e-3,
                     "seed": 0}


def chapter3_model(name: str, verbose: bool = True):
    """``(model, history)`` of one of :data:`CHAPTER3_MODELS`, loaded from uvbook's cache or trained.

    Chapter 3 trains them; Chapter 6 calls this with the same name and gets the same
    weights from the cache (the key holds the architecture, the data, the training
    settings and the mode; see :func:`uvbook.train.train_or_load`).
    """
    if name not in CHAPTER3_MODELS:
        raise ValueError(f"name must be one of {tuple(CHAPTER3_MODELS)}; got {name!r}")
    arch = dict(CHAPTER3_MODELS[name])
    cfg = CHAPTER3_TRAINING
    n_train = by_mode(**cfg["n_train"])
    epochs = by_mode(**cfg["epochs"])
    key = {"model": name, **arch, "dataset": cfg["dataset"], "split": "train", "n_train": n_train,
           "subset_seed": 0, "epochs": epochs, "batch_size": cfg["batch_size"],
           "optimizer": "adam", "learning_rate": cfg["learning_rate"], "seed": cfg["seed"]}
    cls = {"Autoencoder": Autoencoder, "DenoisingAutoencoder": DenoisingAutoencoder}[arch.pop("class")]

    def build():
        set_seed(cfg["seed"])
        extra = {"seed": cfg["seed"]} if cls is DenoisingAutoencoder else {}
        model = cls.conv(**arch, **extra)
        model.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]))
        return model

    def train(model, backup=None):
        x, _ = load_dataset(cfg["dataset"], "train", n=n_train, seed=0)
        data = make_pipeline(x, batch_size=cfg["batch_size"], seed=cfg["seed"])
        return model.fit(data, epochs=epochs, verbose=0,
                         callbacks=[*progress(name, verbose), *resumable(backup, data=data)])

    return train_or_load(name, build, train, key, verbose=verbose)


def chapter3_images() -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: the Fashion-MNIST training images (and labels) that :data:`CHAPTER3_TRAINING` trains
    on in the current mode, all 60,000 in full mode, a stratified subset (seed 0) in quick mode; the
    chapter's ``x_tr, y_tr`` and the data of every Chapter 3 recipe."""
    cfg = CHAPTER3_TRAINING
    return load_dataset(cfg["dataset"], "train", n=by_mode(**cfg["n_train"]), seed=0)


def _chapter3_key(model: str, config: Mapping[str, Any], sizes: Mapping[str, Any], **data) -> dict:
    """The cache key of a Chapter 3 recipe: what it builds, on which images, trained how."""
    cfg = CHAPTER3_TRAINING
    return {"model": model, "config": dict(config), "dataset": cfg["dataset"], "split": "train",
            "n_train": by_mode(**cfg["n_train"]), "subset_seed": 0, **data, "epochs": sizes["epochs"],
            "batch_size": sizes["batch_size"], "optimizer": "adam", "seed": sizes["seed"]}


def train_chapter3_ae(name: str, make: Callable[[], Autoencoder], learning_rate: float, images: Callable,
                      sizes: Mapping[str, Any], key: Mapping[str, Any], verbose: bool = True):
    """What every Chapter 3 recipe below does once it has named its model: build ``make()`` from
    ``sizes["seed"]``, compile it with Adam at ``learning_rate``, fit it on ``images()`` for
    ``sizes["epochs"]`` in shuffled batches of ``sizes["batch_size"]``, once, cached under ``name``
    and ``key`` (:func:`uvbook.train.train_or_load`): ``(model, history)``."""

    def build() -> Autoencoder:
        set_seed(sizes["seed"])
        model = make()
        model.compile(optimizer=keras.optimizers.Adam(learning_rate))
        return model

    def fit(model: Autoencoder, backup=None):
        data = make_pipeline(images(), batch_size=sizes["batch_size"], seed=sizes["seed"])
        return model.fit(data, epochs=sizes["epochs"], verbose=0,
                         callbacks=[*progress(name, verbose), *resumable(backup, data=data)])

    return train_or_load(name, build, fit, key, verbose=verbose)


#: Chapter 3's linear autoencoder (``Autoencoder.linear``), one ``Dense`` layer each way and no
#: activation, trained with Adam at ``learning_rate`` on the chapter's images (:func:`chapter3_images`).
#: The chapter then finishes it by exact alternating least squares, which the cache does not hold.
LINEAR_AE_CONFIG = {"code_dim": 32, "learning_rate": 1e-3}


def linear_ae_sizes() -> dict:
    """Training sizes of :func:`train_linear_ae` in the current mode: ``epochs`` of Adam in batches
    of :data:`CHAPTER3_TRAINING`'s ``batch_size``, from ``seed``."""
    return {"epochs": by_mode(quick=20, full=5), "batch_size": CHAPTER3_TRAINING["batch_size"],
            "seed": CHAPTER3_TRAINING["seed"]}


def train_linear_ae(verbose: bool = True) -> tuple[Autoencoder, dict[str, list[float]]]:
    """Chapter 3's linear autoencoder (:data:`LINEAR_AE_CONFIG`), trained once and cached as
    ``"ch3_linear_ae_32"``: ``(autoencoder, history)``.

    Trained with Adam on the squared error of :func:`chapter3_images` for :func:`linear_ae_sizes`'
    epochs; ``history`` has ``loss`` and ``mse`` per epoch. Its layers are named ``"code"`` (the
    encoder's ``Dense``) and ``"dense_out"`` (the decoder's), where the chapter reads the weights.
    """
    name, cfg, sizes = "ch3_linear_ae_32", LINEAR_AE_CONFIG, linear_ae_sizes()
    key = _chapter3_key("Autoencoder.linear", cfg, sizes)
    return train_chapter3_ae(name, lambda: Autoencoder.linear(cfg["code_dim"]), cfg["learning_rate"],
                             lambda: chapter3_images()[0], sizes, key, verbose)


#: Chapter 3's sparse autoencoders (``SparseAutoencoder.dense``), 784-256-128 and back, Adam at
#: ``learning_rate``; ``variants`` are the code activations and penalties the chapter compares, by the
#: name :func:`train_sparse_ae` takes (no penalty, L1 on a ReLU code, Ng's KL on a sigmoid code).
SPARSE_AE_CONFIG = {
    "code_dim": 128, "hidden": (256,), "learning_rate": 1e-3,
    "variants": {"none": {"code_activation": "relu", "penalty": "l1", "weight": 0.0},
                 "l1": {"code_activation": "relu", "penalty": "l1", "weight": 3e-4},
                 "kl": {"code_activation": "sigmoid", "penalty": "kl", "weight": 1e-2, "target": 0.05}}}


def sparse_ae_sizes() -> dict:
    """Training sizes of :func:`train_sparse_ae` in the current mode (every variant alike)."""
    return {"epochs": by_mode(quick=10, full=8), "batch_size": CHAPTER3_TRAINING["batch_size"],
            "seed": CHAPTER3_TRAINING["seed"]}


def train_sparse_ae(variant: str, verbose: bool = True) -> tuple[SparseAutoencoder, dict[str, list[float]]]:
    """One of Chapter 3's sparse autoencoders, :data:`SPARSE_AE_CONFIG` with the penalty of
    ``variant`` (``"none"``, ``"l1"`` or ``"kl"``), trained once and cached as
    ``"ch3_sparse_ae_{variant}"``: ``(autoencoder, history)``.

    Trained on :func:`chapter3_images` for :func:`sparse_ae_sizes`' epochs; ``history`` has
    ``loss``, ``mse`` and ``sparsity`` (the penalty, weight included) per epoch.

    Raises:
        ValueError: ``variant`` is not one of ``SPARSE_AE_CONFIG["variants"]``.
    """
    variants = SPARSE_AE_CONFIG["variants"]
    if variant not in variants:
        raise ValueError(f"variant must be one of {tuple(variants)}; got {variant!r}")
    name, sizes = f"ch3_sparse_ae_{variant}", sparse_ae_sizes()
    cfg = {k: v for k, v in SPARSE_AE_CONFIG.items() if k != "variants"} | dict(variants[variant])
    key = _chapter3_key("SparseAutoencoder.dense", cfg, sizes)
    return train_chapter3_ae(name, lambda: SparseAutoencoder.dense(cfg["code_dim"], hidden=cfg["hidden"],
                                                                   **variants[variant]),
                             cfg["learning_rate"], lambda: chapter3_images()[0], sizes, key, verbose)


#: Chapter 3's code-size sweep, the convolutional autoencoder of ``CHAPTER3_MODELS["conv_ae_32"]``
#: with the code size :func:`train_code_size_ae` is given, Adam at :data:`CHAPTER3_TRAINING`'s rate,
#: trained on a random subset of the chapter's images (drawn with ``subset_seed``) for few epochs.
CODE_SIZE_CONFIG = {"filters": CHAPTER3_MODELS["conv_ae_32"]["filters"],
                    "dense_units": CHAPTER3_MODELS["conv_ae_32"]["dense_units"],
                    "learning_rate": CHAPTER3_TRAINING["learning_rate"], "subset_seed": 0}


def code_size_sizes() -> dict:
    """Sizes of the code-size sweep in the current mode: the ``code_dims`` Chapter 3 trains
    :func:`train_code_size_ae` with, each on ``n_train`` of :func:`chapter3_images` (all of them
    if there are no more) for ``epochs``."""
    return {"code_dims": by_mode(quick=(2, 8, 32), full=(2, 8, 16, 32, 64)),
            "n_train": by_mode(quick=3000, full=20000), "epochs": by_mode(quick=6, full=3),
            "batch_size": CHAPTER3_TRAINING["batch_size"], "seed": CHAPTER3_TRAINING["seed"]}


def code_size_images() -> np.ndarray:
    """The images every model of the code-size sweep trains on: ``code_size_sizes()["n_train"]`` of
    :func:`chapter3_images`, drawn without replacement with ``CODE_SIZE_CONFIG["subset_seed"]`` and
    kept in their order (all of them if there are no more)."""
    x, _ = chapter3_images()
    n = code_size_sizes()["n_train"]
    if n is None or n >= len(x):
        return x
    return x[np.sort(np.random.default_rng(CODE_SIZE_CONFIG["subset_seed"]).choice(len(x), n, replace=False))]


def train_code_size_ae(code_dim: int, verbose: bool = True) -> tuple[Autoencoder, dict[str, list[float]]]:
    """One model of Chapter 3's code-size sweep (:data:`CODE_SIZE_CONFIG`) with a ``code_dim``-number
    code, trained once and cached as ``"ch3_code_size_ae_{code_dim}"``: ``(autoencoder, history)``.

    Trained on :func:`code_size_images` for ``code_size_sizes()["epochs"]``; ``history`` has ``loss``
    and ``mse`` per epoch.

    Raises:
        ValueError: ``code_dim`` is not a positive integer.
    """
    code_dim = check_positive_int(code_dim, "code_dim")
    name, cfg, sizes = f"ch3_code_size_ae_{code_dim}", CODE_SIZE_CONFIG, code_size_sizes()
    key = _chapter3_key("Autoencoder.conv", {"code_dim": code_dim, **cfg}, sizes, n_sweep=sizes["n_train"])
    return train_chapter3_ae(name, lambda: Autoencoder.conv(code_dim, filters=cfg["filters"],
                                                            dense_units=cfg["dense_units"]),
                             cfg["learning_rate"], code_size_images, sizes, key, verbose)


#: Chapter 3's anomaly detector, ``CHAPTER3_MODELS["conv_ae_32"]``'s architecture and
#: :data:`CHAPTER3_TRAINING`'s learning rate, trained on the chapter's images of every class but
#: ``held_out`` (8, Bag, unless :func:`train_anomaly_ae` is given another).
ANOMALY_AE_CONFIG = {"code_dim": 32, "filters": CHAPTER3_MODELS["conv_ae_32"]["filters"],
                     "dense_units": CHAPTER3_MODELS["conv_ae_32"]["dense_units"],
                     "learning_rate": CHAPTER3_TRAINING["learning_rate"], "held_out": 8}


def anomaly_ae_sizes() -> dict:
    """Training sizes of :func:`train_anomaly_ae` in the current mode."""
    return {"epochs": by_mode(quick=8, full=3), "batch_size": CHAPTER3_TRAINING["batch_size"],
            "seed": CHAPTER3_TRAINING["seed"]}


def train_anomaly_ae(held_out: int | None = None, verbose: bool = True) -> tuple[Autoencoder, dict[str, list[float]]]:
    """Chapter 3's anomaly detector (:data:`ANOMALY_AE_CONFIG`) trained without the class
    ``held_out`` (a label from 0 to 9; None: the config's, 8, Bag), once, and cached as
    ``"ch3_anomaly_ae_held{held_out}"``: ``(autoencoder, history)``.

    Trained on :func:`chapter3_images` less that class's images for :func:`anomaly_ae_sizes`'
    epochs; ``history`` has ``loss`` and ``mse`` per epoch.

    Raises:
        ValueError: ``held_out`` is not a class label from 0 to 9.
    """
    cfg = {k: v for k, v in ANOMALY_AE_CONFIG.items() if k != "held_out"}
    held_out = ANOMALY_AE_CONFIG["held_out"] if held_out is None else held_out
    if isinstance(held_out, bool) or not isinstance(held_out, (int, np.integer)) or not 0 <= held_out <= 9:
        raise ValueError(f"held_out must be a class label from 0 to 9; got {held_out!r}")
    held_out = int(held_out)
    name, sizes = f"ch3_anomaly_ae_held{held_out}", anomaly_ae_sizes()
    key = _chapter3_key("Autoencoder.conv", cfg, sizes, held_out=held_out)

    def images() -> np.ndarray:
        x, y = chapter3_images()
        return x[y != held_out]

    return train_chapter3_ae(name, lambda: Autoencoder.conv(cfg["code_dim"], filters=cfg["filters"],
                                                            dense_units=cfg["dense_units"]),
                             cfg["learning_rate"], images, sizes, key, verbose)


# --------------------------------------------------------------------------- Chapter 4: GANs

def train_gan(name: str, build: Callable[[], GAN], images: np.ndarray, epochs: int, batch_size: int,
              key: Mapping[str, Any], callbacks: Sequence[keras.callbacks.Callback] = (),
              distance: Callable[[np.ndarray], float] | None = None, monitor_samples: int = 2000,
              seed: int = 0, folder=None, verbose: bool = True,
              collapse_patience: int = 100, labels: np.ndarray | None = None) -> tuple[GAN, dict[str, list[float]]]:
    """Train a GAN on ``images`` in [0, 1], or load it: :func:`uvbook.train.train_or_load` with ``key``.

    ``build`` returns the compiled, untrained model. The cache key is ``key`` plus the
    number of images, ``epochs``, ``batch_size`` and ``seed`` (which also seeds Keras
    before ``build``). A :class:`~uvbook.callbacks.FrechetMonitor` writes ``"elapsed"`` (and ``"frechet"``
    when ``distance`` is given) into the history, so a loaded model reports the time and
    the curve of its original training. ``callbacks`` (e.g. a :class:`~uvbook.callbacks.SampleGrid`) only
    run when the model is trained.

    Training goes through :func:`uvbook.callbacks.resumable`: it is checkpointed after
    every epoch and an interrupted run resumes from its last complete epoch; a NaN or
    infinite loss stops it with :class:`uvbook.callbacks.TrainingDiverged`. For a
    :class:`~uvbook.models.gan.GAN` (not a WGAN-GP), a :class:`uvbook.callbacks.CollapseGuard` warns when
    mean D(G(z)) stays below 0.01 for ``collapse_patience`` consecutive steps and marks
    those epochs with ``d_collapsed`` = 1.0 in the history. A
    :class:`~uvbook.models.gan.ConditionalGAN` trains on ``(images, labels)``.
    """
    images = check_images(images, "images")
    if labels is not None:
        labels = check_labels(labels, "labels", length=len(images))
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(collapse_patience, "collapse_patience")

    def make():
        set_seed(seed)
        return build()

    def fit(gan, backup=None):
        monitor = FrechetMonitor(distance, n=monitor_samples)
        data = make_pipeline(images, labels, batch_size=batch_size, seed=seed)
        # D(fake) is a probability for a GAN, an unbounded score for a WGAN critic
        guards = [] if isinstance(gan, WGANGP) else [CollapseGuard(patience=collapse_patience)]
        return gan.fit(data, epochs=epochs, verbose=0,
                       callbacks=[monitor, *callbacks, *guards, *progress(name, verbose),
                                  *resumable(backup, data=data)])

    full_key = {**dict(key), "n_images": len(images), "epochs": epochs, "batch_size": batch_size, "seed": seed}
    if labels is not None:
        full_key["labels"] = hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()[:16]
    return train_or_load(name, make, fit, full_key, folder=folder, verbose=verbose)


DCGAN_CONFIG = {"latent_dim": 64, "g_filters": (64, 32), "d_filters": (64, 128),
                "adam": (2e-4, 0.5), "batch_size": 32}
DCGAN_EPOCHS = 5  # full mode; quick mode trains 2


def gan_monitor_samples() -> int:
    """Samples behind each point of a GAN recipe's Fréchet curve in the current mode (2,000 in
    full mode, 500 in quick mode): :func:`train_fashion_dcgan` and :func:`train_gan_recipe`."""
    return by_mode(quick=500, full=2000)


def build_fashion_dcgan(latent_dim: int = 64, g_filters: Sequence[int] = (64, 32),
                        d_filters: Sequence[int] = (64, 128), lr: float = 2e-4, beta_1: float = 0.5) -> GAN:
    """The compiled DCGAN of Chapter 4 (non-saturating loss, Adam(2e-4, beta_1=0.5) for both players)."""
    gan = GAN(build_dcgan_generator(latent_dim, filters=g_filters), build_dcgan_discriminator(filters=d_filters),
              latent_dim, seed=0)
    gan.compile(d_optimizer=keras.optimizers.Adam(lr, beta_1=beta_1),
                g_optimizer=keras.optimizers.Adam(lr, beta_1=beta_1))
    return gan


def train_fashion_dcgan(epochs: int | None = None, n_train: int | None | str = "auto",
                        callbacks: Sequence[keras.callbacks.Callback] = (), folder=None,
                        verbose: bool = True) -> tuple[GAN, dict[str, list[float]]]:
    """The DCGAN of Chapter 4 on Fashion-MNIST, trained once and cached; Chapter 6 reuses its discriminator.

    Defaults depend on the mode (full: all 60,000 training images and the chapter's
    epochs; quick: an 8,000-image subset, 2 epochs), so that Chapters 4 and 6 share one
    cache entry. The history holds ``"frechet"``: the Fréchet distance on the domain
    classifier's features (:func:`uvbook.evaluate.domain_frechet_distance`) of 2,000
    samples (500 in quick mode) to the Fashion-MNIST test set, after every epoch.
    """
    epochs = by_mode(quick=2, full=DCGAN_EPOCHS) if epochs is None else epochs
    if isinstance(n_train, str) and n_train == "auto":
        n_train = by_mode(quick=8000, full=None)
    check_positive_int(epochs, "epochs")  # before anything is loaded or trained
    if n_train is not None:
        check_positive_int(n_train, "n_train")
    x, _ = load_dataset("fashion_mnist", "train", n=n_train)
    classifier = domain_classifier(verbose=verbose)
    distance = _test_set_distance(classifier)
    cfg = DCGAN_CONFIG
    key = {"model": "uvbook.models.gan.build_fashion_dcgan", **{k: v for k, v in cfg.items() if k != "batch_size"},
           "data": "fashion_mnist/train", "n_train": n_train,
           "scored_by": weights_digest(classifier)}  # the history's Fréchet curve depends on the ruler
    return train_gan("dcgan_fashion_mnist",
                     lambda: build_fashion_dcgan(cfg["latent_dim"], cfg["g_filters"], cfg["d_filters"], *cfg["adam"]),
                     x, epochs, cfg["batch_size"], key, callbacks=callbacks,
                     distance=distance,
                     monitor_samples=gan_monitor_samples(), folder=folder, verbose=verbose)


# --------------------------------------------------------------------------- Chapter 4: training GANs well

#: The techniques that Chapter 4's second part measures, each a change to ``DCGAN_CONFIG``
#: (two time-scale learning rates (Heusel et al. 2017), spectral normalisation of the
#: discriminator (Miyato et al. 2018), the R1 penalty (Mescheder et al. 2018; ``gamma``), and
#: the hinge loss (Lim & Ye 2017)). The moving average of the generator's weights (Yazıcı et al.
#: 2019) is kept by every run (:data:`GAN_AVERAGE_DECAY`), so each run is scored twice: with
#: and without it.
GAN_TECHNIQUES: dict[str, dict[str, Any]] = {
    "TTUR": {"adam_d": (4e-4, 0.5), "adam_g": (1e-4, 0.5)},
    "spectral norm": {"spectral_norm": True},
    "R1": {"r1_weight": 0.1},
    "hinge": {"loss": "hinge"},
}
#: The decay of the generator's moving average in every run of :func:`train_gan_recipe`.
GAN_AVERAGE_DECAY = 0.999


def gan_recipe(techniques: Sequence[str] = ()) -> dict[str, Any]:
    """``DCGAN_CONFIG`` with the changes of each named technique of :data:`GAN_TECHNIQUES`.

    Raises:
        ValueError: a name that is not a key of :data:`GAN_TECHNIQUES`, or a repeated one.
    """
    techniques = tuple(techniques)
    unknown = [t for t in techniques if t not in GAN_TECHNIQUES]
    if unknown or len(set(techniques)) != len(techniques):
        raise ValueError(f"techniques must be distinct names from {tuple(GAN_TECHNIQUES)}; got {techniques}")
    lr, beta_1 = DCGAN_CONFIG["adam"]
    config = {"latent_dim": DCGAN_CONFIG["latent_dim"], "g_filters": DCGAN_CONFIG["g_filters"],
              "d_filters": DCGAN_CONFIG["d_filters"], "adam_d": (lr, beta_1), "adam_g": (lr, beta_1),
              "spectral_norm": False, "r1_weight": 0.0, "loss": "non_saturating",
              "ema_decay": GAN_AVERAGE_DECAY, "batch_size": DCGAN_CONFIG["batch_size"]}
    for name in sorted(techniques, key=list(GAN_TECHNIQUES).index):  # one config per set, whatever the order
        config.update(GAN_TECHNIQUES[name])
    return config


def build_gan_recipe(config: Mapping[str, Any], n_classes: int | None = None) -> GAN:
    """The compiled GAN of a :func:`gan_recipe` config; with ``n_classes``, the conditional
    version (:class:`~uvbook.models.gan.ConditionalGAN`: the class goes into the generator's input
    and into a projection discriminator)."""
    options = {"loss": config["loss"], "r1_weight": config["r1_weight"], "ema_decay": config["ema_decay"], "seed": 0}
    if n_classes is None:
        gan = GAN(build_dcgan_generator(config["latent_dim"], filters=config["g_filters"]),
                  build_dcgan_discriminator(filters=config["d_filters"], spectral_norm=config["spectral_norm"]),
                  config["latent_dim"], **options)
    else:
        gan = ConditionalGAN(build_conditional_generator(config["latent_dim"], n_classes, config["g_filters"]),
                             build_projection_discriminator(n_classes, config["d_filters"], config["spectral_norm"]),
                             config["latent_dim"], n_classes=n_classes, **options)
    gan.compile(d_optimizer=keras.optimizers.Adam(*config["adam_d"]),
                g_optimizer=keras.optimizers.Adam(*config["adam_g"]))
    return gan


def train_gan_recipe(techniques: Sequence[str] = (), epochs: int | None = None, conditional: bool = False,
                     n_train: int | None | str = "auto", folder=None,
                     verbose: bool = True) -> tuple[GAN, dict[str, list[float]]]:
    """A GAN of :func:`gan_recipe` on Fashion-MNIST, trained once and cached (Chapter 4, second part).

    Everything but ``techniques`` is Chapter 4's DCGAN (:func:`train_fashion_dcgan`): the same
    images (``"auto"``: all 60,000 in full mode, 8,000 in quick mode), batch size and seed.
    The history holds, after every epoch, ``"frechet"`` (the Fréchet distance of 2,000
    samples of the moving average, 500 in quick mode, as in :func:`train_fashion_dcgan`),
    ``"frechet_raw"`` (the same for the generator itself) and ``"elapsed"``.
    ``conditional=True`` trains the class-conditional version on the images and their labels.
    """
    config = gan_recipe(techniques)
    epochs = by_mode(quick=2, full=DCGAN_EPOCHS) if epochs is None else epochs
    if isinstance(n_train, str) and n_train == "auto":
        n_train = by_mode(quick=8000, full=None)
    check_positive_int(epochs, "epochs")
    if n_train is not None:
        check_positive_int(n_train, "n_train")
    x, y = load_dataset("fashion_mnist", "train", n=n_train)
    classifier = domain_classifier(verbose=verbose)
    distance = _test_set_distance(classifier)
    n_classes = 10 if conditional else None
    key = {"model": "uvbook.recipes.build_gan_recipe", **{k: v for k, v in config.items() if k != "batch_size"},
           "n_classes": n_classes, "data": "fashion_mnist/train", "n_train": n_train,
           "scored_by": weights_digest(classifier)}
    name = "cgan_fashion_mnist" if conditional else "gan_recipe_fashion_mnist"
    return train_gan(name, lambda: build_gan_recipe(config, n_classes), x, epochs, config["batch_size"], key,
                     distance=distance, monitor_samples=gan_monitor_samples(), folder=folder,
                     verbose=verbose, labels=y if conditional else None)


#: The test set's features on each domain classifier (by the digest of its weights), computed
#: once per session: every GAN scored by one ruler shares them.
_TEST_FEATURES: dict[str, np.ndarray] = {}


def _test_set_distance(classifier) -> Callable[[np.ndarray], float]:
    """Images -> their Fréchet distance to the Fashion-MNIST test set on ``classifier``'s features.

    The test set's features are computed on the first call (a cache hit never needs them).
    """
    digest = weights_digest(classifier)

    def distance(images):
        if digest not in _TEST_FEATURES:
            _TEST_FEATURES[digest] = domain_features(classifier, load_dataset("fashion_mnist", "test")[0])
        return domain_frechet_distance(classifier, images, _TEST_FEATURES[digest])
    return distance


def cas_sizes() -> dict:
    """Sizes of the Classification Accuracy Score (Ravuri & Vinyals 2019) in the current mode:
    generated images per class, and the CNN's training (Chapter 2's: :func:`fashion_cnn_sizes`)."""
    return {"per_class": by_mode(quick=300, full=6000), "seed": 11, **fashion_cnn_sizes()}


def train_cas_classifier(gan: ConditionalGAN, gan_name: str, folder=None,
                         verbose: bool = True) -> tuple[keras.Model, dict[str, list[float]]]:
    """Chapter 2's CNN trained on ``gan``'s images only (balanced, :func:`cas_sizes`), cached.

    The images and their labels are what the conditional GAN was asked for; a tenth of them
    is held out as the validation split. Scored on the real test set, this model's accuracy
    is the Classification Accuracy Score. ``gan_name`` names the GAN in the cache key, with
    the digest of its generators' weights.
    """
    if not isinstance(gan, ConditionalGAN):
        raise ValueError(f"gan must be a ConditionalGAN (the CNN needs labelled images); got {type(gan).__name__}")
    sizes = cas_sizes()
    per_class, n_classes = sizes["per_class"], gan.n_classes

    def images():
        labels = np.repeat(np.arange(n_classes), per_class)
        x = gan.generate(len(labels), seed=sizes["seed"], labels=labels)
        is_val = np.zeros(len(labels), dtype=bool)
        is_val[stratified_subset(labels, len(labels) // 10, seed=0)] = True
        return x[~is_val], labels[~is_val], x[is_val], labels[is_val]

    key = {"model": "build_cnn_classifier(num_classes=10)", "data": f"generated by {gan_name}",
           "generator": weights_digest(gan.sampler()), "per_class": per_class,
           **{k: v for k, v in sizes.items() if k not in ("n_train", "n_val", "per_class")}}
    return _train_cnn_on(f"cas_{gan_name}", images, key, sizes, folder, verbose)


# --------------------------------------------------------------------------- Chapter 5: the VAE that Chapter 6 reuses

#: The conv VAE of Chapter 5 that Chapter 6 takes features from (``z_mean``).
FASHION_VAE_CONFIG = {"latent_dim": 16, "architecture": "conv", "filters": (32, 64), "dense_units": 256,
                      "beta": 1.0, "binarize": True, "learning_rate": 1e-3}


def fashion_vae_sizes() -> dict:
    """Training sizes of :func:`train_fashion_vae` in the current mode (quick or full): ``n_val`` of the
    ``n_train`` training images are held out for validation (:func:`fashion_cnn_split`)."""
    return {"n_train": by_mode(quick=3300, full=None), "n_val": by_mode(quick=300, full=5000),
            "epochs": by_mode(quick=3, full=8), "batch_size": 128, "seed": 0}


def train_fashion_vae(verbose: bool = True) -> tuple[VAE, dict[str, list[float]]]:
    """Chapter 5's conv VAE on Fashion-MNIST: trained once, then loaded by any chapter.

    :data:`FASHION_VAE_CONFIG`, trained with dynamic binarisation on the training set
    (:func:`fashion_vae_sizes` for the mode) less a stratified validation split
    (:func:`fashion_cnn_split`, Chapter 2's), which is binarised once with seed 0 and
    evaluated after every epoch; the test set is never seen. Cached by
    :func:`uvbook.train.train_or_load` under an explicit key, so
    Chapter 6 calling this function gets the very weights Chapter 5 trained.
    """
    sizes = fashion_vae_sizes()
    key = {"model": "uvbook.models.vae.VAE", "config": FASHION_VAE_CONFIG,
           "data": "fashion_mnist train (stratified subset n_train; None = all), dynamically binarised",
           "validation": "fashion_cnn_split of the training set (stratified, seed 0), binarised with seed 0",
           **sizes}

    def build() -> VAE:
        set_seed(sizes["seed"])
        return build_vae(seed=sizes["seed"], name="fashion_vae", **FASHION_VAE_CONFIG)

    def fit(model: VAE, backup=None):
        x, _, x_val, _ = fashion_cnn_split(sizes["n_train"], sizes["n_val"])
        train = make_pipeline(x, batch_size=sizes["batch_size"], seed=sizes["seed"])
        val = make_pipeline(binarize(x_val, seed=0), batch_size=1000, shuffle=False)
        return model.fit(train, epochs=sizes["epochs"], validation_data=val, verbose=0,
                         callbacks=[*progress("fashion_vae", verbose), *resumable(backup, data=train)])

    return train_or_load("fashion_vae", build, fit, key, verbose=verbose)


# --------------------------------------------------------------------------- Chapter 6: SimCLR (and Chapters 7, 8)

#: The settings of the SimCLR that Chapter 6 trains (encoder, head, loss, augmentations, Adam).
FASHION_SIMCLR_CONFIG = {"filters": (32, 64), "head_hidden": (256, 128), "projection_dim": 128,
                         "head_batchnorm": True, "temperature": 0.2, "crop_scale": (0.2, 1.0), "flip": True,
                         "jitter": 0.4, "learning_rate": 1e-3, "warmup_fraction": 0.05}


def fashion_simclr_sizes() -> dict:
    """Training sizes of :func:`train_fashion_simclr` in the current mode (quick or full).

    ``n_train`` training images (a stratified subset; None: all 60,000), of which
    ``n_monitor`` (stratified, seed 0) are held out of training and only watched:
    :class:`~uvbook.callbacks.NeighbourMonitor` reports their k-NN accuracy every epoch.
    """
    return {"n_train": by_mode(quick=2000, full=None), "n_monitor": by_mode(quick=400, full=5000),
            "epochs": by_mode(quick=2, full=10), "batch_size": 256, "seed": 0}


def fashion_simclr_split(n_train: int | None, n_monitor: int):
    """``(x_fit, x_monitor, y_monitor)``: the images SimCLR trains on (no labels) and the held-out
    images whose k-NN accuracy the monitor reports."""
    x, y = load_dataset("fashion_mnist", "train", n=n_train)
    check_positive_int(n_monitor, "n_monitor")
    if n_monitor >= len(y):
        raise ValueError(f"n_monitor must be smaller than the {len(y)} training images; got {n_monitor}")
    watched = np.zeros(len(y), dtype=bool)
    watched[stratified_subset(y, n_monitor, seed=0)] = True
    return x[~watched], x[watched], y[watched]


def train_fashion_simclr(verbose: bool = True) -> tuple[SimCLR, dict[str, list[float]]]:
    """Chapter 6's SimCLR on Fashion-MNIST: trained once, then loaded by any chapter.

    :data:`FASHION_SIMCLR_CONFIG` trained on the training images without labels
    (:func:`fashion_simclr_sizes` for the mode, :func:`fashion_simclr_split` for the images),
    cached by :func:`uvbook.train.train_or_load` under an explicit key, so that Chapters 7 and 8
    calling this function gets the very weights Chapter 6 trained. The history has the
    loss, the contrastive accuracy, ``knn_accuracy`` of the held-out images and the
    ``elapsed`` training seconds, per epoch; ``verbose`` prints one line an epoch.
    Features: :meth:`~uvbook.models.contrastive.SimCLR.encode`.
    """
    sizes = fashion_simclr_sizes()
    key = {"model": "uvbook.models.contrastive.SimCLR (conv trunk encoder)", "config": FASHION_SIMCLR_CONFIG,
           "data": "fashion_mnist train images (stratified subset n_train; None = all) less n_monitor, no labels",
           **sizes}
    x_fit, x_watch, y_watch = fashion_simclr_split(sizes["n_train"], sizes["n_monitor"])
    steps = sizes["epochs"] * math.ceil(len(x_fit) / sizes["batch_size"])

    def build() -> SimCLR:
        set_seed(sizes["seed"])
        return build_simclr(seed=sizes["seed"], name="fashion_simclr", total_steps=steps, **FASHION_SIMCLR_CONFIG)

    def fit(model: SimCLR, backup=None):
        data = make_pipeline(x_fit, batch_size=sizes["batch_size"], seed=sizes["seed"])
        monitor = NeighbourMonitor(x_watch, y_watch, k=5)
        return model.fit(data, epochs=sizes["epochs"], verbose=0,
                         callbacks=[monitor, *progress("fashion_simclr", verbose), *resumable(backup, data=data)])

    return train_or_load("fashion_simclr", build, fit, key, verbose=verbose)


#: SCAN on SimCLR's features (Van Gansbeke et al. 2020), with 20 neighbours and entropy weight 5 as
#: in the paper's code and Adam at 1e-4. The head projects the unit-length features on 256 principal
#: components, then one hidden layer of 512 ReLUs, then one logit a cluster.
FASHION_SCAN_CONFIG = {"n_clusters": 10, "hidden": 512, "n_components": 256, "neighbours": 20,
                       "entropy_weight": 5.0, "learning_rate": 1e-4, "batch_size": 256}


def fashion_scan_sizes() -> dict:
    """Training sizes of :func:`train_fashion_scan`: the images the SimCLR encoder trained on
    (``n_train`` and ``n_monitor`` of :func:`fashion_simclr_sizes`), ``epochs`` passes over them."""
    simclr = fashion_simclr_sizes()
    return {"n_train": simclr["n_train"], "n_monitor": simclr["n_monitor"], "epochs": 20, "seed": 0}


def train_fashion_scan(verbose: bool = True) -> tuple[SCAN, dict[str, list[float]]]:
    """Chapter 6's SCAN clustering head on the features of :func:`train_fashion_simclr`'s encoder.

    :data:`FASHION_SCAN_CONFIG` on the SimCLR features of the images the encoder trained on
    (no labels; :func:`fashion_simclr_split`): :func:`~uvbook.models.scan.mine_neighbours`
    finds every image's neighbours, then :class:`~uvbook.models.scan.SCAN` trains the head
    on (image, random neighbour) pairs. Cached under a key holding the SimCLR weights'
    digest, so a new SimCLR retrains it. The history has the loss and its consistency and
    entropy terms, and (:class:`~uvbook.callbacks.ClusterMonitor`) the clustering accuracy
    and NMI of the encoder's held-out images with the training seconds so far, per epoch.
    """
    cfg, sizes = FASHION_SCAN_CONFIG, fashion_scan_sizes()
    simclr = train_fashion_simclr(verbose=False)[0]
    key = {"model": "uvbook.models.scan.SCAN on SimCLR features", "config": cfg, **sizes,
           "encoder": weights_digest(simclr.encoder),
           "data": "the SimCLR encoder's training images (fashion_simclr_split), no labels; its held-out "
                   "images watched"}
    encoded: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def features() -> tuple[np.ndarray, np.ndarray, np.ndarray]:   # only when the head is trained, not loaded
        if not encoded:
            x_fit, x_watch, y_watch = fashion_simclr_split(sizes["n_train"], sizes["n_monitor"])
            encoded.append((simclr.encode(x_fit), simclr.encode(x_watch), y_watch))
        return encoded[0]

    def build() -> SCAN:
        set_seed(sizes["seed"])
        head = build_scan_head(features()[0], cfg["n_clusters"], cfg["hidden"], cfg["n_components"])
        model = SCAN(head, entropy_weight=cfg["entropy_weight"], name="fashion_scan")
        model.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]))
        return model

    def fit(model: SCAN, backup=None):
        h, h_watch, y_watch = features()
        pairs = neighbour_pairs(h, mine_neighbours(model.head, h, cfg["neighbours"]), cfg["batch_size"],
                                seed=sizes["seed"])
        steps = max(1, len(h) // cfg["batch_size"])   # the pairs never end: 0 steps would never end an epoch
        return model.fit(pairs, epochs=sizes["epochs"], steps_per_epoch=steps, verbose=0,
                         callbacks=[ClusterMonitor(h_watch, y_watch), *progress("fashion_scan", verbose),
                                    *resumable(backup)])

    return train_or_load("fashion_scan", build, fit, key, verbose=verbose)


# --------------------------------------------------------------------------- Chapter 7: the few-label classifiers

#: FixMatch as Chapter 7 trains it (Sohn et al. 2020's threshold, ratio and weight; Adam
#: instead of their SGD, whose schedule is set for a million steps). The supervised and
#: fine-tuned rows use the same learning rate, augmentation and dropout. Adam's rate 3e-3
#: beat 1e-3 for FixMatch on the held-out training images (labels used only to report) at
#: every labelled-set size and draw tried.
FIXMATCH_CONFIG = {"threshold": 0.95, "unlabelled_weight": 1.0, "ratio": 7, "batch_size": 32,
                   "learning_rate": 3e-3, "shift": 2, "crop_scale": (0.3, 1.0), "jitter": 0.5, "cutout": 10,
                   "head_dropout": 0.3}

#: The methods :func:`train_few_label_classifier` trains: which network, from where, on what.
METHODS = {
    "supervised": "Chapter 2's CNN from scratch, labelled images only (weak augmentation)",
    "finetune": "Chapter 6's SimCLR encoder and a linear layer, fine-tuned on the labelled images only",
    "fixmatch": "Chapter 6's SimCLR encoder and a linear layer, trained by FixMatch on both",
    "sgan": "a semi-supervised GAN (K logits and 'generated', feature matching) from scratch, on both",
    "m2": "M2 on Chapter 5's VAE posterior (M1 + M2), on both",
}

#: Settings of Chapter 7's semi-supervised GAN, Salimans et al.'s (2016) MNIST networks (without
#: their weight normalisation), with a batch of labelled and one of unlabelled images a step, Adam.
SGAN_CONFIG = {"latent_dim": 100, "g_hidden": (500, 500), "d_hidden": (1000, 500, 250, 250, 250),
               "input_noise": 0.3, "hidden_noise": 0.5, "unsupervised_weight": 1.0, "labelled_batch": 100,
               "unlabelled_batch": 100, "learning_rate": 1e-3, "beta_1": 0.5}

#: Settings of Chapter 7's M2 on Chapter 5's VAE posterior (Kingma et al. 2014's M1 + M2, with the
#: book's VAE as M1), one hidden layer of 500 units a network, the paper's alpha, Adam as in its code.
M2_CONFIG = {"latent_dim": 16, "hidden": (500,), "alpha": 0.1, "labelled_batch": 100, "unlabelled_batch": 100,
             "learning_rate": 3e-4}


#: Training steps per call into TensorFlow for Chapter 7's small dense networks (the semi-supervised
#: GAN and M2): their steps are so short that Python's per-step overhead would otherwise be a good
#: part of the time (M2 trains about twice as fast with 10). The reports stay once per
#: ``report_every`` steps, a multiple of it.
SMALL_NET_STEPS_PER_CALL = 10


def semisup_sizes() -> dict:
    """Chapter 7's sizes in the current mode: ``n_train`` training images (a stratified subset in
    quick mode, as in Chapter 6; None: all 60,000), ``n_watch`` of them held out and only watched
    (their accuracy is the training curve), the labelled-only runs' ``supervised_steps`` and
    FixMatch's ``steps``, with a report every ``report_every`` steps."""
    return {"n_train": by_mode(quick=3000, full=None), "n_watch": by_mode(quick=300, full=5000),
            "supervised_steps": by_mode(quick=40, full=300), "supervised_batch": 32,
            "steps": by_mode(quick=60, full=1000), "report_every": by_mode(quick=30, full=200)}


def generative_semisup_steps(method: str) -> dict:
    """Training steps of the semi-supervised GAN (``"sgan"``) or of M2 (``"m2"``) in the current
    mode, with a report every ``report_every`` steps (kept apart from :func:`semisup_sizes`, whose
    values are in the cache keys of the other methods' trained models)."""
    if method not in ("sgan", "m2"):
        raise ValueError(f"method must be 'sgan' or 'm2'; got {method!r}")
    steps = {"sgan": by_mode(quick=60, full=500), "m2": by_mode(quick=200, full=1500)}[method]
    return {"steps": steps, "report_every": max(1, steps // by_mode(quick=2, full=5))}


def semisup_split(per_class: int, seed: int, n_train: int | None = None, n_watch: int = 5000) -> dict:
    """The images of one few-label run, as arrays: ``x_l, y_l`` (``per_class`` labelled images a
    class, drawn by :func:`uvbook.data.few_labels` with ``seed`` exactly as Chapter 6 draws
    them), ``x_u`` (every other training image) with ``y_u``, their labels, which no method
    sees (the chapter uses them only to check pseudo-labels), and ``x_watch, y_watch``: a
    stratified set of ``n_watch`` training images (seed 0; Chapter 6's held-out set in full
    mode), kept out of both, whose labels only report progress."""
    x, y = load_dataset("fashion_mnist", "train", n=n_train)
    check_positive_int(n_watch, "n_watch")
    labelled = np.zeros(len(y), dtype=bool)
    labelled[few_labels(y, per_class, seed=seed)] = True
    watched = np.zeros(len(y), dtype=bool)
    watched[stratified_subset(y, n_watch, seed=0)] = True
    watched &= ~labelled
    rest = ~labelled & ~watched
    return {"x_l": x[labelled], "y_l": y[labelled], "x_u": x[rest], "y_u": y[rest],
            "x_watch": x[watched], "y_watch": y[watched]}


def build_few_label_classifier(encoder: keras.Model | None = None, dropout: float = 0.3,
                               seed: int = 0) -> keras.Model:
    """The network a few-label method trains, with logits out: Chapter 2's CNN from scratch when
    ``encoder`` is None (batch-normalisation momentum 0.9, as Chapter 2 sets it for short runs), else a copy of ``encoder`` (its weights too) with dropout and a linear
    layer on top."""
    set_seed(seed)
    if encoder is None:
        model = build_cnn_classifier(logits=True)
        for layer in model.layers:       # short runs: batch statistics that keep up (Chapter 2)
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
        return model
    copy = keras.models.clone_model(encoder)
    copy.set_weights(encoder.get_weights())
    inputs = keras.Input(shape=tuple(encoder.inputs[0].shape[1:]), name="image")
    h = keras.layers.Dropout(dropout, name="dropout")(copy(inputs))
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(h), name="finetuned_encoder")


def train_few_label_classifier(method: str, per_class: int, seed: int, verbose: bool = True,
                               steps: int | None = None) -> tuple[keras.Model, dict[str, list[float]]]:
    """One of Chapter 7's trained methods (:data:`METHODS`) on one labelled draw: ``(classifier,
    history)``, trained once and cached (:func:`uvbook.train.train_or_load`).

    ``"sgan"`` and ``"m2"`` are :func:`train_sgan_classifier` and :func:`train_m2_classifier`.
    ``"supervised"`` and ``"finetune"`` train on the labelled images alone with
    :func:`~uvbook.models.semisup.weak_augment` (``supervised_steps`` steps of Adam, cosine decay); ``"fixmatch"``
    trains :class:`~uvbook.models.semisup.FixMatch` with :data:`FIXMATCH_CONFIG` for ``steps`` steps
    (:func:`semisup_sizes`'s unless ``steps``, a multiple of 10, is given: FixMatch only). Both start from
    Chapter 6's SimCLR encoder, loaded or trained by
    :func:`uvbook.recipes.train_fashion_simclr`. ``verbose`` prints a line per
    report with the held-out accuracy.

    Raises:
        ValueError: an unknown ``method``, a ``per_class`` the classes cannot supply, or
            ``steps`` for another method than ``"fixmatch"`` or not a positive multiple of 10.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}; got {method!r}")
    check_positive_int(per_class, "per_class")
    if steps is not None:
        if method != "fixmatch":
            raise ValueError(f"steps can be set for method 'fixmatch' only; got steps={steps!r} for {method!r}")
        if check_positive_int(steps, "steps") % 10:
            raise ValueError(f"steps must be a multiple of 10 (ten reports a run); got {steps}")
    if method == "sgan":
        return train_sgan_classifier(per_class, seed, verbose)
    if method == "m2":
        return train_m2_classifier(per_class, seed, verbose)
    name = f"ch7_{method}_k{per_class}_s{seed}" + ("" if steps is None else f"_{steps}steps")
    sizes = semisup_sizes()
    data = semisup_split(per_class, seed, sizes["n_train"], sizes["n_watch"])
    encoder = None
    key = {"method": method, "network": METHODS[method], "bn_momentum": 0.9, "per_class": per_class,
           "seed": seed, "sizes": sizes,
           "data": "fashion_mnist train: few_labels(per_class, seed) labelled, stratified n_watch watched, "
                   "the rest unlabelled"}
    if method != "supervised":
        encoder = train_fashion_simclr(verbose=False)[0].encoder
        key["encoder"] = weights_digest(encoder)
    cfg = FIXMATCH_CONFIG
    key["config"] = cfg                  # every method reads its rate, augmentation and dropout
    if method == "fixmatch" and steps is not None:
        key["steps"] = steps
        every = steps // 10
    elif method == "fixmatch":
        steps, every = sizes["steps"], sizes["report_every"]
    else:
        steps, every = sizes["supervised_steps"], max(1, sizes["supervised_steps"] // 4)

    def build() -> keras.Model:
        classifier = build_few_label_classifier(encoder, cfg["head_dropout"], seed=seed)
        rate = keras.optimizers.schedules.CosineDecay(cfg["learning_rate"], steps)
        if method == "fixmatch":
            model = FixMatch(classifier, threshold=cfg["threshold"], unlabelled_weight=cfg["unlabelled_weight"],
                             shift=cfg["shift"], crop_scale=cfg["crop_scale"], jitter=cfg["jitter"],
                             cutout=cfg["cutout"], seed=seed, name="fixmatch")
            model.compile(optimizer=keras.optimizers.Adam(rate))
            return model
        classifier.compile(optimizer=keras.optimizers.Adam(rate), metrics=["accuracy"],
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return classifier

    def fit(model: keras.Model, backup=None):
        if method == "fixmatch":
            batches = semisup_pipeline(data["x_l"], data["y_l"], data["x_u"], cfg["batch_size"], cfg["ratio"],
                                       seed=seed, n_classes=10).repeat()
        else:
            gen = keras.random.SeedGenerator(seed)
            batches = prefetched(tf.data.Dataset.from_tensor_slices((data["x_l"], data["y_l"]))
                                 .shuffle(len(data["y_l"]), seed=seed).repeat().batch(sizes["supervised_batch"])
                                 .map(lambda x, y: (weak_augment(x, gen, cfg["shift"]), y)))
        watch = WatchAccuracy(data["x_watch"], data["y_watch"])
        return model.fit(batches, epochs=steps // every, steps_per_epoch=every, verbose=0,
                         callbacks=[watch, *progress(name, verbose), *resumable(backup)])

    model, history = train_or_load(name, build, fit, key, verbose=verbose)
    return getattr(model, "classifier", model), history


def _generative_key(method: str, per_class: int, seed: int, config: dict) -> dict:
    return {"method": method, "network": METHODS[method], "per_class": per_class, "seed": seed,
            "sizes": {**semisup_sizes(), **generative_semisup_steps(method)}, "config": config,
            "data": "fashion_mnist train: few_labels(per_class, seed) labelled, stratified n_watch watched, "
                    "the rest unlabelled"}


def train_sgan_classifier(per_class: int, seed: int, verbose: bool = True) -> tuple[keras.Model, dict]:
    """Chapter 7's semi-supervised GAN (:class:`~uvbook.models.semigen.SemiSupervisedGAN`,
    :data:`SGAN_CONFIG`) on one labelled draw of :func:`semisup_split`: ``(classifier, history)``,
    the classifier being the discriminator's class logits. Trained once and cached."""
    check_positive_int(per_class, "per_class")
    cfg, sizes, steps = SGAN_CONFIG, semisup_sizes(), generative_semisup_steps("sgan")
    name = f"ch7_sgan_k{per_class}_s{seed}"
    data = semisup_split(per_class, seed, sizes["n_train"], sizes["n_watch"])

    def build() -> SemiSupervisedGAN:
        set_seed(seed)
        model = SemiSupervisedGAN(build_sgan_generator(cfg["latent_dim"], cfg["g_hidden"]),
                                  build_sgan_discriminator(10, cfg["d_hidden"], cfg["input_noise"],
                                                           cfg["hidden_noise"]),
                                  unsupervised_weight=cfg["unsupervised_weight"], seed=seed, name="sgan")
        model.compile(d_optimizer=keras.optimizers.Adam(cfg["learning_rate"], beta_1=cfg["beta_1"]),
                      g_optimizer=keras.optimizers.Adam(cfg["learning_rate"], beta_1=cfg["beta_1"]),
                      steps_per_execution=SMALL_NET_STEPS_PER_CALL)
        return model

    def fit(model: SemiSupervisedGAN, backup=None):
        batches = semisup_batches(data["x_l"], data["y_l"], data["x_u"], cfg["labelled_batch"],
                                  cfg["unlabelled_batch"], seed=seed)
        every = steps["report_every"]
        return model.fit(batches, epochs=steps["steps"] // every, steps_per_epoch=every, verbose=0,
                         callbacks=[WatchAccuracy(data["x_watch"], data["y_watch"]), *progress(name, verbose),
                                    *resumable(backup)])

    model, history = train_or_load(name, build, fit, _generative_key("sgan", per_class, seed, cfg), verbose=verbose)
    return model.classifier, history


def m1_posterior(vae: VAE, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """``[z_mean, z_log_var]`` of ``vae``'s encoder for images ``x``, side by side (N, 2 * latent):
    the inputs M2 takes with ``posterior_inputs=True``."""
    x = check_images(x, "x")
    check_positive_int(batch_size, "batch_size")
    parts = []
    for i in range(0, len(x), batch_size):
        z_mean, z_log_var = vae.encoder(x[i:i + batch_size], training=False)
        parts.append(np.concatenate([keras.ops.convert_to_numpy(z_mean), keras.ops.convert_to_numpy(z_log_var)], 1))
    return np.concatenate(parts).astype("float32")


def m1_m2_classifier(vae: VAE, m2: M2) -> keras.Model:
    """Images to class logits: ``vae``'s posterior mean, then ``m2``'s classifier ``q(y|z_1)``."""
    image = keras.Input(tuple(vae.encoder.inputs[0].shape[1:]), name="image")
    z_mean, _ = vae.encoder(image)
    return keras.Model(image, m2.classifier(z_mean), name="m1_m2_classifier")


def train_m2_classifier(per_class: int, seed: int, verbose: bool = True) -> tuple[keras.Model, dict]:
    """Chapter 7's M1 + M2: :class:`~uvbook.models.semigen.M2` (:data:`M2_CONFIG`) trained on the
    posterior of Chapter 5's VAE (:func:`train_fashion_vae`, loaded from the cache or trained)
    for one labelled draw of :func:`semisup_split`. Returns ``(classifier, history)``, the
    classifier taking images (:func:`m1_m2_classifier`). Trained once and cached."""
    check_positive_int(per_class, "per_class")
    cfg, sizes, steps = M2_CONFIG, semisup_sizes(), generative_semisup_steps("m2")
    name = f"ch7_m2_k{per_class}_s{seed}"
    data = semisup_split(per_class, seed, sizes["n_train"], sizes["n_watch"])
    vae = train_fashion_vae(verbose=False)[0]
    key = {**_generative_key("m2", per_class, seed, cfg), "m1": weights_digest(vae)}
    h_l, h_u = m1_posterior(vae, data["x_l"]), m1_posterior(vae, data["x_u"])
    share = len(h_l) / (len(h_l) + len(h_u))

    def build() -> M2:
        set_seed(seed)
        model = M2(h_l.shape[1] // 2, 10, cfg["latent_dim"], cfg["hidden"], alpha=cfg["alpha"],
                   labelled_share=share, posterior_inputs=True, seed=seed, name="m2")
        model.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]), steps_per_execution=SMALL_NET_STEPS_PER_CALL)
        return model

    def fit(model: M2, backup=None):
        batches = semisup_batches(h_l, data["y_l"], h_u, cfg["labelled_batch"], cfg["unlabelled_batch"], seed=seed)
        every = steps["report_every"]
        watch = WatchAccuracy(data["x_watch"], data["y_watch"], classifier=m1_m2_classifier(vae, model))
        return model.fit(batches, epochs=steps["steps"] // every, steps_per_epoch=every, verbose=0,
                         callbacks=[watch, *progress(name, verbose), *resumable(backup)])

    model, history = train_or_load(name, build, fit, key, verbose=verbose)
    return m1_m2_classifier(vae, model), history


# --------------------------------------------------------------------------- Chapter 5: the dense VAEs and the MNIST VAE

#: Chapter 5's dense VAEs, 784-512-256-d and back (:func:`uvbook.models.vae.build_vae`), a Bernoulli
#: decoder, dynamic binarisation, Adam. The code size d and the KL weight β are :func:`train_dense_vae`'s.
DENSE_VAE_CONFIG = {"architecture": "dense", "hidden": (512, 256), "binarize": True, "learning_rate": 1e-3}


def dense_vae_sizes() -> dict:
    """Training sizes of :func:`train_dense_vae` in the current mode (Chapter 5): ``n_val`` of the
    ``n_train`` training images (None: all 60,000) are held out for validation
    (:func:`fashion_cnn_split`, Chapter 2's split); ``epochs`` is the budget of a β-VAE (and the
    default of any dense VAE), ``epochs_2d`` that of the 2-D VAE."""
    return {"n_train": by_mode(quick=3000, full=None), "n_val": by_mode(quick=300, full=5000),
            "epochs": by_mode(quick=3, full=6), "epochs_2d": by_mode(quick=3, full=10),
            "batch_size": 128, "seed": 0}


def train_dense_vae(name: str, latent_dim: int, epochs: int | None = None, beta: float = 1.0,
                    verbose: bool = True) -> tuple[VAE, dict[str, list[float]]]:
    """One of Chapter 5's dense VAEs on Fashion-MNIST, trained once and cached as ``name``:
    ``(vae, history)``.

    :data:`DENSE_VAE_CONFIG` with a ``latent_dim``-dimensional code and the KL weighted by
    ``beta`` (1: the ELBO), trained for ``epochs`` (None: ``epochs`` of :func:`dense_vae_sizes`)
    with dynamic binarisation on the training images of :func:`fashion_cnn_split` less its
    validation split, which is binarised once with seed 0 and evaluated after every epoch
    (``history`` has ``loss``, ``val_loss`` and both terms). Chapter 5 trains the 2-D VAE
    (``"vae_dense_2d"``) and the β-VAEs (``"vae_dense_16_beta{β:g}"``) with it; a rerun loads them.

    Raises:
        ValueError: a ``latent_dim`` or ``epochs`` that is not a positive integer, a ``beta``
            that is not a positive number, or a ``name`` that is not file-name-safe.
    """
    latent_dim = check_positive_int(latent_dim, "latent_dim")
    beta = check_number(beta, "beta", 0.0, math.inf, lo_open=True, hi_open=True)
    sizes = dense_vae_sizes()
    epochs = check_positive_int(sizes["epochs"] if epochs is None else epochs, "epochs")
    config = {"latent_dim": latent_dim, **DENSE_VAE_CONFIG, "beta": beta}
    key = {"model": "uvbook.models.vae.VAE", "config": config, "data": "fashion_mnist train",
           "n_train": sizes["n_train"], "n_val": sizes["n_val"],
           "validation": "fashion_cnn_split of the training set (stratified, seed 0), binarised with seed 0",
           "epochs": epochs, "batch_size": sizes["batch_size"], "seed": sizes["seed"]}

    def build() -> VAE:
        set_seed(sizes["seed"])
        return build_vae(seed=sizes["seed"], name=name, **config)

    def fit(model: VAE, backup=None):
        x, _, x_val, _ = fashion_cnn_split(sizes["n_train"], sizes["n_val"])
        train = make_pipeline(x, batch_size=sizes["batch_size"], seed=sizes["seed"])
        val = make_pipeline(binarize(x_val, seed=0), batch_size=1000, shuffle=False)
        return model.fit(train, epochs=epochs, validation_data=val, verbose=0,
                         callbacks=[*progress(name, verbose), *resumable(backup, data=train)])

    return train_or_load(name, build, fit, key, verbose=verbose)


#: Chapter 5's MNIST VAE, the one-stochastic-layer model of Burda et al. (2016), 784-200-200-50
#: with tanh units, a Bernoulli decoder, dynamic binarisation, Adam.
MNIST_VAE_CONFIG = {"latent_dim": 50, "architecture": "dense", "hidden": (200, 200), "activation": "tanh",
                    "binarize": True, "learning_rate": 1e-3}
#: The MNISTs :func:`train_mnist_vae` trains on (see :func:`uvbook.data.available_mnist`).
MNIST_VAE_DATASETS = ("mnist", "mnist_5k")


def _check_mnist(dataset) -> str:
    if dataset not in MNIST_VAE_DATASETS:
        raise ValueError(f"dataset must be one of {MNIST_VAE_DATASETS}; got {dataset!r}")
    return dataset


def mnist_vae_split(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x_fit, x_val)``: the training digits of ``dataset`` (``"mnist"`` or ``"mnist_5k"``) less a
    stratified tenth of them (seed 0), held out for validation."""
    x, y = load_dataset(_check_mnist(dataset), "train")
    is_val = np.zeros(len(y), dtype=bool)
    is_val[stratified_subset(y, len(y) // 10, seed=0)] = True
    return x[~is_val], x[is_val]


def mnist_vae_sizes(dataset: str) -> dict:
    """Training sizes of :func:`train_mnist_vae` on ``dataset`` in the current mode: a fixed budget of
    ``examples`` (epochs x training digits: 20,000 in quick mode, 400,000 in full mode), so
    ``epochs`` is ``max(1, examples // n_train)`` for the ``n_train`` digits of
    :func:`mnist_vae_split` (``n_val`` held out), in batches of 100."""
    x_fit, x_val = mnist_vae_split(dataset)
    examples = by_mode(quick=20_000, full=400_000)
    return {"n_train": len(x_fit), "n_val": len(x_val), "examples": examples,
            "epochs": max(1, examples // len(x_fit)), "batch_size": 100, "seed": 0}


def train_mnist_vae(dataset: str | None = None, verbose: bool = True) -> tuple[VAE, dict[str, list[float]]]:
    """Chapter 5's MNIST VAE (:data:`MNIST_VAE_CONFIG`), trained once and cached as
    ``"vae_{dataset}_burda"``: ``(vae, history)``.

    Trained with dynamic binarisation on :func:`mnist_vae_split`'s digits for
    :func:`mnist_vae_sizes`' epochs; the held-out tenth is binarised once with seed 0 and
    evaluated after every epoch. ``dataset`` None takes :func:`uvbook.data.available_mnist`
    (full MNIST if this machine has it, else ``"mnist_5k"``, saying so loudly).

    Raises:
        ValueError: ``dataset`` is not one of :data:`MNIST_VAE_DATASETS`.
    """
    dataset = available_mnist() if dataset is None else _check_mnist(dataset)
    name = f"vae_{dataset}_burda"
    sizes = mnist_vae_sizes(dataset)
    # the key's strings are those of the chapter's code before the recipe moved here
    key = {"model": "uvbook.models.vae.VAE", "config": "784-200-200-50 tanh, Bernoulli, binarize, Adam 1e-3",
           "data": dataset, "n_train": sizes["n_train"], "n_val": sizes["n_val"],
           "validation": "a stratified tenth of the training digits (seed 0), binarised with seed 0",
           "epochs": sizes["epochs"], "batch_size": sizes["batch_size"], "seed": sizes["seed"]}

    def build() -> VAE:
        set_seed(sizes["seed"])
        return build_vae(seed=sizes["seed"], name="mnist_vae", **MNIST_VAE_CONFIG)

    def fit(model: VAE, backup=None):
        x, x_val = mnist_vae_split(dataset)
        train = make_pipeline(x, batch_size=sizes["batch_size"], seed=sizes["seed"])
        val = make_pipeline(binarize(x_val, seed=0), batch_size=1000, shuffle=False)
        return model.fit(train, epochs=sizes["epochs"], validation_data=val, verbose=0,
                         callbacks=[*progress(name, verbose), *resumable(backup, data=train)])

    return train_or_load(name, build, fit, key, verbose=verbose)


# --------------------------------------------------------------------------- Chapter 8: SimCLR's autoencoder twin

#: Chapter 8's autoencoder twin of Chapter 6's SimCLR encoder, ``Autoencoder.conv`` with SimCLR's
#: convolutions (``FASHION_SIMCLR_CONFIG["filters"]``), then a dense layer and a code as wide as SimCLR's
#: projection head (256 and 128 units), MSE per pixel, Adam at SimCLR's learning rate.
SIMCLR_TWIN_CONFIG = {"code_dim": 128, "dense_units": 256}


def simclr_twin_sizes() -> dict:
    """Training sizes of :func:`train_simclr_twin_ae` in the current mode: SimCLR's
    (:func:`fashion_simclr_sizes`), so that the twin trains for as many epochs, in batches as large,
    on the same ``n_train`` training images (all of them: it also sees the ``n_monitor`` images
    SimCLR holds out to watch)."""
    return fashion_simclr_sizes()


def train_simclr_twin_ae(verbose: bool = True) -> tuple[Autoencoder, dict[str, list[float]]]:
    """Chapter 8's autoencoder twin of the SimCLR encoder (:data:`SIMCLR_TWIN_CONFIG`), trained once
    and cached as ``"ch8_twin_conv_ae"``: ``(autoencoder, history)``.

    Trained on Fashion-MNIST's training images (:func:`simclr_twin_sizes`) to reconstruct them;
    ``history`` has ``loss`` and ``mse`` per epoch. Chapter 8 reads it, like SimCLR, at the
    flattened output of its convolutions (the encoder's layer ``"flatten"``), so that the
    objective is the only difference between the two.
    """
    sizes = simclr_twin_sizes()
    cfg, filters, lr = SIMCLR_TWIN_CONFIG, FASHION_SIMCLR_CONFIG["filters"], FASHION_SIMCLR_CONFIG["learning_rate"]
    # "chapter 7": the key's text from before the chapters were renumbered (changing it would retrain)
    key = {"model": "Autoencoder.conv", "code_dim": cfg["code_dim"], "filters": filters,
           "dense_units": cfg["dense_units"], "purpose": "chapter 7: the SimCLR encoder's autoencoder twin",
           **sizes}

    def build() -> Autoencoder:
        set_seed(sizes["seed"])
        model = Autoencoder.conv(cfg["code_dim"], filters=filters, dense_units=cfg["dense_units"])
        model.compile(optimizer=keras.optimizers.Adam(lr))
        return model

    def fit(model: Autoencoder, backup=None):
        x, _ = load_dataset("fashion_mnist", "train", n=sizes["n_train"])
        data = make_pipeline(x, batch_size=sizes["batch_size"], seed=sizes["seed"])
        return model.fit(data, epochs=sizes["epochs"], verbose=0,
                         callbacks=[*progress("ch8_twin_conv_ae", verbose), *resumable(backup, data=data)])

    return train_or_load("ch8_twin_conv_ae", build, fit, key, verbose=verbose)


# ---------------------------------------------------------------- Chapter 8: diffusion, masked autoencoders, beta-VAEs, overfitting

#: Chapter 8's minimal diffusion model, :func:`uvbook.models.diffusion.build_denoiser` in a
#: :class:`~uvbook.models.diffusion.Diffusion` with ``steps`` noise levels, ``beta_t`` rising linearly
#: from ``beta_1`` to ``beta_T``; batches of 128 (image, step, noise) triples, Adam.
DIFFUSION_CONFIG = {"steps": 500, "beta_1": 1e-4, "beta_T": 0.04, "batch_size": 128, "learning_rate": 1e-3}


def diffusion_sizes() -> dict:
    """Training sizes of :func:`train_diffusion` in the current mode: ``train_steps`` batches drawn
    from the first ``n_train`` Fashion-MNIST training images, reported (one epoch, one progress
    line) every ``report_every`` steps."""
    train_steps = by_mode(quick=40, full=1200)
    return {"n_train": by_mode(quick=2000, full=30000), "train_steps": train_steps,
            "report_every": min(100, train_steps), "seed": 0}


def diffusion_batches(x0: np.ndarray, batch_size: int, steps: int, seed: int = 0):
    """Endless ``(x0, t, eps)`` training batches for :class:`~uvbook.models.diffusion.Diffusion`, drawn
    with one NumPy generator seeded ``seed``: for every batch, ``batch_size`` image indices into
    ``x0`` (images in [-1, 1]), as many steps in ``[0, steps)``, then the noise, in that order."""
    x0 = check_images(x0, "x0", pixel_range=(-1.0, 1.0))
    batch_size = check_positive_int(batch_size, "batch_size")
    steps = check_positive_int(steps, "steps")

    def draws():
        rng = np.random.default_rng(seed)
        while True:
            idx = rng.integers(0, len(x0), batch_size)
            t = rng.integers(0, steps, batch_size)
            eps = rng.standard_normal((batch_size, *x0.shape[1:])).astype(np.float32)
            yield x0[idx], t, eps

    return draws()


class _StepLosses(keras.callbacks.Callback):
    """Keeps the ``step_loss`` of every training step (the history keeps one number an epoch)."""

    def __init__(self):
        super().__init__()
        self.losses: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["step_loss"]))


def train_diffusion(verbose: bool = True) -> tuple[Diffusion, dict[str, list[float]]]:
    """Chapter 8's minimal diffusion model (:data:`DIFFUSION_CONFIG`), trained once and cached as
    ``"ch8_diffusion"``: ``(model, history)``.

    Trained for :func:`diffusion_sizes`' ``train_steps`` batches of :func:`diffusion_batches` on
    Fashion-MNIST's training images scaled to [-1, 1]. ``history`` has, per epoch of
    ``report_every`` steps, ``loss`` (the epoch's mean) and ``elapsed`` (training seconds so far),
    and ``step_loss``, the loss of every step. The run is not checkpointed between epochs: its
    batches come from one NumPy generator, which a resumed run could not continue where the
    interrupted one stopped.
    """
    cfg, sizes = DIFFUSION_CONFIG, diffusion_sizes()
    every = check_positive_int(sizes["report_every"], "report_every")
    if check_positive_int(sizes["train_steps"], "train_steps") % every:
        raise ValueError(f"train_steps must be a multiple of report_every={every}; got {sizes['train_steps']}")
    key = {"model": "uvbook.models.diffusion.Diffusion(build_denoiser())", "config": cfg,
           "data": "fashion_mnist train, pixels scaled to [-1, 1]",
           "draws": "numpy default_rng(seed): per step the image indices, the steps, the noise", **sizes}

    def build() -> Diffusion:
        set_seed(sizes["seed"])
        model = Diffusion(build_denoiser(), cfg["steps"], cfg["beta_1"], cfg["beta_T"], name="diffusion")
        model.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]))
        return model

    def fit(model: Diffusion, backup=None):
        x0 = load_dataset("fashion_mnist", "train", n=sizes["n_train"])[0] * 2.0 - 1.0
        n, shape = cfg["batch_size"], (cfg["batch_size"], *x0.shape[1:])
        data = prefetched(tf.data.Dataset.from_generator(
            lambda: diffusion_batches(x0, n, cfg["steps"], seed=sizes["seed"]),
            output_signature=(tf.TensorSpec(shape, tf.float32), tf.TensorSpec((n,), tf.int64),
                              tf.TensorSpec(shape, tf.float32))))
        steps = _StepLosses()
        history = model.fit(data, epochs=sizes["train_steps"] // every, steps_per_epoch=every, verbose=0,
                            callbacks=[FrechetMonitor(), steps, *progress("ch8_diffusion", verbose),
                                       *resumable(None)])
        return {**history.history, "step_loss": steps.losses}

    return train_or_load("ch8_diffusion", build, fit, key, verbose=verbose)


#: Chapter 8's masked autoencoder, :class:`~uvbook.models.masked.MaskedAutoencoder`, where a
#: ``missing`` fraction of the 4x4 patches of every training image is missing; each step hides
#: ``hide`` of the observed ones and scores the model on those; Adam, batches of 128.
MASKED_AE_CONFIG = {"code_dim": 64, "hide": 0.25, "missing": 0.5, "batch_size": 128, "learning_rate": 1e-3}


def masked_ae_sizes() -> dict:
    """Training sizes of :func:`train_masked_ae` in the current mode: the first ``n_train``
    Fashion-MNIST training images, ``epochs`` epochs."""
    return {"n_train": by_mode(quick=2000, full=20000), "epochs": by_mode(quick=1, full=5), "seed": 0}


def masked_ae_split(n_test: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, mask, test_mask)``: :func:`masked_ae_sizes`' complete training images, their observation
    mask (1 observed, 0 missing, :func:`uvbook.models.masked.patch_mask` with
    ``MASKED_AE_CONFIG["missing"]``), and the mask of ``n_test`` test images, drawn next by the
    same NumPy generator (seeded 0). The model trained on incomplete images sees ``x * mask``."""
    if isinstance(n_test, bool) or not isinstance(n_test, (int, np.integer)) or n_test < 0:
        raise ValueError(f"n_test must be a non-negative integer; got {n_test!r}")
    sizes, missing = masked_ae_sizes(), MASKED_AE_CONFIG["missing"]
    rng = np.random.default_rng(sizes["seed"])
    x = load_dataset("fashion_mnist", "train", n=sizes["n_train"])[0]
    mask = patch_mask(x.shape, missing, rng)
    return x, mask, patch_mask((int(n_test), *x.shape[1:]), missing, rng)


def train_masked_ae(complete: bool = False, verbose: bool = True) -> tuple[MaskedAutoencoder, dict[str, list[float]]]:
    """Chapter 8's masked autoencoder (:data:`MASKED_AE_CONFIG`), trained once and cached:
    ``(model, history)``.

    ``complete=False`` (``"ch8_masked_ae"``): trained on :func:`masked_ae_split`'s incomplete
    images with their mask; ``complete=True`` (``"ch8_masked_ae_complete"``): the reference,
    trained on the complete images. ``history`` has ``loss`` and ``elapsed`` per epoch.

    Raises:
        ValueError: ``complete`` is not True or False.
    """
    if not isinstance(complete, (bool, np.bool_)):
        raise ValueError(f"complete must be True or False; got {complete!r}")
    cfg, sizes = MASKED_AE_CONFIG, masked_ae_sizes()
    name = "ch8_masked_ae_complete" if complete else "ch8_masked_ae"
    key = {"model": "uvbook.models.masked.MaskedAutoencoder", "config": cfg, "complete": bool(complete),
           "data": "fashion_mnist train; masked_ae_split (patch mask, numpy default_rng(seed))", **sizes}

    def build() -> MaskedAutoencoder:
        set_seed(sizes["seed"])
        model = MaskedAutoencoder(cfg["code_dim"], hide=cfg["hide"], complete=bool(complete),
                                  missing=cfg["missing"], seed=sizes["seed"], name=name)
        model.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]))
        return model

    def fit(model: MaskedAutoencoder, backup=None):
        x, mask, _ = masked_ae_split()
        x, mask = (x, np.ones_like(x)) if complete else (x * mask, mask)
        data = prefetched(tf.data.Dataset.from_tensor_slices((x, mask)).shuffle(len(x), seed=sizes["seed"])
                          .batch(cfg["batch_size"]))
        return model.fit(data, epochs=sizes["epochs"], verbose=0,
                         callbacks=[FrechetMonitor(), *progress(name, verbose), *resumable(backup, data=data)])

    return train_or_load(name, build, fit, key, verbose=verbose)


#: Chapter 8's β-VAEs, :func:`uvbook.models.vae.build_vae` with a 10-dimensional code, the
#: convolutional architecture and its defaults (Bernoulli decoder, Adam at 1e-3), batches of 128.
BETA_VAE_CONFIG = {"latent_dim": 10, "architecture": "conv", "batch_size": 128}


def beta_vae_sizes() -> dict:
    """Training sizes of :func:`train_beta_vae` in the current mode: the first ``n_train``
    Fashion-MNIST training images, ``epochs`` epochs."""
    return {"n_train": by_mode(quick=2000, full=20000), "epochs": by_mode(quick=1, full=5), "seed": 0}


def train_beta_vae(beta: float, verbose: bool = True) -> tuple[VAE, dict[str, list[float]]]:
    """One of Chapter 8's β-VAEs (:data:`BETA_VAE_CONFIG`, the KL weighted by ``beta``), trained once
    and cached as ``"ch8_beta_vae_{beta:g}"``: ``(vae, history)``, ``history`` with the loss, its
    terms and ``elapsed`` per epoch.

    Raises:
        ValueError: ``beta`` is not a positive number.
    """
    beta = check_number(beta, "beta", 0.0, math.inf, lo_open=True, hi_open=True)
    cfg, sizes = BETA_VAE_CONFIG, beta_vae_sizes()
    name = f"ch8_beta_vae_{beta:g}"
    key = {"model": "uvbook.models.vae.build_vae", "config": cfg, "beta": beta, "data": "fashion_mnist train",
           **sizes}

    def build() -> VAE:
        set_seed(sizes["seed"])
        return build_vae(cfg["latent_dim"], architecture=cfg["architecture"], beta=beta, seed=sizes["seed"],
                         name=f"beta_vae_{beta:g}")

    def fit(model: VAE, backup=None):
        x, _ = load_dataset("fashion_mnist", "train", n=sizes["n_train"])
        data = make_pipeline(x, batch_size=cfg["batch_size"], seed=sizes["seed"])
        return model.fit(data, epochs=sizes["epochs"], verbose=0,
                         callbacks=[FrechetMonitor(), *progress(name, verbose), *resumable(backup, data=data)])

    return train_or_load(name, build, fit, key, verbose=verbose)


#: Chapter 8's overfitting study, ``Autoencoder.conv(code_dim)`` of Chapter 3, Adam, batches of
#: ``max_batch_size`` images (or all of them, if fewer), the same number of updates at every size.
OVERFIT_AE_CONFIG = {"code_dim": 32, "learning_rate": 1e-3, "max_batch_size": 128}


def overfit_ae_sizes() -> dict:
    """Sizes of Chapter 8's overfitting study in the current mode: the training-set ``sizes``
    (the first n Fashion-MNIST training images) and the ``train_steps`` updates at every size."""
    return {"sizes": by_mode(quick=(30, 300, 2000), full=(100, 1000, 10000, 60000)),
            "train_steps": by_mode(quick=60, full=500), "seed": 0}


def train_overfit_ae(n_train: int, verbose: bool = True) -> tuple[Autoencoder, dict[str, list[float]]]:
    """The autoencoder of Chapter 8's overfitting study (:data:`OVERFIT_AE_CONFIG`) trained on the
    first ``n_train`` Fashion-MNIST training images for :func:`overfit_ae_sizes`' ``train_steps``
    updates (one epoch), once, and cached as ``"ch8_overfit_ae_{n_train}"``: ``(autoencoder, history)``.

    Raises:
        ValueError: ``n_train`` is not a positive integer.
    """
    n_train = check_positive_int(n_train, "n_train")
    cfg, sizes = OVERFIT_AE_CONFIG, overfit_ae_sizes()
    name = f"ch8_overfit_ae_{n_train}"
    batch = min(cfg["max_batch_size"], n_train)
    key = {"model": "Autoencoder.conv", "config": cfg, "n_train": n_train, "batch_size": batch,
           "data": "fashion_mnist train", "train_steps": sizes["train_steps"], "seed": sizes["seed"]}

    def build() -> Autoencoder:
        set_seed(sizes["seed"])
        model = Autoencoder.conv(cfg["code_dim"])
        model.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]))
        return model

    def fit(model: Autoencoder, backup=None):
        x, _ = load_dataset("fashion_mnist", "train", n=n_train)
        data = make_pipeline(x, batch_size=batch, seed=sizes["seed"]).repeat()
        return model.fit(data, steps_per_epoch=sizes["train_steps"], epochs=1, verbose=0,
                         callbacks=[FrechetMonitor(), *progress(name, verbose), *resumable(backup)])

    return train_or_load(name, build, fit, key, verbose=verbose)
