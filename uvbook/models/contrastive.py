"""A small SimCLR-style contrastive model: the self-supervised encoder that Chapter 6 trains and Chapters 7 and 8 build on.

SimCLR (Chen et al. 2020) learns a representation without labels by making two random
augmentations of the same image agree:

1. :func:`augment` draws two *views* of every image in a batch (random resized crop,
   horizontal flip, brightness and contrast jitter);
2. an **encoder** maps each view to its representation ``h`` (the features that
   recognition uses afterwards);
3. a **projection head** (a small MLP) maps ``h`` to ``z``, where the loss is computed;
4. the **NT-Xent loss** (:func:`nt_xent_loss`) treats the two views of an image as a
   positive pair and the other ``2N - 2`` views of the batch as negatives: a softmax
   cross-entropy over cosine similarities divided by a temperature.

The projection head is thrown away after training; :meth:`SimCLR.encode` returns ``h``.
The model follows the book's Keras 3 idiom: a ``keras.Model`` subclass with a
``train_step`` returning its metrics, ``keras.metrics.Mean`` trackers exposed through
``metrics``, ``get_config`` and ``.keras`` saving. Under ``tf.distribute`` its gradient is
that of the global batch (the loss is divided by the number of replicas with
:func:`uvbook.layers.replica_scaled`), but the negatives are those of each replica's shard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
from keras import layers, ops

from uvbook.layers import build_conv_trunk, replica_scaled
from uvbook.validate import check_images, check_number, check_positive_int

_LARGE = 1e9


# --------------------------------------------------------------------------- augmentations

def augment(images, seed=None, crop_scale: tuple[float, float] = (0.3, 1.0),
            flip: bool = True, jitter: float = 0.4):
    """One random view of every image in a batch (N, H, W, 1) in [0, 1]; a TensorFlow tensor.

    * random resized crop: a box covering a fraction ``crop_scale`` of the image area, aspect
      ratio between 3/4 and 4/3, resized back to H x W (bilinear);
    * horizontal flip with probability 1/2 (if ``flip``);
    * contrast scaled by a factor in ``[1 - jitter, 1 + jitter]`` around the image's mean and
      brightness shifted by up to ``jitter / 4``, then clipped to [0, 1].

    ``seed`` is an int, a ``keras.random.SeedGenerator`` (what :class:`SimCLR` passes, so
    that every call draws new views) or ``None``.
    """
    import tensorflow as tf

    lo, hi = crop_scale
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1; got {crop_scale!r}")
    check_number(jitter, "jitter", 0.0, 1.0)
    x = ops.convert_to_tensor(images, dtype="float32")
    if len(x.shape) != 4 or x.shape[-1] != 1:
        raise ValueError(f"images must be a batch shaped (N, height, width, 1); got shape {tuple(x.shape)}")
    n = ops.shape(x)[0]
    height, width = int(x.shape[1]), int(x.shape[2])
    if isinstance(seed, int) or seed is None:
        seed = keras.random.SeedGenerator(seed)

    def uniform(low, high, shape=None):
        return keras.random.uniform((n,) if shape is None else shape, low, high, seed=seed)

    area = uniform(lo, hi)
    log_ratio = uniform(math.log(3 / 4), math.log(4 / 3))
    ratio = ops.exp(log_ratio)
    box_h = ops.minimum(ops.sqrt(area / ratio), 1.0)
    box_w = ops.minimum(ops.sqrt(area * ratio), 1.0)
    y1 = uniform(0.0, 1.0) * (1.0 - box_h)
    x1 = uniform(0.0, 1.0) * (1.0 - box_w)
    boxes = ops.stack([y1, x1, y1 + box_h, x1 + box_w], axis=1)
    x = tf.image.crop_and_resize(x, boxes, tf.range(n), (height, width))
    if flip:
        coin = uniform(0.0, 1.0)[:, None, None, None] < 0.5
        x = ops.where(coin, ops.flip(x, axis=2), x)
    if jitter > 0:
        contrast = uniform(1.0 - jitter, 1.0 + jitter)[:, None, None, None]
        brightness = uniform(-jitter / 4, jitter / 4)[:, None, None, None]
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * contrast + mean + brightness
    return ops.clip(x, 0.0, 1.0)


# --------------------------------------------------------------------------- the loss

def nt_xent_loss(z1, z2, temperature: float = 0.5, return_accuracy: bool = False):
    """NT-Xent (normalised temperature-scaled cross-entropy), the SimCLR loss, averaged over 2N views.

    ``z1[i]`` and ``z2[i]`` are projections of two views of image ``i``. With
    ``u = normalize(concat(z1, z2))`` and ``s_ab = u_a . u_b / temperature``, the loss of view
    ``a`` whose partner is ``p(a)`` is ``-log(exp(s_a,p(a)) / sum_{b != a} exp(s_ab))``.

    With ``return_accuracy`` it also returns the fraction of views whose most similar other
    view is their partner (the "contrastive accuracy" that training tracks).
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature!r}")
    z = ops.concatenate([z1, z2], axis=0)
    z = z / ops.maximum(ops.norm(z, axis=1, keepdims=True), 1e-12)
    n2 = ops.shape(z)[0]
    n = n2 // 2
    logits = ops.matmul(z, ops.transpose(z)) / temperature
    logits = logits - _LARGE * ops.eye(n2, dtype=logits.dtype)          # a view is not its own pair
    partner = ops.concatenate([ops.arange(n, n2), ops.arange(0, n)], axis=0)
    loss = ops.mean(keras.losses.sparse_categorical_crossentropy(partner, logits, from_logits=True))
    if not return_accuracy:
        return loss
    hits = ops.cast(ops.equal(ops.argmax(logits, axis=1), ops.cast(partner, "int64")), "float32")
    return loss, ops.mean(hits)


