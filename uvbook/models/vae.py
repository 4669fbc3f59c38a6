"""The variational autoencoder of Chapter 5, with an honest log-likelihood.

A :class:`VAE` pairs an encoder ``x -> (z_mean, z_log_var)`` (the diagonal Gaussian
``q(z|x)``) with a decoder ``z -> pixels`` (the likelihood ``p(x|z)``) and a standard
normal prior ``p(z)``. Training maximises the evidence lower bound (Chapter 5, "The
ELBO, derived")::

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))  <=  log p(x)

with the expectation estimated by one reparameterised sample
(:class:`uvbook.layers.Sampling`) and the KL in closed form (:func:`gaussian_kl`).
The loss is ``-E_q[log p(x|z)] + beta * KL``: with ``beta = 1`` it is minus the ELBO in
**nats per image** (the log-likelihood is summed over pixels, never averaged).

Likelihoods:

* ``"bernoulli"`` (default): the decoder outputs *logits*; ``log p(x|z)`` is
  ``sum(x * l - softplus(l))``, the negative binary cross-entropy summed over pixels.
  It is a normalised distribution for binary ``x``; with ``binarize=True`` every
  training batch is a fresh Bernoulli draw of the grey image (dynamic binarisation,
  Burda et al. 2016), and the caller evaluates on images binarised once with
  :func:`binarize`.
* ``"gaussian"``: the decoder outputs the mean; ``p(x|z) = N(mean, sigma^2 I)`` with a
  fixed ``sigma``.

:meth:`VAE.iwae_log_likelihood` is the importance-weighted estimate of ``log p(x)``
(Burda et al. 2016): ``log (1/k) sum_i p(x, z_i) / q(z_i|x)``, ``z_i ~ q(z|x)``, a lower
bound that tightens as ``k`` grows and equals the ELBO's estimate at ``k = 1``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from uvbook.layers import (Sampling, build_conv_decoder, build_conv_encoder, build_dense_decoder,
                           build_dense_encoder)
from uvbook.layers import replica_scaled
from uvbook.validate import check_images, check_positive_int

LIKELIHOODS = ("bernoulli", "gaussian")
ARCHITECTURES = ("conv", "dense")
LOG_2PI = math.log(2.0 * math.pi)
# Most images the estimators decode in one call (images x samples), whatever k is: the
# memory of one call is bounded by the decoder's activations for this many images
# (about 160 MB for the conv decoder of Chapter 5).
_CHUNK_IMAGES = 1024


def gaussian_kl(z_mean, z_log_var):
    """``KL(N(mean, diag(exp(log_var))) || N(0, I))`` per example, summed over latent dims.

    The closed form of Chapter 5: ``0.5 * sum(mean^2 + var - 1 - log var)``.
    """
    return 0.5 * ops.sum(ops.square(z_mean) + ops.exp(z_log_var) - 1.0 - z_log_var, axis=-1)


def binarize(x, seed: int = 0) -> np.ndarray:
    """A fixed Bernoulli draw of grey images: pixel on with probability equal to its grey value.

    This is how a test set is binarised once (the same ``seed`` gives the same images),
    so that a log-likelihood on it is a log-probability of binary images.
    """
    x = check_images(x, "x")
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=x.shape) < x).astype(np.float32)


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0.0) | (x == 1.0)))


@keras.saving.register_keras_serializable(package="uvbook")
class VAE(keras.Model):
    """Variational autoencoder (Chapter 5): ``train_step`` maximises ``ELBO - (beta - 1) KL``.

    Args:
        encoder: a model from images to ``[z_mean, z_log_var]``, two outputs of shape
            ``(None, latent_dim)`` (e.g. a :mod:`uvbook.layers` builder with
            ``heads=("z_mean", "z_log_var")``).
        decoder: a model from ``(None, latent_dim)`` to images of the encoder's input
            shape: logits for ``"bernoulli"``, means for ``"gaussian"``.
        likelihood: ``"bernoulli"`` (default) or ``"gaussian"``.
        beta: weight of the KL term (``1`` is the ELBO; Higgins et al. 2017 for others).
        sigma: the Gaussian likelihood's fixed standard deviation (ignored for Bernoulli).
        binarize: train on a fresh Bernoulli draw of every batch (dynamic binarisation).
        seed: seeds the reparameterisation noise and the binarisation.

    Metrics (per image, in nats): ``loss`` (``reconstruction_loss + beta * kl_loss``),
    ``reconstruction_loss`` (``-E_q[log p(x|z)]``), ``kl_loss`` (``KL(q(z|x) || p(z))``).
    With ``beta = 1``, ``-loss`` is the ELBO.
    """

    def __init__(self, encoder: keras.Model, decoder: keras.Model, likelihood: str = "bernoulli",
                 beta: float = 1.0, sigma: float = 1.0, binarize: bool = False,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}; got {likelihood!r}")
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not math.isfinite(beta) or beta < 0:
            raise ValueError(f"beta must be a finite number >= 0; got {beta!r}")
        if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not math.isfinite(sigma) \
                or sigma <= 0:
            raise ValueError(f"sigma must be a finite number > 0; got {sigma!r}")
        if binarize and likelihood != "bernoulli":
            raise ValueError(f"binarize=True needs likelihood='bernoulli'; got likelihood={likelihood!r}")
        self.latent_dim, self.image_shape = _check_encoder_decoder(encoder, decoder)
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.beta = float(beta)
        self.sigma = float(sigma)
        self.binarize = bool(binarize)
        self.seed = seed
        self.sampler = Sampling(seed=seed, name="sampling")
        self.noise = keras.random.SeedGenerator(None if seed is None else seed + 1)
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")
        # Encoder and decoder are built functional models, so the VAE is built too: this
        # lets .keras saving record it and reload the optimizer's state with the weights.
        self.built = True

    # ----- the model ---------------------------------------------------------------
    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def call(self, inputs, training: bool = False):
        """Decoder output (logits or means) at one reparameterised sample ``z ~ q(z|x)``."""
        z_mean, z_log_var = self.encoder(inputs, training=training)
        return self.decoder(self.sampler([z_mean, z_log_var]), training=training)

    def log_likelihood(self, x, decoded):
        """``log p(x|z)`` per example, summed over pixels, from the decoder's output."""
        axes = tuple(range(1, len(self.image_shape) + 1))
        if self.likelihood == "bernoulli":
            return ops.sum(x * decoded - ops.softplus(decoded), axis=axes)
        per_pixel = -0.5 * (ops.square((x - decoded) / self.sigma) + LOG_2PI + 2.0 * math.log(self.sigma))
        return ops.sum(per_pixel, axis=axes)

    def _terms(self, x, training: bool):
        z_mean, z_log_var = self.encoder(x, training=training)
        z = self.sampler([z_mean, z_log_var])
        decoded = self.decoder(z, training=training)
        reconstruction = -ops.mean(self.log_likelihood(x, decoded))
        kl = ops.mean(gaussian_kl(z_mean, z_log_var))
        return reconstruction, kl

    def _update(self, total, reconstruction, kl):
        self.total_loss_tracker.update_state(total)
        self.reconstruction_loss_tracker.update_state(reconstruction)
        self.kl_loss_tracker.update_state(kl)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        import tensorflow as tf  # the book's backend; the step is the keras.io idiom

        x = data[0] if isinstance(data, (tuple, list)) else data
        x = ops.cast(x, "float32")
        if self.binarize:
            x = ops.cast(keras.random.uniform(ops.shape(x), seed=self.noise) < x, "float32")
        with tf.GradientTape() as tape:
            reconstruction, kl = self._terms(x, training=True)
            total = reconstruction + self.beta * kl
            scaled = replica_scaled(total)  # one device: the loss itself (see uvbook.layers)
        grads = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return self._update(total, reconstruction, kl)

    def test_step(self, data):
        """The same three numbers on ``x`` as given (pass binarised data when ``binarize``)."""
        x = data[0] if isinstance(data, (tuple, list)) else data
        reconstruction, kl = self._terms(ops.cast(x, "float32"), training=False)
        return self._update(reconstruction + self.beta * kl, reconstruction, kl)

    # ----- serialisation -------------------------------------------------------------
    def get_config(self):
        return {**super().get_config(),
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "decoder": keras.saving.serialize_keras_object(self.decoder),
                "likelihood": self.likelihood, "beta": self.beta, "sigma": self.sigma,
                "binarize": self.binarize, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return cls(**config)

    # ----- using a trained VAE -------------------------------------------------------
    def _check_x(self, x, name: str = "x", need_binary: bool = False) -> np.ndarray:
        x = check_images(x, name)
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"{name} must be images of shape {self.image_shape} (this VAE's input); "
                             f"got images of shape {tuple(x.shape[1:])}")
        if need_binary and self.binarize and not _is_binary(x):
            raise ValueError(f"{name} must be binary (0/1) images: this VAE models binarised images "
                             f"(binarize=True); got grey values. Binarise them once with "
                             f"uvbook.models.vae.binarize(x, seed)")
        return x.astype(np.float32, copy=False)

    def encode(self, x, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """``(z_mean, z_log_var)`` of ``q(z|x)`` for images ``x`` (N, H, W, 1); ``z_mean`` is the code."""
        x = self._check_x(x)
        check_positive_int(batch_size, "batch_size")
        outs = [self.encoder(x[i:i + batch_size], training=False) for i in range(0, len(x), batch_size)]
        return (np.concatenate([ops.convert_to_numpy(m) for m, _ in outs]),
                np.concatenate([ops.convert_to_numpy(v) for _, v in outs]))

    def decode(self, z, batch_size: int = 512) -> np.ndarray:
        """The mean image ``E[x|z]`` for codes ``z`` (N, latent_dim): pixel probabilities for Bernoulli."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim or len(z) == 0:
            raise ValueError(f"z must be a non-empty array of shape (N, {self.latent_dim}); got shape {z.shape}")
        if not np.all(np.isfinite(z)):
            raise ValueError("z must be finite; got NaN or inf")
        check_positive_int(batch_size, "batch_size")
        out = np.concatenate([ops.convert_to_numpy(self.decoder(z[i:i + batch_size], training=False))
                              for i in range(0, len(z), batch_size)])
        if self.likelihood == "bernoulli":
            return (1.0 / (1.0 + np.exp(-out))).astype(np.float32)
        return out.astype(np.float32)

    def reconstruct(self, x, batch_size: int = 512) -> np.ndarray:
        """``decode(z_mean(x))``: the mean image at the centre of ``q(z|x)``."""
        return self.decode(self.encode(x, batch_size)[0], batch_size)

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` generated images: ``z ~ N(0, I)``, then the decoder's mean image."""
        n = check_positive_int(n, "n")
        z = np.random.default_rng(seed).standard_normal((n, self.latent_dim)).astype(np.float32)
        return self.decode(z)

    def _log_weights_fn(self):
        """A compiled ``(x, eps) -> log p(x, z) - log q(z|x)`` of shape (B, m), z = mean + std * eps."""
        if getattr(self, "_log_weights_compiled", None) is None:
            import tensorflow as tf

            def log_weights(x, eps):
                z_mean, z_log_var = self.encoder(x, training=False)
                z = z_mean[:, None, :] + ops.exp(0.5 * z_log_var)[:, None, :] * eps  # (B, m, d)
                b, m = ops.shape(eps)[0], ops.shape(eps)[1]
                decoded = self.decoder(ops.reshape(z, (-1, self.latent_dim)), training=False)
                decoded = ops.reshape(decoded, (b, m) + self.image_shape)
                x_rep = ops.repeat(x[:, None], m, axis=1)
                x_flat = ops.reshape(x_rep, (-1,) + self.image_shape)
                log_px_z = ops.reshape(self.log_likelihood(
                    x_flat, ops.reshape(decoded, (-1,) + self.image_shape)), (b, m))
                log_pz = -0.5 * ops.sum(ops.square(z) + LOG_2PI, axis=-1)
                log_qz = -0.5 * ops.sum(ops.square(eps) + z_log_var[:, None, :] + LOG_2PI, axis=-1)
                return log_px_z + log_pz - log_qz

            self._log_weights_compiled = tf.function(log_weights, reduce_retracing=True)
        return self._log_weights_compiled

    def _all_log_weights(self, x: np.ndarray, k: int, seed: int) -> np.ndarray:
        """Log importance weights, shape (N, k), computed in memory-bounded chunks."""
        fn = self._log_weights_fn()
        rng = np.random.default_rng(seed)
        per_chunk = _CHUNK_IMAGES                              # images x samples per decoder call
        rows = max(1, min(len(x), per_chunk // k))             # images per chunk
        cols = min(k, max(1, per_chunk // rows))               # samples per chunk
        out = np.empty((len(x), k), dtype=np.float64)
        for i in range(0, len(x), rows):
            xb = x[i:i + rows]
            for j in range(0, k, cols):
                m = min(cols, k - j)
                eps = rng.standard_normal((len(xb), m, self.latent_dim)).astype(np.float32)
                out[i:i + len(xb), j:j + m] = ops.convert_to_numpy(fn(xb, eps))
        return out

    def elbo(self, x, n_samples: int = 1, seed: int = 0) -> np.ndarray:
        """Per-example ELBO in nats: ``mean_i log w_i`` over ``n_samples`` draws ``z_i ~ q(z|x)``.

        An unbiased estimate of ``E_q[log p(x|z)] - KL(q(z|x) || p(z))``; at ``n_samples = 1``
        it is the ``k = 1`` importance-weighted estimate.
        """
        x = self._check_x(x, need_binary=True)
        n_samples = check_positive_int(n_samples, "n_samples")
        return self._all_log_weights(x, n_samples, seed).mean(axis=1)

    def iwae_log_likelihood(self, x, k: int = 100, seed: int = 0) -> np.ndarray:
        """Per-example importance-weighted estimate of ``log p(x)`` in nats (Burda et al. 2016).

        ``log (1/k) sum_i exp(log w_i)`` with ``log w_i = log p(x, z_i) - log q(z_i|x)``,
        computed with log-sum-exp in float64 (stable for any spread of weights), in
        chunks of bounded memory (``k = 5000`` is fine). Its expectation is a lower
        bound on ``log p(x)`` that rises with ``k`` and reaches it as ``k -> inf``.
        """
        x = self._check_x(x, need_binary=True)
        k = check_positive_int(k, "k")
        log_w = self._all_log_weights(x, k, seed)
        top = log_w.max(axis=1, keepdims=True)
        return (top[:, 0] + np.log(np.exp(log_w - top).mean(axis=1))).astype(np.float64)


def _check_encoder_decoder(encoder, decoder) -> tuple[int, tuple[int, ...]]:
    if not isinstance(encoder, keras.Model) or not isinstance(decoder, keras.Model):
        raise ValueError(f"encoder and decoder must be keras.Model objects; got "
                         f"{type(encoder).__name__} and {type(decoder).__name__}")
    outs = encoder.outputs if isinstance(encoder.outputs, (list, tuple)) else [encoder.outputs]
    shapes = [tuple(o.shape) for o in outs]
    if len(shapes) != 2 or len(shapes[0]) != 2 or shapes[0] != shapes[1]:
        raise ValueError(f"encoder must output [z_mean, z_log_var], two tensors of shape (None, latent_dim); "
                         f"got outputs of shapes {shapes}")
    latent_dim = int(shapes[0][1])
    dec_in = tuple(decoder.inputs[0].shape)
    if dec_in != (None, latent_dim):
        raise ValueError(f"decoder must take codes of shape (None, {latent_dim}) (the encoder's latent size); "
                         f"got input shape {dec_in}")
    image_shape = tuple(encoder.inputs[0].shape[1:])
    dec_out = tuple(decoder.outputs[0].shape[1:])
    if dec_out != image_shape:
        raise ValueError(f"decoder must output images of the encoder's input shape {image_shape}; "
                         f"got {dec_out}")
    return latent_dim, image_shape


def build_vae(latent_dim: int, architecture: str = "conv", hidden: Sequence[int] = (512, 256),
              filters: Sequence[int] = (32, 64), dense_units: int | None = 256,
              activation: str = "relu", likelihood: str = "bernoulli", beta: float = 1.0,
              sigma: float = 1.0, binarize: bool = False, seed: int | None = None,
              learning_rate: float = 1e-3, name: str = "vae") -> VAE:
    """A compiled :class:`VAE` made with the :mod:`uvbook.layers` builders (Chapter 5).

    ``"dense"``: MLP encoder ``hidden`` and mirrored decoder; ``"conv"``: strided convs
    ``filters`` + ``dense_units`` and mirrored transposed convs. The encoder has the heads
    ``("z_mean", "z_log_var")``; the decoder's output is linear (logits, or means for a
    Gaussian likelihood). Adam with ``learning_rate``.
    """
    check_positive_int(latent_dim, "latent_dim")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}; got {architecture!r}")
    heads = ("z_mean", "z_log_var")
    if architecture == "dense":
        encoder = build_dense_encoder(latent_dim, hidden=hidden, heads=heads, activation=activation,
                                      name=f"{name}_encoder")
        decoder = build_dense_decoder(latent_dim, hidden=tuple(reversed(tuple(hidden))), activation=activation,
                                      output_activation="linear", name=f"{name}_decoder")
    else:
        encoder = build_conv_encoder(latent_dim, filters=filters, dense_units=dense_units, heads=heads,
                                     activation=activation, name=f"{name}_encoder")
        decoder = build_conv_decoder(latent_dim, filters=tuple(reversed(tuple(filters))), activation=activation,
                                     output_activation="linear", name=f"{name}_decoder")
    vae = VAE(encoder, decoder, likelihood=likelihood, beta=beta, sigma=sigma, binarize=binarize,
              seed=seed, name=name)
    vae.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return vae
