"""The autoencoders of Chapter 3: plain (dense, convolutional or linear), denoising, sparse.

All three are ``keras.Model`` subclasses in the Keras 3 idiom of the keras.io
generative examples: an ``encoder`` and a ``decoder`` sub-model, a ``train_step`` and
a ``test_step`` that compute the loss themselves, ``keras.metrics.Mean`` trackers
exposed through :attr:`metrics`, and a ``get_config`` so that a ``.keras`` file
reloads the same model (Chapter 6 reloads the ones Chapter 3 trains).

* :class:`Autoencoder` minimises the reconstruction error
  ``mean ||x - D(E(x))||^2`` (per pixel), or the binary cross-entropy;
* :class:`DenoisingAutoencoder` corrupts its inputs while training only and
  reconstructs the *clean* image (Vincent et al., 2008);
* :class:`SparseAutoencoder` adds an L1 or a KL sparsity penalty on the code
  (Ng's sparse-autoencoder notes).

Build one from the :mod:`uvbook.layers` builders with the class methods
``Autoencoder.dense(code_dim)``, ``Autoencoder.conv(code_dim)`` or
``Autoencoder.linear(code_dim)`` (they exist on every subclass), compile it with an
optimiser only, and fit it on images alone::

    ae = Autoencoder.conv(32)
    ae.compile(optimizer="adam")
    ae.fit(x_train, epochs=10, batch_size=128, validation_data=x_test)

Inputs are checked before Keras sees them: images must be floats of the encoder's
input shape (28x28x1 for the builders), finite, and in ``pixel_range`` (``[0, 1]``
unless the model was built with ``pixel_range=None``); anything else raises a
``ValueError`` saying what was expected and what was given.
"""

from __future__ import annotations


import keras
import numpy as np
from keras import layers, ops

from uvbook import layers as uvlayers
from uvbook.layers import replica_scaled
from uvbook.validate import check_images, check_number, describe

LOSSES = ("mse", "bce")
NOISES = ("gaussian", "masking", "salt_pepper")
PENALTIES = ("l1", "kl")
_EPS = 1e-7


# --------------------------------------------------------------------------- checks

def _is_float_dtype(dtype) -> bool:
    try:
        return np.issubdtype(np.dtype(getattr(dtype, "as_numpy_dtype", dtype)), np.floating)
    except TypeError:
        return "float" in str(dtype)


def _output_activation_name(model) -> str | None:
    """Name of the activation that ends ``model`` (``"sigmoid"``, ...), or None if unknown."""
    last = model.layers[-1] if getattr(model, "layers", None) else None
    fn = getattr(last, "activation", None)
    return getattr(fn, "__name__", None)


# --------------------------------------------------------------------------- corruption

def corrupt(x, noise: str = "gaussian", level: float = 0.3, seed: int = 0) -> np.ndarray:
    """Corrupt images in NumPy the same way :class:`DenoisingAutoencoder` does while training.

    * ``"gaussian"``: add N(0, level^2) noise, then clip to [0, 1];
    * ``"masking"``: set each pixel to 0 with probability ``level``;
    * ``"salt_pepper"``: set each pixel, with probability ``level``, to 0 or 1 (even odds).

    Deterministic for a given ``seed``: the chapter corrupts the test set once with it.
    """
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}; got {noise!r}")
    check_number(level, "level", 0.0, 1.0 if noise != "gaussian" else np.inf)
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"x must be floating-point pixels in [0, 1]; got dtype {x.dtype}")
    rng = np.random.default_rng(seed)
    if noise == "gaussian":
        out = np.clip(x + level * rng.standard_normal(x.shape), 0.0, 1.0)
    elif noise == "masking":
        out = x * (rng.random(x.shape) >= level)
    else:
        hit = rng.random(x.shape) < level
        out = np.where(hit, (rng.random(x.shape) < 0.5).astype(x.dtype), x)
    return out.astype(x.dtype)


# --------------------------------------------------------------------------- models