# --------------------------------------------------------------------------- the model

def build_projection_head(feature_dim: int, hidden: int | Sequence[int] = 128, out_dim: int = 64,
                          batchnorm: bool = False, name: str = "projection_head") -> keras.Model:
    """SimCLR's projection head ``g``: [Dense(hidden) (+ BatchNorm), ReLU] per hidden layer -> Dense(out_dim).

    ``hidden`` is one width or a sequence of widths; ``batchnorm`` normalises every hidden
    layer (as the SimCLR paper's head does), which keeps a deep head trainable with a
    large learning rate.
    """
    check_positive_int(feature_dim, "feature_dim")
    widths = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if not widths:
        raise ValueError(f"hidden must name at least one layer width; got {hidden!r}")
    for width in widths:
        check_positive_int(width, "every entry of hidden")
    check_positive_int(out_dim, "out_dim")
    inputs = keras.Input(shape=(feature_dim,), name="features")
    x = inputs
    for i, width in enumerate(widths):
        x = layers.Dense(width, use_bias=not batchnorm, name=f"dense{i}")(x)
        if batchnorm:
            x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.Activation("relu", name=f"relu{i}")(x)
    return keras.Model(inputs, layers.Dense(out_dim, name="projection")(x), name=name)


@keras.saving.register_keras_serializable(package="uvbook")
class SimCLR(keras.Model):
    """Contrastive representation learning (Chapters 6 to 8): two augmented views, an encoder, a head, NT-Xent.

    Args:
        encoder: a Keras model from images (N, 28, 28, 1) to flat features ``h`` (one output).
        projection_head: a model from ``h`` to the projection ``z`` the loss sees.
        temperature: the NT-Xent temperature ``tau``.
        crop_scale, flip, jitter: the augmentations (see :func:`augment`).
        seed: seeds the augmentations, so that a seeded run repeats on the CPU.

    Metrics: ``loss`` (NT-Xent, in nats) and ``accuracy`` (fraction of views whose nearest
    other view in the batch is their partner).
    """

    def __init__(self, encoder: keras.Model, projection_head: keras.Model, temperature: float = 0.5,
                 crop_scale: Sequence[float] = (0.3, 1.0), flip: bool = True, jitter: float = 0.4,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(encoder, keras.Model) or not isinstance(projection_head, keras.Model):
            raise ValueError(f"encoder and projection_head must be keras.Model objects; got "
                             f"{type(encoder).__name__} and {type(projection_head).__name__}")
        if len(encoder.outputs) != 1 or len(encoder.outputs[0].shape) != 2:
            raise ValueError(f"encoder must have one flat output (N, feature_dim); got output shapes "
                             f"{[tuple(o.shape) for o in encoder.outputs]}")
        feature_dim = int(encoder.outputs[0].shape[1])
        head_in = tuple(projection_head.inputs[0].shape[1:])
        if head_in != (feature_dim,):
            raise ValueError(f"projection_head must take the encoder's features of shape ({feature_dim},); "
                             f"it takes {head_in}")
        self.temperature = check_number(temperature, "temperature", 1e-3, 100.0)
        crop_scale = tuple(float(c) for c in crop_scale)
        if len(crop_scale) != 2 or not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
            raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1; got {crop_scale!r}")
        self.crop_scale = crop_scale
        self.flip = bool(flip)
        self.jitter = check_number(jitter, "jitter", 0.0, 1.0)
        self.seed = seed
        self.encoder = encoder
        self.projection_head = projection_head
        self.image_shape = tuple(encoder.inputs[0].shape[1:])
        self.feature_dim = feature_dim
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def call(self, x, training: bool = False):
        """The features ``h`` of images ``x`` (no augmentation)."""
        return self.encoder(x, training=training)

    def views(self, x):
        """Two independent random augmentations of the batch ``x``."""
        kw = {"crop_scale": self.crop_scale, "flip": self.flip, "jitter": self.jitter}
        return augment(x, self.seed_generator, **kw), augment(x, self.seed_generator, **kw)

    def _loss(self, x, training: bool):
        v1, v2 = self.views(x)
        z1 = self.projection_head(self.encoder(v1, training=training), training=training)
        z2 = self.projection_head(self.encoder(v2, training=training), training=training)
        return nt_xent_loss(z1, z2, self.temperature, return_accuracy=True)

    def _update(self, loss, accuracy):
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(accuracy)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        import tensorflow as tf  # the book's backend; the step is the keras.io idiom


        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        x = ops.cast(x, "float32")
        with tf.GradientTape() as tape:
            loss, accuracy = self._loss(x, training=True)
            scaled = replica_scaled(loss)
        grads = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return self._update(loss, accuracy)

    def test_step(self, data):
        """The same loss and accuracy on fresh random views of ``x``."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        loss, accuracy = self._loss(ops.cast(x, "float32"), training=False)
        return self._update(loss, accuracy)

    def encode(self, x, batch_size: int = 512) -> np.ndarray:
        """The representation ``h`` of images ``x`` (N, 28, 28, 1) in [0, 1], as a NumPy array."""
        x = check_images(x, "x")
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"x must be images of shape {self.image_shape}; got {tuple(x.shape[1:])}")
        check_positive_int(batch_size, "batch_size")
        return np.concatenate([ops.convert_to_numpy(self.encoder(x[i:i + batch_size], training=False))
                               for i in range(0, len(x), batch_size)]).astype(np.float32)

    def get_config(self):
        return {**super().get_config(),
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "projection_head": keras.saving.serialize_keras_object(self.projection_head),
                "temperature": self.temperature, "crop_scale": list(self.crop_scale),
                "flip": self.flip, "jitter": self.jitter, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["projection_head"] = keras.saving.deserialize_keras_object(config["projection_head"])
        return cls(**config)


def build_simclr(filters: Sequence[int] = (32, 64), head_hidden: int | Sequence[int] = (256, 128),
                 projection_dim: int = 128, head_batchnorm: bool = True, temperature: float = 0.2,
                 crop_scale: Sequence[float] = (0.2, 1.0), flip: bool = True, jitter: float = 0.4,
                 learning_rate: float = 1e-3, total_steps: int | None = None, warmup_fraction: float = 0.05,
                 seed: int | None = None, name: str = "simclr") -> SimCLR:
    """A compiled :class:`SimCLR`: the conv trunk of :mod:`uvbook.layers` and an MLP head.

    The encoder is :func:`uvbook.layers.build_conv_trunk`: two strided convolutions whose
    flattened 7 x 7 x ``filters[-1]`` output is the representation ``h``. Every dense layer
    is in the projection head (:func:`build_projection_head`), which training throws away.
    Adam with ``learning_rate``; given ``total_steps``, the rate rises linearly over the
    first ``warmup_fraction`` of them and then decays to 0 along a cosine.
    """
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1); got {warmup_fraction!r}")
    encoder = build_conv_trunk(filters, name=f"{name}_encoder")
    feature_dim = int(encoder.outputs[0].shape[1])
    head = build_projection_head(feature_dim, head_hidden, projection_dim, batchnorm=head_batchnorm,
                                 name=f"{name}_head")
    model = SimCLR(encoder, head, temperature=temperature, crop_scale=crop_scale, flip=flip, jitter=jitter,
                   seed=seed, name=name)
    rate = learning_rate
    if total_steps is not None:
        check_positive_int(total_steps, "total_steps")
        warmup = int(warmup_fraction * total_steps)
        rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else learning_rate, total_steps - warmup, warmup_target=learning_rate if warmup else None,
            warmup_steps=warmup)
    model.compile(optimizer=keras.optimizers.Adam(rate))
    return model
