"""Semi-supervised classifiers (Chapter 7): a few labelled images and many unlabelled ones, trained together.

* :func:`weak_augment` and :func:`strong_augment`: the two strengths of augmentation that
  FixMatch (Sohn et al. 2020) uses; the weak one is also the supervised baseline's.
* :func:`fixmatch_loss`: the unlabelled term of FixMatch, a cross-entropy between the
  prediction on a strongly augmented view and the pseudo-label of the weak view, counted
  only where the weak view's confidence reaches a threshold.
* :class:`FixMatch`: a ``keras.Model`` that trains any classifier (logits out) with it.

A training batch is ``((x_labelled, y_labelled), x_unlabelled)``: :func:`semisup_batches`
makes such batches from arrays (endless, for Chapter 7's generative models, which train on
vectors as well as images), :func:`semisup_pipeline` FixMatch's (an epoch a pass over the
unlabelled images).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from uvbook.data import prefetched
from uvbook.layers import replica_scaled
from uvbook.models.contrastive import augment
from uvbook.validate import check_images, check_labels, check_number, check_positive_int


def predict_logits(classifier: keras.Model, x, batch_size: int = 1000) -> np.ndarray:
    """The logits of ``classifier`` (no augmentation, inference mode) for images ``x``
    (N, H, W, 1) in [0, 1], in batches, as a NumPy array; ``argmax(1)`` gives the classes."""
    x = check_images(x, "x")
    check_positive_int(batch_size, "batch_size")
    return np.concatenate([ops.convert_to_numpy(classifier(x[i:i + batch_size], training=False))
                           for i in range(0, len(x), batch_size)])


# --------------------------------------------------------------------------- augmentations

def weak_augment(images, seed=None, shift: int = 2, flip: bool = True):
    """Flip left-right with probability 1/2 and translate by up to ``shift`` pixels (edges padded
    by reflection): a view that keeps the class and nearly every pixel.

    ``images`` is a batch (N, H, W, 1) in [0, 1]; ``seed`` an int, a
    ``keras.random.SeedGenerator`` or ``None``. Returns a TensorFlow tensor.
    """
    import tensorflow as tf

    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise ValueError(f"shift must be a non-negative integer (pixels); got {shift!r}")
    x = ops.convert_to_tensor(images, dtype="float32")
    if len(x.shape) != 4 or x.shape[-1] != 1:
        raise ValueError(f"images must be a batch shaped (N, height, width, 1); got shape {tuple(x.shape)}")
    if isinstance(seed, int) or seed is None:
        seed = keras.random.SeedGenerator(seed)
    n = ops.shape(x)[0]
    height, width = int(x.shape[1]), int(x.shape[2])
    if flip:
        coin = keras.random.uniform((n,), seed=seed)[:, None, None, None] < 0.5
        x = ops.where(coin, ops.flip(x, axis=2), x)
    if shift:
        padded = tf.pad(x, [[0, 0], [shift, shift], [shift, shift], [0, 0]], mode="REFLECT")
        offsets = ops.cast(keras.random.randint((n, 2), 0, 2 * shift + 1, seed=seed), "float32")
        # crop_and_resize maps box corners to pixel centres: a box of exactly height x width
        # pixels starting at an integer offset copies those pixels (no interpolation)
        hp, wp = height + 2 * shift - 1, width + 2 * shift - 1
        boxes = ops.stack([offsets[:, 0] / hp, offsets[:, 1] / wp,
                           (offsets[:, 0] + height - 1) / hp, (offsets[:, 1] + width - 1) / wp], axis=1)
        x = tf.image.crop_and_resize(padded, boxes, tf.range(n), (height, width))
    return x


def strong_augment(images, seed=None, crop_scale: tuple[float, float] = (0.3, 1.0), jitter: float = 0.5,
                   cutout: int = 10):
    """A view that changes much but usually keeps the class: :func:`uvbook.models.contrastive.augment`
    (resized crop, flip, brightness and contrast) followed by Cutout (DeVries and Taylor 2017), a
    ``cutout`` x ``cutout`` square at a random place set to 0.5 grey, as in FixMatch."""
    if isinstance(cutout, bool) or not isinstance(cutout, int) or cutout < 0:
        raise ValueError(f"cutout must be a non-negative integer (pixels); got {cutout!r}")
    if isinstance(seed, int) or seed is None:
        seed = keras.random.SeedGenerator(seed)
    x = augment(images, seed, crop_scale=crop_scale, flip=True, jitter=jitter)
    if cutout:
        n = ops.shape(x)[0]
        height, width = int(x.shape[1]), int(x.shape[2])
        centre = keras.random.uniform((n, 2), seed=seed) * ops.convert_to_tensor([height, width], "float32")
        rows = ops.arange(height, dtype="float32")[None, :, None]
        cols = ops.arange(width, dtype="float32")[None, None, :]
        half = cutout / 2
        inside = (ops.abs(rows - centre[:, 0, None, None]) < half) & (ops.abs(cols - centre[:, 1, None, None]) < half)
        x = ops.where(inside[..., None], 0.5, x)
    return x


# --------------------------------------------------------------------------- the loss

def fixmatch_loss(weak_logits, strong_logits, threshold: float = 0.95):
    """FixMatch's unlabelled loss and the fraction of the batch it counts.

    ``q = softmax(weak_logits)`` (no gradient flows through it); where ``max q >= threshold``
    the pseudo-label ``argmax q`` is the target of a cross-entropy on ``strong_logits``.
    The loss is the sum of those cross-entropies divided by the whole batch size (as in the
    paper, so that a batch with few confident images weighs little). Returns
    ``(loss, mask_rate)``.
    """
    threshold = check_number(threshold, "threshold", 0.0, 1.0, lo_open=True, hi_open=True)
    weak_logits = ops.convert_to_tensor(weak_logits)
    strong_logits = ops.convert_to_tensor(strong_logits)
    if tuple(weak_logits.shape) != tuple(strong_logits.shape) or len(weak_logits.shape) != 2:
        raise ValueError(f"weak_logits and strong_logits must be two (N, classes) arrays of one shape; "
                         f"got {tuple(weak_logits.shape)} and {tuple(strong_logits.shape)}")
    q = ops.stop_gradient(ops.softmax(weak_logits, axis=-1))
    mask = ops.cast(ops.max(q, axis=-1) >= threshold, strong_logits.dtype)
    pseudo = ops.argmax(q, axis=-1)
    ce = keras.losses.sparse_categorical_crossentropy(pseudo, strong_logits, from_logits=True)
    return ops.mean(ce * mask), ops.mean(mask)


@keras.saving.register_keras_serializable(package="uvbook")
class FixMatch(keras.Model):
    """FixMatch (Sohn et al. 2020): a classifier trained on labelled images and on the confident
    pseudo-labels of unlabelled ones (Chapter 7).

    Every step sees a batch ``((x_l, y_l), x_u)``. The loss is

    ``cross-entropy(y_l, f(weak(x_l))) + unlabelled_weight * fixmatch_loss(f(weak(x_u)), f(strong(x_u)))``

    with all three views through the network in one call (so batch normalisation sees them
    together). Args: ``classifier`` maps images to logits (no softmax); ``threshold`` is the
    confidence a pseudo-label needs; ``seed`` seeds the augmentations.

    Metrics: ``loss``, ``labelled_loss``, ``unlabelled_loss``, ``mask_rate`` (the fraction of
    unlabelled images above the threshold) and ``accuracy`` (on the weak labelled views).
    """

    def __init__(self, classifier: keras.Model, threshold: float = 0.95, unlabelled_weight: float = 1.0,
                 shift: int = 2, crop_scale=(0.3, 1.0), jitter: float = 0.5, cutout: int = 10,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(classifier, keras.Model):
            raise ValueError(f"classifier must be a keras.Model; got {type(classifier).__name__}")
        self.classifier = classifier
        self.threshold = check_number(threshold, "threshold", 0.0, 1.0, lo_open=True, hi_open=True)
        if isinstance(unlabelled_weight, bool) or not isinstance(unlabelled_weight, (int, float)) \
                or not math.isfinite(unlabelled_weight) or unlabelled_weight < 0:
            raise ValueError(f"unlabelled_weight must be a non-negative number; got {unlabelled_weight!r}")
        self.unlabelled_weight = float(unlabelled_weight)
        self.shift, self.crop_scale, self.jitter, self.cutout = shift, tuple(crop_scale), jitter, cutout
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in
                         ("loss", "labelled_loss", "unlabelled_loss", "mask_rate", "accuracy")}
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, x, training: bool = False):
        """The classifier's logits for images ``x`` (no augmentation)."""
        return self.classifier(x, training=training)

    def train_step(self, data):
        import tensorflow as tf  # the book's backend; the step is the keras.io idiom


        (x_l, y_l), x_u = data
        x_l, x_u = ops.cast(x_l, "float32"), ops.cast(x_u, "float32")
        n_l, n_u = ops.shape(x_l)[0], ops.shape(x_u)[0]
        views = ops.concatenate([weak_augment(x_l, self.seed_generator, self.shift),
                                 weak_augment(x_u, self.seed_generator, self.shift),
                                 strong_augment(x_u, self.seed_generator, self.crop_scale, self.jitter,
                                                self.cutout)], axis=0)
        with tf.GradientTape() as tape:
            logits = self.classifier(views, training=True)
            logits_l = logits[:n_l]
            logits_w, logits_s = logits[n_l:n_l + n_u], logits[n_l + n_u:]
            labelled = ops.mean(keras.losses.sparse_categorical_crossentropy(y_l, logits_l, from_logits=True))
            unlabelled, mask_rate = fixmatch_loss(logits_w, logits_s, self.threshold)
            loss = labelled + self.unlabelled_weight * unlabelled
            scaled = replica_scaled(loss)
        grads = tape.gradient(scaled, self.classifier.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.classifier.trainable_weights))
        correct = ops.cast(ops.equal(ops.argmax(logits_l, axis=-1), ops.cast(y_l, "int64")), "float32")
        for name, value in (("loss", loss), ("labelled_loss", labelled), ("unlabelled_loss", unlabelled),
                            ("mask_rate", mask_rate), ("accuracy", ops.mean(correct))):
            self.trackers[name].update_state(value)
        return {name: t.result() for name, t in self.trackers.items()}

    def predict_classes(self, x, batch_size: int = 1000) -> np.ndarray:
        """The predicted class of every image of ``x`` (N, 28, 28, 1) in [0, 1]."""
        return predict_logits(self.classifier, x, batch_size).argmax(axis=1)

    def get_config(self):
        return {**super().get_config(), "classifier": keras.saving.serialize_keras_object(self.classifier),
                "threshold": self.threshold, "unlabelled_weight": self.unlabelled_weight, "shift": self.shift,
                "crop_scale": list(self.crop_scale), "jitter": self.jitter, "cutout": self.cutout,
                "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["classifier"] = keras.saving.deserialize_keras_object(config["classifier"])
        return cls(**config)


def semisup_batches(x_labelled, y_labelled, x_unlabelled, labelled_batch: int, unlabelled_batch: int,
                    seed: int = 0, n_classes: int = 10, endless: bool = True):
    """Batches ``((x_l, y_l), x_u)`` of ``labelled_batch`` labelled and ``unlabelled_batch``
    unlabelled examples, each set reshuffled on every pass. The labelled set is repeated as
    often as needed; the unlabelled set too if ``endless``, else the batches stop after one
    pass over it (the last partial batch dropped).

    The examples may be images or vectors: any float arrays whose rows have one shape.

    Raises:
        ValueError: labels that are not integers in ``0..n_classes-1``, a labelled set missing
            a class, labelled and unlabelled examples of different shapes, or empty sets.
    """
    import tensorflow as tf

    x_labelled, x_unlabelled = np.asarray(x_labelled, "float32"), np.asarray(x_unlabelled, "float32")
    if x_labelled.ndim < 2 or x_unlabelled.ndim < 2 or not len(x_labelled) or not len(x_unlabelled):
        raise ValueError(f"x_labelled and x_unlabelled must be non-empty arrays of examples; got shapes "
                         f"{x_labelled.shape} and {x_unlabelled.shape}")
    if x_labelled.shape[1:] != x_unlabelled.shape[1:]:
        raise ValueError(f"labelled and unlabelled examples must have one shape; got {x_labelled.shape[1:]} "
                         f"and {x_unlabelled.shape[1:]}")
    y_labelled = check_labels(y_labelled, "y_labelled", length=len(x_labelled))
    k = check_positive_int(n_classes, "n_classes")
    if y_labelled.min() < 0 or y_labelled.max() >= k:
        raise ValueError(f"y_labelled must be classes in 0..{k - 1}; got values from {y_labelled.min()} "
                         f"to {y_labelled.max()}")
    missing = sorted(set(range(k)) - set(y_labelled.tolist()))
    if missing:
        raise ValueError(f"the labelled set must have every class 0..{k - 1}; it has none of {missing}")
    check_positive_int(labelled_batch, "labelled_batch")
    check_positive_int(unlabelled_batch, "unlabelled_batch")
    labelled = (tf.data.Dataset.from_tensor_slices((x_labelled, y_labelled)).cache()
                .shuffle(len(x_labelled), seed=seed, reshuffle_each_iteration=True).repeat()
                .batch(labelled_batch))
    unlabelled = (tf.data.Dataset.from_tensor_slices(x_unlabelled).cache()
                  .shuffle(len(x_unlabelled), seed=seed + 1, reshuffle_each_iteration=True))
    if endless:
        unlabelled = unlabelled.repeat()
    unlabelled = unlabelled.batch(unlabelled_batch, drop_remainder=True)
    return prefetched(tf.data.Dataset.zip((labelled, unlabelled)))


def semisup_pipeline(x_labelled, y_labelled, x_unlabelled, batch_size: int = 32, ratio: int = 7,
                     seed: int = 0, n_classes: int | None = None):
    """Batches ``((x_l, y_l), x_u)`` for :class:`FixMatch`: ``batch_size`` labelled images (the
    labelled set reshuffled and repeated as often as needed) with ``ratio * batch_size`` unlabelled
    ones; one pass over the unlabelled images is one epoch (:func:`semisup_batches`).

    Raises:
        ValueError: labels that are not integers in ``0..n_classes-1`` (default: up to the largest
            label), a labelled set missing one of those classes, or labelled and unlabelled images
            of different shapes.
    """
    x_labelled = check_images(x_labelled, "x_labelled")
    x_unlabelled = check_images(x_unlabelled, "x_unlabelled")
    y_labelled = check_labels(y_labelled, "y_labelled", length=len(x_labelled))
    k = int(y_labelled.max()) + 1 if n_classes is None else n_classes
    batch_size, ratio = check_positive_int(batch_size, "batch_size"), check_positive_int(ratio, "ratio")
    return semisup_batches(x_labelled, y_labelled, x_unlabelled, batch_size, ratio * batch_size, seed=seed,
                           n_classes=k, endless=False)
