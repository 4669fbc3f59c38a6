"""Chapter 8's minimal diffusion model (Ho et al., 2020): a small U-Net that predicts the added noise.

* :func:`linear_schedule`: the noise schedule ``beta_t`` rising linearly, with ``alpha_t = 1 - beta_t``
  and ``alpha_bar_t``, their running product (the signal left after ``t`` steps);
* :class:`StepEmbedding`: the sinusoidal embedding of the step ``t``, as in transformers;
* :func:`build_denoiser`: the network ``eps_theta(x_t, t)``, two strided convolutions down to
  7x7 and two transposed convolutions back up with skip connections, the step entering
  every block;
* :class:`Diffusion`: a ``keras.Model`` whose ``train_step`` minimises Ho et al.'s
  ``L_simple``, the mean squared error between the noise added in one jump and the
  denoiser's prediction of it.

The model draws no random numbers itself: each training batch is ``(x0, t, eps)``, images
in ``[-1, 1]``, integer steps ``0 .. T - 1`` (step ``t + 1`` of the text) and the noise, so
that the caller decides how they are drawn (Chapter 8 draws them with one NumPy generator,
in :func:`uvbook.recipes.diffusion_batches`).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from uvbook.validate import check_number, check_positive_int


def linear_schedule(steps: int = 500, beta_1: float = 1e-4, beta_T: float = 0.04):
    """``(betas, alphas, alpha_bar)`` of a linear schedule of ``steps`` noise levels, float32 arrays."""
    steps = check_positive_int(steps, "steps")
    beta_1 = check_number(beta_1, "beta_1", 0.0, 1.0, lo_open=True, hi_open=True)
    beta_T = check_number(beta_T, "beta_T", 0.0, 1.0, lo_open=True, hi_open=True)
    betas = np.linspace(beta_1, beta_T, steps, dtype=np.float32)
    alphas = 1.0 - betas
    alpha_bar = np.cumprod(alphas).astype(np.float32)
    return betas, alphas, alpha_bar


@keras.saving.register_keras_serializable(package="uvbook")
class StepEmbedding(layers.Layer):
    """Sinusoidal embedding of the step t (given as t / T in [0, 1]), as in transformers."""

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = check_positive_int(dim, "dim")

    def call(self, t):
        half = self.dim // 2
        freqs = ops.exp(-np.log(10000.0) * ops.arange(half, dtype="float32") / half)
        angles = ops.cast(t, "float32")[:, None] * 1000.0 * freqs[None, :]
        return ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


def unet_block(h, emb, filters):
    """Two 3x3 convolutions; between them the step's embedding shifts every channel."""
    h = layers.Conv2D(filters, 3, padding="same", activation="swish")(h)
    h = h + layers.Reshape((1, 1, filters))(layers.Dense(filters)(emb))   # the step shifts every channel
    return layers.Conv2D(filters, 3, padding="same", activation="swish")(h)


def build_denoiser() -> keras.Model:
    """The U-Net ``eps_theta(x_t, t / T)`` for 28x28x1 images (about 0.2 million parameters)."""
    x_in, t_in = keras.Input((28, 28, 1), name="x_t"), keras.Input((), name="t")
    emb = layers.Dense(128, activation="swish")(StepEmbedding(64)(t_in))
    h1 = unet_block(x_in, emb, 16)                                                                   # 28x28
    h2 = unet_block(layers.Conv2D(32, 3, strides=2, padding="same", activation="swish")(h1), emb, 32)  # 14x14
    h3 = unet_block(layers.Conv2D(64, 3, strides=2, padding="same", activation="swish")(h2), emb, 64)  # 7x7
    up2 = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="swish")(h3)
    u2 = unet_block(layers.Concatenate()([up2, h2]), emb, 32)
    up1 = layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="swish")(u2)
    u1 = unet_block(layers.Concatenate()([up1, h1]), emb, 16)
    return keras.Model([x_in, t_in], layers.Conv2D(1, 3, padding="same", name="noise")(u1), name="denoiser")


@keras.saving.register_keras_serializable(package="uvbook")
class Diffusion(keras.Model):
    """A denoiser trained with ``L_simple`` on the closed-form forward process of :func:`linear_schedule`.

    Args:
        denoiser: a Keras model ``[x_t, t / T] -> predicted noise`` (:func:`build_denoiser`).
        steps, beta_1, beta_T: the schedule, ``T`` noise levels (:func:`linear_schedule`).

    ``fit`` takes batches ``(x0, t, eps)``: images in [-1, 1], integer steps in ``[0, T)`` and
    standard normal noise of the images' shape. Metrics: ``loss``, the mean of the epoch's
    steps, and ``step_loss``, the last step's (a callback reading it after every batch sees
    every step's loss).
    """

    def __init__(self, denoiser: keras.Model, steps: int = 500, beta_1: float = 1e-4, beta_T: float = 0.04,
                 **kwargs):
        super().__init__(**kwargs)
        if not isinstance(denoiser, keras.Model) or len(denoiser.inputs) != 2:
            raise ValueError(f"denoiser must be a keras.Model with two inputs (x_t, t / T); got "
                             f"{type(denoiser).__name__}"
                             + (f" with {len(denoiser.inputs)} inputs" if isinstance(denoiser, keras.Model) else ""))
        self.betas, self.alphas, self.alpha_bar = linear_schedule(steps, beta_1, beta_T)
        self.steps, self.beta_1, self.beta_T = int(steps), float(beta_1), float(beta_T)
        self.denoiser = denoiser
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, inputs, training=False):
        """The predicted noise of ``(x_t, t)``, ``t`` the integer steps (one a row)."""
        x_t, t = inputs
        return self.denoiser([x_t, ops.cast(t, "float32") / self.steps], training=training)

    def train_step(self, data):
        x0, t, eps = data
        a = tf.gather(tf.constant(self.alpha_bar), t)[:, None, None, None]
        x_t = tf.sqrt(a) * x0 + tf.sqrt(1.0 - a) * eps                            # (ch8-forward-closed)
        with tf.GradientTape() as tape:
            eps_hat = self.denoiser([x_t, tf.cast(t, tf.float32) / self.steps], training=True)
            loss = tf.reduce_mean(tf.square(eps - eps_hat))                        # (ch8-ddpm-loss)
        grads = tape.gradient(loss, self.denoiser.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.denoiser.trainable_weights))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result(), "step_loss": loss}

    def get_config(self):
        return {**super().get_config(), "denoiser": keras.saving.serialize_keras_object(self.denoiser),
                "steps": self.steps, "beta_1": self.beta_1, "beta_T": self.beta_T}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["denoiser"] = keras.saving.deserialize_keras_object(config["denoiser"])
        return cls(**config)