@keras.saving.register_keras_serializable(package="uvbook")
class Autoencoder(keras.Model):
    """``x -> encoder -> code z -> decoder -> x_hat``, trained to make ``x_hat`` close to ``x``.

    Args:
        encoder: a Keras model from images to a flat code (one output).
        decoder: a Keras model from that code back to images of the encoder's input shape.
        loss: ``"mse"`` (mean squared error per pixel, the article's choice) or ``"bce"``
            (binary cross-entropy per pixel; needs a sigmoid decoder and pixels in [0, 1]).
        pixel_range: the range the input images must lie in, ``(0.0, 1.0)`` by default;
            ``None`` for a linear autoencoder that accepts any real pixels.

    Metrics: ``loss`` (what is minimised) and ``mse`` (reconstruction error per pixel,
    reported whatever the loss, so that models are compared on one scale).
    """

    def __init__(self, encoder: keras.Model, decoder: keras.Model, loss: str = "mse",
                 pixel_range: tuple[float, float] | None = (0.0, 1.0), **kwargs):
        super().__init__(**kwargs)
        if not isinstance(encoder, keras.Model) or not isinstance(decoder, keras.Model):
            raise ValueError(f"encoder and decoder must be keras.Model objects; got "
                             f"{type(encoder).__name__} and {type(decoder).__name__}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
        if pixel_range is not None:
            if len(pixel_range) != 2 or not pixel_range[0] < pixel_range[1]:
                raise ValueError(f"pixel_range must be (low, high) with low < high, or None; got {pixel_range!r}")
            pixel_range = (float(pixel_range[0]), float(pixel_range[1]))
        if loss == "bce" and pixel_range != (0.0, 1.0):
            raise ValueError(f"loss='bce' needs pixel_range=(0.0, 1.0): cross-entropy targets are "
                             f"probabilities; got pixel_range={pixel_range!r}")
        in_shape = tuple(encoder.inputs[0].shape[1:]) if encoder.inputs else None
        code_shape = tuple(encoder.outputs[0].shape[1:]) if encoder.outputs else None
        if encoder.outputs and len(encoder.outputs) != 1:
            raise ValueError(f"encoder must have exactly one output (the code); got {len(encoder.outputs)}")
        if code_shape is None or len(code_shape) != 1:
            raise ValueError(f"encoder must map an image to a flat code of shape (code_dim,); got "
                             f"output shape {code_shape}")
        dec_in = tuple(decoder.inputs[0].shape[1:]) if decoder.inputs else None
        dec_out = tuple(decoder.outputs[0].shape[1:]) if decoder.outputs else None
        if dec_in != code_shape:
            raise ValueError(f"decoder must take the encoder's code of shape {code_shape}; it takes {dec_in}")
        if dec_out != in_shape:
            raise ValueError(f"decoder must output images of the encoder's input shape {in_shape}; "
                             f"it outputs {dec_out}")
        self.encoder = encoder
        self.decoder = decoder
        self.loss_name = loss
        self.pixel_range = pixel_range
        self.image_shape = in_shape
        self.code_dim = int(code_shape[0])
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.mse_tracker = keras.metrics.Mean(name="mse")
        self.built = True

    # -- the pieces a subclass changes -------------------------------------------------
    def corrupt_inputs(self, x, training: bool = False):
        """What the encoder sees; the plain autoencoder sees ``x`` itself."""
        return x

    def code_penalty(self, z):
        """An extra term of the loss computed from the code; none for the plain autoencoder."""
        return ops.convert_to_tensor(0.0, dtype=z.dtype)

    # -- forward pass and loss ------------------------------------------------------------
    def _check_tensor(self, x):
        shape = tuple(x.shape[1:])
        if len(shape) != len(self.image_shape) or any(
                s is not None and s != e for s, e in zip(shape, self.image_shape)):
            raise ValueError(f"{self.name} expects images shaped (N, "
                             f"{', '.join(map(str, self.image_shape))}); got shape {tuple(x.shape)}")
        if not _is_float_dtype(x.dtype):
            raise ValueError(f"{self.name} expects floating-point pixels; got dtype {x.dtype}")

    def call(self, x, training=False):
        self._check_tensor(x)
        return self.decoder(self.encoder(self.corrupt_inputs(x, training=training), training=training),
                            training=training)

    def reconstruction_loss(self, x, x_hat):
        """Per-pixel mean squared error, or per-pixel binary cross-entropy."""
        if self.loss_name == "mse":
            return ops.mean(ops.square(x - x_hat))
        p = ops.clip(x_hat, _EPS, 1.0 - _EPS)
        return -ops.mean(x * ops.log(p) + (1.0 - x) * ops.log(1.0 - p))

    def _compute_losses(self, x, training: bool):
        z = self.encoder(self.corrupt_inputs(x, training=training), training=training)
        x_hat = self.decoder(z, training=training)
        mse = ops.mean(ops.square(x - x_hat))
        recon = mse if self.loss_name == "mse" else self.reconstruction_loss(x, x_hat)
        penalty = self.code_penalty(z)
        return recon + penalty, mse, penalty

    @staticmethod
    def _images_of(data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return x

    def _update(self, loss, mse, penalty):
        self.loss_tracker.update_state(loss)
        self.mse_tracker.update_state(mse)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        import tensorflow as tf  # the book's backend; the step is the keras.io TF idiom

        x = self._images_of(data)
        self._check_tensor(x)
        with tf.GradientTape() as tape:
            loss, mse, penalty = self._compute_losses(x, training=True)
            scaled = replica_scaled(loss)  # one device: the loss itself (see uvbook.layers)
        grads = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return self._update(loss, mse, penalty)

    def test_step(self, data):
        x = self._images_of(data)
        self._check_tensor(x)
        loss, mse, penalty = self._compute_losses(x, training=False)
        return self._update(loss, mse, penalty)

    @property
    def metrics(self):
        return [self.loss_tracker, self.mse_tracker]

    # -- checked entry points ---------------------------------------------------------------
    def _check_data(self, x, name: str):
        """Check arrays fully; check a ``tf.data.Dataset``'s element spec (its values cannot be seen)."""
        if x is None:
            return x
        spec = getattr(x, "element_spec", None)
        if spec is not None:
            first = spec[0] if isinstance(spec, tuple) else spec
            shape = tuple(first.shape[1:])
            if len(shape) != len(self.image_shape) or any(
                    s is not None and s != e for s, e in zip(shape, self.image_shape)):
                raise ValueError(f"{name} must yield batches of images shaped (batch, "
                                 f"{', '.join(map(str, self.image_shape))}); its element spec is {spec}")
            if not _is_float_dtype(first.dtype):
                raise ValueError(f"{name} must yield floating-point pixels; its element spec is {spec}")
            return x
        if isinstance(x, keras.utils.PyDataset) or hasattr(x, "__next__"):
            return x  # a generator or a keras.utils.PyDataset: Keras reads it lazily
        return check_images(x, name, shape=self.image_shape, pixel_range=self.pixel_range)

    def fit(self, x=None, y=None, validation_data=None, **kwargs):
        """``fit(x)``: the targets are the inputs, so ``y`` must be omitted (or be ``x`` itself)."""
        if y is not None and y is not x:
            raise ValueError("an autoencoder's targets are its inputs: call fit(x) without y; got a "
                             f"separate y of {describe(y)}")
        x = self._check_data(x, "x")
        if validation_data is not None:
            if isinstance(validation_data, tuple):
                validation_data = (self._check_data(validation_data[0], "validation_data"),)
            elif getattr(validation_data, "element_spec", None) is not None:
                self._check_data(validation_data, "validation_data")
            else:
                validation_data = (self._check_data(validation_data, "validation_data"),)
        return super().fit(x, validation_data=validation_data, **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        if y is not None and y is not x:
            raise ValueError("an autoencoder's targets are its inputs: call evaluate(x) without y")
        return super().evaluate(self._check_data(x, "x"), **kwargs)

    def predict(self, x, **kwargs):
        """Reconstructions of ``x`` (no corruption: prediction is not training)."""
        kwargs.setdefault("verbose", 0)
        return super().predict(self._check_data(x, "x"), **kwargs)

    def encode(self, x, batch_size: int = 256) -> np.ndarray:
        """The codes of images ``x`` as a NumPy array (N, code_dim)."""
        x = check_images(x, "x", shape=self.image_shape, pixel_range=self.pixel_range)
        return np.asarray(self.encoder.predict(x, batch_size=batch_size, verbose=0))

    def decode(self, z, batch_size: int = 256) -> np.ndarray:
        """Images decoded from codes ``z`` (N, code_dim)."""
        z = np.asarray(z)
        if z.ndim != 2 or z.shape[1] != self.code_dim or not np.issubdtype(z.dtype, np.floating):
            raise ValueError(f"z must be float codes shaped (N, {self.code_dim}); got {describe(z)}")
        return np.asarray(self.decoder.predict(z, batch_size=batch_size, verbose=0))

    def reconstruct(self, x, batch_size: int = 256) -> np.ndarray:
        """``D(E(x))`` for images ``x``, as a NumPy array."""
        return self.predict(x, batch_size=batch_size)

    # -- saving ---------------------------------------------------------------------------
    def get_config(self):
        return {**super().get_config(),
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "decoder": keras.saving.serialize_keras_object(self.decoder),
                "loss": self.loss_name,
                "pixel_range": list(self.pixel_range) if self.pixel_range is not None else None}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        if config.get("pixel_range") is not None:
            config["pixel_range"] = tuple(config["pixel_range"])
        return cls(**config)

    # -- builders ---------------------------------------------------------------------------
    @classmethod
    def dense(cls, code_dim: int, hidden=(512, 256), code_activation: str | None = None,
              output_activation: str = "sigmoid", **kwargs):
        """An MLP autoencoder: 784 -> hidden... -> code_dim -> reversed(hidden)... -> 784.

        ``Autoencoder.dense(8, hidden=(64, 32))`` is the article's 784-64-32-8 network.
        Other keyword arguments go to the class (``loss``, ``noise``, ``penalty``...).
        """
        hidden = tuple(hidden)
        enc = uvlayers.build_dense_encoder(code_dim, hidden=hidden, code_activation=code_activation)
        dec = uvlayers.build_dense_decoder(code_dim, hidden=hidden[::-1], output_activation=output_activation)
        kwargs.setdefault("name", f"{cls._prefix()}dense_ae_{code_dim}")
        return cls(enc, dec, **kwargs)

    @classmethod
    def conv(cls, code_dim: int, filters=(32, 64), dense_units: int | None = 256,
             code_activation: str | None = None, output_activation: str = "sigmoid", **kwargs):
        """A convolutional autoencoder: strided convs 28 -> 14 -> 7, a dense code, and back."""
        filters = tuple(filters)
        enc = uvlayers.build_conv_encoder(code_dim, filters=filters, dense_units=dense_units,
                                          code_activation=code_activation)
        dec = uvlayers.build_conv_decoder(code_dim, filters=filters[::-1], output_activation=output_activation)
        kwargs.setdefault("name", f"{cls._prefix()}conv_ae_{code_dim}")
        return cls(enc, dec, **kwargs)

    @classmethod
    def linear(cls, code_dim: int, image_shape=uvlayers.IMAGE_SHAPE, **kwargs):
        """A linear autoencoder (one Dense layer each way, no activation): PCA's neural twin.

        Its pixels are not restricted to [0, 1] (``pixel_range=None`` by default).
        """
        image_shape = tuple(image_shape)
        d = int(np.prod(image_shape))
        inp = keras.Input(shape=image_shape, name="image")
        code = layers.Dense(code_dim, name="code")(layers.Flatten(name="flatten")(inp))
        enc = keras.Model(inp, code, name="linear_encoder")
        zin = keras.Input(shape=(code_dim,), name="code")
        out = layers.Reshape(image_shape, name="to_image")(layers.Dense(d, name="dense_out")(zin))
        dec = keras.Model(zin, out, name="linear_decoder")
        kwargs.setdefault("pixel_range", None)
        kwargs.setdefault("name", f"{cls._prefix()}linear_ae_{code_dim}")
        return cls(enc, dec, **kwargs)

    @classmethod
    def _prefix(cls) -> str:
        return {"DenoisingAutoencoder": "denoising_", "SparseAutoencoder": "sparse_"}.get(cls.__name__, "")


@keras.saving.register_keras_serializable(package="uvbook")
class DenoisingAutoencoder(Autoencoder):
    """An autoencoder that reconstructs clean images from corrupted ones (Vincent et al., 2008).

    While training, each batch is corrupted afresh (see :func:`corrupt` for the kinds of
    ``noise``); the loss compares the reconstruction with the *clean* batch. Evaluation,
    prediction and encoding see the inputs as given: to denoise, pass noisy images.

    Args:
        noise: ``"gaussian"`` (std ``noise_level``, clipped to [0, 1]), ``"masking"`` or
            ``"salt_pepper"`` (a fraction ``noise_level`` of pixels).
        noise_level: the noise's standard deviation or the corrupted fraction.
        seed: seeds the training noise, so that a seeded run repeats.
    """

    def __init__(self, encoder, decoder, noise: str = "gaussian", noise_level: float = 0.3,
                 seed: int | None = None, **kwargs):
        super().__init__(encoder, decoder, **kwargs)
        if noise not in NOISES:
            raise ValueError(f"noise must be one of {NOISES}; got {noise!r}")
        hi = np.inf if noise == "gaussian" else 1.0
        self.noise = noise
        self.noise_level = check_number(noise_level, "noise_level", 0.0, hi, lo_open=True)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def corrupt_inputs(self, x, training: bool = False):
        if not training:
            return x
        if self.noise == "gaussian":
            noisy = x + self.noise_level * keras.random.normal(ops.shape(x), seed=self.seed_generator)
            return ops.clip(noisy, 0.0, 1.0)
        u = keras.random.uniform(ops.shape(x), seed=self.seed_generator)
        if self.noise == "masking":
            return ops.where(u < self.noise_level, ops.zeros_like(x), x)
        coin = ops.cast(keras.random.uniform(ops.shape(x), seed=self.seed_generator) < 0.5, x.dtype)
        return ops.where(u < self.noise_level, coin, x)

    def get_config(self):
        return {**super().get_config(), "noise": self.noise, "noise_level": self.noise_level,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="uvbook")
class SparseAutoencoder(Autoencoder):
    """An autoencoder whose code is pushed towards sparsity by a penalty added to the loss.

    * ``penalty="l1"``: ``weight * mean_i sum_j |z_ij|`` (the mean over the batch of the
      code's L1 norm);
    * ``penalty="kl"`` (Ng's sparse-autoencoder notes): with ``rho_hat_j`` the mean
      activation of code unit ``j`` over the batch,
      ``weight * sum_j KL(Bernoulli(target) || Bernoulli(rho_hat_j))``. The code must
      lie in (0, 1): build the encoder with ``code_activation="sigmoid"``.

    Adds a ``sparsity`` metric (the penalty, weight included) to ``loss`` and ``mse``.
    """

    def __init__(self, encoder, decoder, penalty: str = "l1", weight: float = 1e-3,
                 target: float = 0.05, **kwargs):
        super().__init__(encoder, decoder, **kwargs)
        if penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {PENALTIES}; got {penalty!r}")
        self.penalty = penalty
        self.weight = check_number(weight, "weight", 0.0, np.inf)
        self.target = check_number(target, "target", 0.0, 1.0, lo_open=True, hi_open=True)
        if penalty == "kl" and _output_activation_name(encoder) != "sigmoid":
            raise ValueError("penalty='kl' treats each code unit as a firing probability, so the code "
                             "must lie in (0, 1): build the encoder with code_activation='sigmoid'; got "
                             f"an encoder ending in {_output_activation_name(encoder)!r}")
        self.sparsity_tracker = keras.metrics.Mean(name="sparsity")

    def code_penalty(self, z):
        if self.penalty == "l1":
            return self.weight * ops.mean(ops.sum(ops.abs(z), axis=-1))
        rho = self.target
        rho_hat = ops.clip(ops.mean(z, axis=0), _EPS, 1.0 - _EPS)
        kl = rho * ops.log(rho / rho_hat) + (1.0 - rho) * ops.log((1.0 - rho) / (1.0 - rho_hat))
        return self.weight * ops.sum(kl)

    def _update(self, loss, mse, penalty):
        self.sparsity_tracker.update_state(penalty)
        return super()._update(loss, mse, penalty)

    @property
    def metrics(self):
        return [self.loss_tracker, self.mse_tracker, self.sparsity_tracker]

    def get_config(self):
        return {**super().get_config(), "penalty": self.penalty, "weight": self.weight,
                "target": self.target}
