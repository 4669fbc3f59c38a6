"""Representations of images for recognition without labels (Chapter 6).

Chapter 6 compares what each model of the book makes of an image, always through the
same protocol (:mod:`uvbook.evaluate`). This module turns a name into a feature matrix:
``features(name, x)`` maps images ``x`` (N, 28, 28, 1) in [0, 1] to an (N, d) float32
array. The models come from the chapters that train them, through their train-or-load
functions, so a chapter run before leaves them in uvbook's cache and nothing is
retrained (:func:`uvbook.train.train_or_load`); they are loaded once per process.

==================  =====  ==========================================================================
name                d      the representation
==================  =====  ==========================================================================
``pixels``          784    the raw pixels, flattened (Chapter 1's baseline)
``pca32``           32     the top 32 principal components, fitted on the mode's training images
``conv_ae``         32     the code of Chapter 3's convolutional autoencoder (``conv_ae_32``)
``denoising_ae``    32     the code of Chapter 3's denoising autoencoder (``denoising_ae_32``)
``vae``             16     the mean of ``q(z|x)`` of Chapter 5's convolutional VAE, for the grey image
``dcgan``           6272   the penultimate layer (``"flatten"``: 7x7x128) of Chapter 4's DCGAN discriminator
``simclr``          3136   the representation ``h`` of Chapter 6's SimCLR encoder (its flattened 7x7x64 conv features)
``scan``            512    the hidden layer of Chapter 6's SCAN clustering head on the SimCLR features
``cnn``             128    the ``"features"`` layer of the supervised CNN (Chapter 2): the upper bound,
                           learned *with* all training labels
==================  =====  ==========================================================================
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from uvbook.data import load_dataset
from uvbook.modes import by_mode, mode_name
from uvbook.recipes import (chapter3_model, domain_classifier, train_fashion_dcgan, train_fashion_scan,
                            train_fashion_simclr, train_fashion_vae)
from uvbook.validate import check_images, check_positive_int

#: Training images the PCA is fitted on, by mode (None means all 60,000); labels are never used.
PCA_TRAINING = {"dataset": "fashion_mnist", "n_train": {"quick": 3000, "full": None}, "seed": 0}


@dataclass(frozen=True)
class Representation:
    """What :func:`features` returns for one name: a label for tables, its size and its origin."""

    name: str
    label: str
    dim: int
    chapter: str
    supervised: bool = False


#: Every representation, in the order of Chapter 6's table.
REPRESENTATIONS: dict[str, Representation] = {r.name: r for r in (
    Representation("pixels", "raw pixels", 784, "Chapter 1"),
    Representation("pca32", "PCA-32", 32, "Chapter 1"),
    Representation("conv_ae", "conv autoencoder code", 32, "Chapter 3"),
    Representation("denoising_ae", "denoising autoencoder code", 32, "Chapter 3"),
    Representation("vae", "VAE mean code", 16, "Chapter 5"),
    Representation("dcgan", "DCGAN discriminator features", 7 * 7 * 128, "Chapter 4"),
    Representation("simclr", "SimCLR encoder features", 7 * 7 * 64, "Chapter 6"),
    Representation("scan", "SCAN head on SimCLR features", 512, "Chapter 6"),
    Representation("cnn", "supervised CNN features", 128, "Chapter 2", supervised=True),
)}
#: The names learned without labels (everything but ``cnn``), raw pixels included.
UNSUPERVISED = tuple(n for n, r in REPRESENTATIONS.items() if not r.supervised)

_MODELS: dict[tuple[str, str], Any] = {}


def _check_name(name: str) -> Representation:
    if name not in REPRESENTATIONS:
        raise ValueError(f"name must be one of {tuple(REPRESENTATIONS)}; got {name!r}")
    return REPRESENTATIONS[name]


class PCAProjection:
    """PCA fitted on images without labels: ``z = (x - mean) @ components.T`` (Chapter 1's PCA).

    Args:
        images: the images to fit on, (N, 28, 28, 1) in [0, 1].
        n_components: how many leading components to keep.
    """

    def __init__(self, images, n_components: int = 32):
        from sklearn.decomposition import PCA

        images = check_images(images, "images")
        check_positive_int(n_components, "n_components")
        flat = images.reshape(len(images), -1)
        if n_components > min(flat.shape):
            raise ValueError(f"n_components must be at most min(images, pixels) = {min(flat.shape)}; "
                             f"got {n_components}")
        pca = PCA(n_components=n_components, svd_solver="covariance_eigh", random_state=0).fit(flat)
        self.mean = pca.mean_.astype(np.float32)
        self.components = pca.components_.astype(np.float32)
        self.explained_variance_ratio = float(pca.explained_variance_ratio_.sum())
        self.n_train = len(images)

    def transform(self, images) -> np.ndarray:
        flat = images.reshape(len(images), -1)
        if flat.shape[1] != self.mean.size:
            raise ValueError(f"images must have {self.mean.size} pixels like those PCA was fitted on; "
                             f"got {flat.shape[1]}")
        return (flat - self.mean) @ self.components.T


def _fit_pca(verbose: bool) -> PCAProjection:
    n = by_mode(**PCA_TRAINING["n_train"])
    x, _ = load_dataset(PCA_TRAINING["dataset"], "train", n=n, seed=PCA_TRAINING["seed"])
    projection = PCAProjection(x, 32)
    if verbose:
        print(f"uvbook: PCA-32 fitted on {len(x):,} training images (no labels); it keeps "
              f"{projection.explained_variance_ratio:.1%} of the pixel variance")
    return projection


def _loaders() -> dict[str, Callable[[bool], Any]]:
    def conv_ae(verbose):
        return chapter3_model("conv_ae_32", verbose=verbose)[0]

    def denoising_ae(verbose):
        return chapter3_model("denoising_ae_32", verbose=verbose)[0]

    def vae(verbose):
        return train_fashion_vae(verbose=verbose)[0]

    def dcgan(verbose):
        return train_fashion_dcgan(verbose=verbose)[0]

    def simclr(verbose):
        return train_fashion_simclr(verbose=verbose)[0]

    def scan(verbose):
        return train_fashion_scan(verbose=verbose)[0]

    def cnn(verbose):
        return domain_classifier(verbose=verbose)

    return {"pixels": lambda verbose: None, "pca32": _fit_pca, "conv_ae": conv_ae,
            "denoising_ae": denoising_ae, "vae": vae, "dcgan": dcgan, "simclr": simclr, "scan": scan, "cnn": cnn}


def load_model(name: str, verbose: bool = True):
    """The model behind representation ``name`` in the current mode, trained or loaded once.

    ``None`` for ``pixels``; a :class:`PCAProjection` for ``pca32``; otherwise the Keras
    model returned by the chapter's train-or-load function (an ``Autoencoder``, ``VAE``,
    ``GAN``, ``SimCLR``, ``SCAN``, or the supervised CNN of :func:`uvbook.recipes.domain_classifier`).
    """
    _check_name(name)
    key = (name, mode_name())
    if key not in _MODELS:
        _MODELS[key] = _loaders()[name](verbose)
    return _MODELS[key]


def _batched(fn: Callable[[np.ndarray], Any], x: np.ndarray, batch_size: int) -> np.ndarray:
    from keras import ops

    return np.concatenate([np.asarray(ops.convert_to_numpy(fn(x[i:i + batch_size])))
                           for i in range(0, len(x), batch_size)])


_EXTRACTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its layer's extractor


def _layer_model(model, layer: str):
    """A Keras model from ``model``'s input to its layer ``layer``'s output (built once per model)."""
    import keras

    extractor = _EXTRACTORS.get(model)
    if extractor is None or extractor.inputs[0] is not model.inputs[0]:
        extractor = keras.Model(model.inputs[0], model.get_layer(layer).output)
        _EXTRACTORS[model] = extractor
    return extractor


def _scan_pair(model) -> tuple[Any, Any]:
    if not (isinstance(model, tuple) and len(model) == 2 and hasattr(model[0], "encode")
            and hasattr(model[1], "embed")):
        raise ValueError(f"model for 'scan' must be the pair (SimCLR, SCAN); got {type(model).__name__}")
    return model


def features(name: str, x, model=None, batch_size: int = 512) -> np.ndarray:
    """Representation ``name`` of images ``x``: an (N, d) float32 array (see the module's table).

    Args:
        name: one of :data:`REPRESENTATIONS`.
        x: images (N, 28, 28, 1), floats in [0, 1].
        model: the model to use instead of :func:`load_model`'s (a :class:`PCAProjection`
            for ``pca32``, an ``Autoencoder``, ``VAE``, ``GAN``, ``SimCLR`` or the CNN; for
            ``scan`` the pair ``(SimCLR, SCAN)``, whose head reads the encoder's features);
            the unit tests pass small untrained ones.
        batch_size: images per forward pass.

    Deterministic: the VAE contributes the mean of ``q(z|x)``, not a sample, and no
    model sees dropout or augmentation here.

    Raises:
        ValueError: an unknown name, images that are not (N, 28, 28, 1) floats in [0, 1], or
            a ``model`` for ``scan`` that is not a (SimCLR, SCAN) pair.
    """
    rep = _check_name(name)
    x = check_images(x, "x", shape=(28, 28, 1)).astype(np.float32, copy=False)
    check_positive_int(batch_size, "batch_size")
    given_model = model
    if name == "pixels":
        out = x.reshape(len(x), -1)
    elif name == "scan":
        encoder, head = (load_model("simclr"), load_model("scan")) if model is None else _scan_pair(model)
        out = head.embed(encoder.encode(x, batch_size=batch_size))
    else:
        model = load_model(name) if model is None else model
        if name == "pca32":
            out = model.transform(x)
        elif name in ("conv_ae", "denoising_ae"):
            out = model.encode(x, batch_size=batch_size)
        elif name == "vae":
            out = model.encode(x, batch_size=batch_size)[0]      # z_mean; the grey image is the input
        elif name == "dcgan":
            extractor = _layer_model(model.discriminator, "flatten")
            out = _batched(lambda b: extractor(model.preprocess(b), training=False), x, batch_size)
        elif name == "simclr":
            out = model.encode(x, batch_size=batch_size)
        else:  # cnn
            extractor = _layer_model(model, "features")
            out = _batched(lambda b: extractor(b, training=False), x, batch_size)
    out = np.asarray(out, dtype=np.float32).reshape(len(x), -1)
    if given_model is None and out.shape[1] != rep.dim:
        raise ValueError(f"{name} features must have {rep.dim} columns; the model gave {out.shape[1]}")
    return out
