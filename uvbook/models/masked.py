"""Chapter 8's masked autoencoder: learning to fill in images from images with pixels missing.

The idea of masked autoencoders (He et al., 2022) applied to *incomplete data*: every
training image comes with an observation mask (1 observed, 0 missing, decided per 4x4
patch, :func:`patch_mask`). At every step :class:`MaskedAutoencoder` hides some of the
*observed* patches as well, shows the network the rest together with the mask of what it
is shown, and scores it on the hidden observed pixels only (``ch8-masked-loss``): the true
values of the missing pixels never enter the computation. With ``complete=True`` it is the
reference trained on complete images, hiding ``missing`` of all patches and scoring on them.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from uvbook.layers import build_conv_decoder
from uvbook.validate import check_number, check_positive_int


def patch_mask(shape, missing, rng, patch=4):
    """An observation mask of ``shape`` (n, height, width, 1): 1 = observed, 0 = missing, decided per
    ``patch`` x ``patch`` block, each missing with probability ``missing`` (``rng``: a NumPy Generator)."""
    if len(shape) != 4 or shape[1] % patch or shape[2] % patch:
        raise ValueError(f"shape must be (n, height, width, 1) with height and width multiples of patch={patch}; "
                         f"got {tuple(shape)}")
    check_number(missing, "missing", 0.0, 1.0)
    n, h, w, _ = shape
    keep = (rng.random((n, h // patch, w // patch)) >= missing).astype(np.float32)
    return np.repeat(np.repeat(keep, patch, axis=1), patch, axis=2)[..., None]


@keras.saving.register_keras_serializable(package="uvbook")
class MaskedAutoencoder(keras.Model):
    """Trained on (observed image, observation mask) pairs; learns to fill in hidden patches.

    ``hide``: the probability of hiding an observed patch at a training step; ``complete``:
    train on complete images instead, hiding ``missing`` of all patches; ``seed``: of the hiding.
    Call it on ``(images, mask)``: it returns the images filled in.
    """

    def __init__(self, code_dim=64, hide=0.25, complete=False, missing=0.5, seed=0, **kwargs):
        super().__init__(**kwargs)
        code_dim = check_positive_int(code_dim, "code_dim")
        hide = check_number(hide, "hide", 0.0, 1.0, lo_open=True, hi_open=True)
        missing = check_number(missing, "missing", 0.0, 1.0, lo_open=True, hi_open=True)
        inputs = keras.Input((28, 28, 2), name="pixels_and_mask")
        h = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
        h = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
        h = layers.Dense(256, activation="relu")(layers.Flatten()(h))
        self.net = keras.Model(inputs, build_conv_decoder(code_dim)(layers.Dense(code_dim)(h)))
        self.code_dim, self.hide, self.complete, self.missing, self.seed = code_dim, hide, bool(complete), missing, seed
        self.noise = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, inputs, training=False):
        x, mask = inputs
        return self.net(ops.concatenate([x * mask, mask], axis=-1), training=training)

    def random_patches(self, x, rate):
        u = keras.random.uniform((ops.shape(x)[0], 7, 7, 1), seed=self.noise)
        return ops.repeat(ops.repeat(ops.cast(u < rate, "float32"), 4, axis=1), 4, axis=2)

    def train_step(self, data):
        x, mask = data
        if self.complete:     # the reference with complete data: hide `missing` of the patches, score on them
            scored = self.random_patches(x, self.missing)
            shown = 1.0 - scored
        else:                 # incomplete data: hide some *observed* patches, score on those only
            d = self.random_patches(x, self.hide)
            shown, scored = mask * (1.0 - d), mask * d
        with tf.GradientTape() as tape:
            x_hat = self((x, shown), training=True)
            loss = ops.sum(scored * ops.square(x - x_hat)) / ops.maximum(ops.sum(scored), 1.0)
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def get_config(self):
        return {**super().get_config(), "code_dim": self.code_dim, "hide": self.hide,
                "complete": self.complete, "missing": self.missing, "seed": self.seed}
