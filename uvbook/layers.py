"""Layers and network builders shared by the autoencoders, VAEs and GANs (Chapters 3-5).

The builders return functional ``keras.Model`` objects for 28x28x1 images:

* :func:`build_dense_encoder` / :func:`build_dense_decoder`: multilayer perceptrons
  (the article's autoencoder of section 4.1, corrected in Chapter 3);
* :func:`build_conv_encoder` / :func:`build_conv_decoder`: strided convolutions down
  to 7x7 and transposed convolutions back up (the DCGAN shape, Chapter 4);
  :func:`build_conv_trunk`: the convolutions alone (the contrastive encoder, Chapter 6).

An encoder can have several heads of the same size: one ``"code"`` head for an
autoencoder, ``("z_mean", "z_log_var")`` for a VAE (Chapter 5), a single logit for a
GAN discriminator.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf
from keras import layers, ops

from uvbook.validate import check_positive_int

IMAGE_SHAPE = (28, 28, 1)
OUTPUT_ACTIVATIONS = ("sigmoid", "tanh", "linear")


@keras.saving.register_keras_serializable(package="uvbook")
class Sampling(layers.Layer):
    """Reparameterisation trick (Chapter 5): ``z = mean + exp(log_var / 2) * eps``, ``eps ~ N(0, I)``.

    The noise comes from a seeded generator, so a seeded run repeats; the gradient
    flows to ``mean`` and ``log_var`` because the randomness is outside them.
    """

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        mean, log_var = inputs
        eps = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
        return mean + ops.exp(0.5 * log_var) * eps

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def _check_common(code_dim, units: Sequence[int], name: str) -> None:
    check_positive_int(code_dim, "code_dim")
    if len(units) == 0:
        raise ValueError(f"{name} must list at least one layer size; got {tuple(units)}")
    for u in units:
        check_positive_int(u, f"every entry of {name}")


def normalised(layer: layers.Layer, spectral_norm: bool) -> layers.Layer:
    """``layer``, or ``layer`` wrapped in ``keras.layers.SpectralNormalization`` (Miyato et al. 2018)."""
    return layers.SpectralNormalization(layer, name=f"sn_{layer.name}") if spectral_norm else layer


def _heads(x, code_dim: int, heads: Sequence[str], activation: str | None, spectral_norm: bool = False):
    if not heads or len(set(heads)) != len(heads):
        raise ValueError(f"heads must be distinct names, at least one; got {tuple(heads)}")
    outs = [normalised(layers.Dense(code_dim, activation=activation, name=h), spectral_norm)(x) for h in heads]
    return outs[0] if len(outs) == 1 else outs


def _output_layer(x, output_activation: str):
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}; got {output_activation!r}")
    return x if output_activation == "linear" else layers.Activation(output_activation, name="pixels")(x)


def build_dense_encoder(code_dim: int, hidden: Sequence[int] = (512, 256), heads: Sequence[str] = ("code",),
                        activation: str = "relu", code_activation: str | None = None,
                        name: str = "dense_encoder") -> keras.Model:
    """Image -> Flatten -> Dense(hidden...) -> one Dense(code_dim) per head."""
    _check_common(code_dim, hidden, "hidden")
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate(hidden):
        x = layers.Dense(units, activation=activation, name=f"dense{i}")(x)
    return keras.Model(inputs, _heads(x, code_dim, heads, code_activation), name=name)


def build_dense_decoder(code_dim: int, hidden: Sequence[int] = (256, 512), activation: str = "relu",
                        output_activation: str = "sigmoid", name: str = "dense_decoder") -> keras.Model:
    """Code -> Dense(hidden...) -> Dense(784) -> Reshape(28, 28, 1), then the output activation.

    ``output_activation="linear"`` returns logits (the VAE's Bernoulli likelihood works on them).
    """
    _check_common(code_dim, hidden, "hidden")
    inputs = keras.Input(shape=(code_dim,), name="code")
    x = inputs
    for i, units in enumerate(hidden):
        x = layers.Dense(units, activation=activation, name=f"dense{i}")(x)
    x = layers.Dense(28 * 28, name="dense_out")(x)
    x = layers.Reshape(IMAGE_SHAPE, name="to_image")(x)
    return keras.Model(inputs, _output_layer(x, output_activation), name=name)


def _conv_stack(x, filters: Sequence[int], activation: str, batchnorm: bool, dropout: float,
                spectral_norm: bool = False):
    """Strided 3x3 convolutions (28 -> 14 -> 7, then stride 1), flattened."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
    for i, f in enumerate(filters):
        conv = layers.Conv2D(f, 3, strides=2 if i < 2 else 1, padding="same", name=f"conv{i}")
        x = normalised(conv, spectral_norm)(x)
        if batchnorm and i > 0:
            x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.Activation(activation, name=f"act{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout{i}")(x)
    return layers.Flatten(name="flatten")(x)


def build_conv_trunk(filters: Sequence[int] = (32, 64), activation: str = "relu", spectral_norm: bool = False,
                     name: str = "conv_trunk") -> keras.Model:
    """Image -> strided 3x3 convs (28 -> 14 -> 7) -> Flatten: the convolutional part of
    :func:`build_conv_encoder` alone, whose output (7 x 7 x ``filters[-1]`` numbers) is the
    representation of the contrastive encoder (Chapter 6)."""
    _check_common(1, filters, "filters")
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    return keras.Model(inputs, _conv_stack(inputs, filters, activation, False, 0.0, spectral_norm), name=name)


def build_conv_encoder(code_dim: int, filters: Sequence[int] = (32, 64), dense_units: int | None = 256,
                       heads: Sequence[str] = ("code",), activation: str = "relu",
                       batchnorm: bool = False, dropout: float = 0.0,
                       code_activation: str | None = None, spectral_norm: bool = False,
                       name: str = "conv_encoder") -> keras.Model:
    """Image -> strided 3x3 convs (28 -> 14 -> 7) -> Flatten -> [Dense] -> heads.

    ``activation`` may be any Keras activation name, e.g. ``"leaky_relu"`` for a GAN
    discriminator; ``batchnorm`` adds BatchNormalization after each conv but the first;
    ``spectral_norm`` wraps every conv and dense layer in ``keras.layers.SpectralNormalization``.
    """
    _check_common(code_dim, filters, "filters")
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = _conv_stack(inputs, filters, activation, batchnorm, dropout, spectral_norm)
    if dense_units:
        check_positive_int(dense_units, "dense_units")
        x = normalised(layers.Dense(dense_units, activation=activation, name="dense"), spectral_norm)(x)
    return keras.Model(inputs, _heads(x, code_dim, heads, code_activation, spectral_norm), name=name)


def build_conv_decoder(code_dim: int, filters: Sequence[int] = (64, 32), activation: str = "relu",
                       batchnorm: bool = False, output_activation: str = "sigmoid",
                       name: str = "conv_decoder") -> keras.Model:
    """Code -> Dense(7*7*filters[0]) -> Reshape -> transposed convs (7 -> 14 -> 28) -> 1 channel.

    With ``batchnorm`` (the DCGAN generator) each hidden layer is Dense/Conv,
    BatchNormalization, activation.
    """
    _check_common(code_dim, filters, "filters")
    if len(filters) < 2:
        raise ValueError(f"filters must have at least 2 entries to upsample 7 -> 28; got {tuple(filters)}")
    inputs = keras.Input(shape=(code_dim,), name="code")
    x = layers.Dense(7 * 7 * filters[0], use_bias=not batchnorm, name="dense")(inputs)
    if batchnorm:
        x = layers.BatchNormalization(name="bn_dense")(x)
    x = layers.Activation(activation, name="act_dense")(x)
    x = layers.Reshape((7, 7, filters[0]), name="to_map")(x)
    for i, f in enumerate(filters):
        x = layers.Conv2DTranspose(f, 3, strides=2 if i < 2 else 1, padding="same",
                                   use_bias=not batchnorm, name=f"deconv{i}")(x)
        if batchnorm:
            x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.Activation(activation, name=f"act{i}")(x)
    x = layers.Conv2D(1, 3, padding="same", name="to_pixels")(x)
    return keras.Model(inputs, _output_layer(x, output_activation), name=name)


# --------------------------------------------------------------------------------------
# Several devices (appendix "Scaling out with tf.distribute").
# --------------------------------------------------------------------------------------

def num_replicas() -> int:
    """How many replicas the current ``tf.distribute`` strategy runs (1 outside any strategy)."""
    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def replica_scaled(loss):
    """``loss / num_replicas()``: the per-replica loss a custom ``train_step`` should differentiate.

    Under ``tf.distribute.MirroredStrategy`` every replica computes its loss as a mean over
    its own share of the global batch, and Keras *sums* the replicas' gradients; dividing
    each replica's loss by the number of replicas makes that sum the gradient of the mean
    over the global batch, as on one device (Keras' built-in losses do the same). Report
    the unscaled loss in metrics. Outside a strategy it returns ``loss`` unchanged.
    """
    n = num_replicas()
    return loss if n == 1 else loss / n
