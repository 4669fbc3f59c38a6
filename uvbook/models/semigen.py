"""The generative routes to semi-supervised classification (Chapter 7).

* :class:`SemiSupervisedGAN` (Salimans et al. 2016): a discriminator with ``K`` logits whose
  probability of "real" is ``Z / (Z + 1)``, ``Z = sum_k exp(l_k)``, trained on the labelled
  images (which class), the unlabelled ones (real) and the generator's (generated); the
  generator matches the mean of the discriminator's features on real images.
* :class:`M2` (Kingma et al. 2014): a VAE with the label as a second latent variable,
  observed for the labelled examples and summed out for the others; its encoder
  ``q(y|x)`` is the classifier. It works on vectors: Chapter 7 feeds it the posterior of
  Chapter 5's VAE (the paper's "M1 + M2").

Both train from batches ``((x_l, y_l), x_u)``, made by
:func:`uvbook.models.semisup.semisup_batches`.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
import numpy as np
from keras import ops

from uvbook.layers import replica_scaled
from uvbook.models.gan import TwoOptimizers
from uvbook.models.vae import gaussian_kl
from uvbook.validate import check_number, check_positive_int

LOG_2PI = math.log(2.0 * math.pi)


def _check_weight(value, name: str) -> float:
    return check_number(value, name, 0.0, math.inf)


# --------------------------------------------------------------------------- the semi-supervised GAN

def real_probability(logits):
    """The discriminator's probability that an image is real, from its ``K`` class logits:
    ``D(x) = Z / (Z + 1)`` with ``Z = sum_k exp(l_k)``, i.e. ``sigmoid(logsumexp(l))``: the
    ``K + 1``-th class, "generated", has its logit fixed at 0."""
    logits = ops.convert_to_tensor(logits)
    if len(logits.shape) != 2:
        raise ValueError(f"logits must be an (N, classes) array; got shape {tuple(logits.shape)}")
    return ops.sigmoid(ops.logsumexp(logits, axis=-1))


def sgan_discriminator_loss(logits_l, y_l, logits_u, logits_f):
    """The discriminator's two losses, ``(supervised, unsupervised)``.

    ``supervised`` is the cross-entropy of the labelled images' classes given that they are
    real (a softmax over the ``K`` logits); ``unsupervised`` is
    ``-(1/2) [mean log D(x_u) + mean log(1 - D(G(z)))]``, written with softplus for stability:
    ``-log D = softplus(-lse)`` and ``-log(1 - D) = softplus(lse)``, ``lse = logsumexp(l)``.
    """
    supervised = ops.mean(keras.losses.sparse_categorical_crossentropy(y_l, logits_l, from_logits=True))
    lse_u, lse_f = ops.logsumexp(logits_u, axis=-1), ops.logsumexp(logits_f, axis=-1)
    unsupervised = 0.5 * (ops.mean(ops.softplus(-lse_u)) + ops.mean(ops.softplus(lse_f)))
    return supervised, unsupervised


def feature_matching_loss(features_real, features_fake):
    """The generator's loss of Salimans et al.: the squared distance between the mean feature
    vectors of a batch of real and a batch of generated images, averaged over features."""
    return ops.mean(ops.square(ops.mean(features_real, axis=0) - ops.mean(features_fake, axis=0)))


def build_sgan_generator(latent_dim: int = 100, hidden: Sequence[int] = (500, 500),
                         image_shape: tuple[int, int, int] = (28, 28, 1)) -> keras.Model:
    """Salimans et al.'s MNIST generator: dense softplus layers with batch normalisation, then
    one sigmoid unit a pixel."""
    check_positive_int(latent_dim, "latent_dim")
    z = keras.Input((latent_dim,), name="z")
    h = z
    for i, units in enumerate(hidden):
        h = keras.layers.Dense(check_positive_int(units, "hidden units"), name=f"dense_{i}")(h)
        h = keras.layers.BatchNormalization(name=f"bn_{i}")(h)
        h = keras.layers.Activation("softplus", name=f"softplus_{i}")(h)
    h = keras.layers.Dense(int(np.prod(image_shape)), activation="sigmoid", name="pixels")(h)
    return keras.Model(z, keras.layers.Reshape(image_shape, name="image")(h), name="sgan_generator")


def build_sgan_discriminator(n_classes: int = 10, hidden: Sequence[int] = (1000, 500, 250, 250, 250),
                             input_noise: float = 0.3, hidden_noise: float = 0.5,
                             image_shape: tuple[int, int, int] = (28, 28, 1)) -> keras.Model:
    """Salimans et al.'s MNIST discriminator: Gaussian noise on the input (std ``input_noise``) and
    after every dense ReLU layer (``hidden_noise``), then ``n_classes`` logits. Two outputs:
    ``[logits, features]``, the features being the last hidden layer before its noise (what
    feature matching matches, as in the paper's code). The noise is active in training only."""
    check_positive_int(n_classes, "n_classes")
    check_number(input_noise, "input_noise", 0.0)
    check_number(hidden_noise, "hidden_noise", 0.0)
    x = keras.Input(image_shape, name="image")
    h = keras.layers.GaussianNoise(input_noise, name="input_noise")(keras.layers.Flatten(name="flatten")(x))
    features = h
    for i, units in enumerate(hidden):
        features = keras.layers.Dense(check_positive_int(units, "hidden units"), activation="relu",
                                      name=f"dense_{i}")(h)
        h = keras.layers.GaussianNoise(hidden_noise, name=f"noise_{i}")(features)
    logits = keras.layers.Dense(n_classes, name="logits")(h)
    return keras.Model(x, [logits, features], name="sgan_discriminator")


@keras.saving.register_keras_serializable(package="uvbook")
class SemiSupervisedGAN(TwoOptimizers, keras.Model):
    """A GAN whose discriminator is the classifier (Salimans et al. 2016), for Chapter 7.

    Every step sees ``((x_l, y_l), x_u)``. The discriminator minimises
    ``supervised + unsupervised_weight * unsupervised`` (:func:`sgan_discriminator_loss`) on
    the labelled, the unlabelled and as many generated images; then the generator minimises
    :func:`feature_matching_loss` between the unlabelled and fresh generated images. The
    classifier is the discriminator's logits (``classifier``); generated images are only
    a means.

    Metrics: ``d_loss``, ``supervised_loss``, ``unsupervised_loss``, ``g_loss`` (feature
    matching), ``accuracy`` (on the labelled batch), ``p_real`` and ``p_fake`` (mean ``D`` on
    the unlabelled and the generated images). Compile with ``compile(d_optimizer=...,
    g_optimizer=...)`` (:class:`~uvbook.models.gan.TwoOptimizers`; default Adam(1e-3, beta_1=0.5)).
    """

    default_learning_rate = 1e-3

    def __init__(self, generator: keras.Model, discriminator: keras.Model, unsupervised_weight: float = 1.0,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        for name, model in (("generator", generator), ("discriminator", discriminator)):
            if not isinstance(model, keras.Model):
                raise ValueError(f"{name} must be a keras.Model; got {type(model).__name__}")
        if len(discriminator.outputs) != 2:
            raise ValueError(f"discriminator must have two outputs, [logits, features]; got "
                             f"{len(discriminator.outputs)}")
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim = int(generator.inputs[0].shape[-1])
        self.unsupervised_weight = _check_weight(unsupervised_weight, "unsupervised_weight")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.d_optimizer = self.g_optimizer = None
        self.trackers = {name: keras.metrics.Mean(name=name) for name in
                         ("d_loss", "supervised_loss", "unsupervised_loss", "g_loss", "accuracy", "p_real",
                          "p_fake")}
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    @property
    def classifier(self) -> keras.Model:
        """The discriminator without its feature output (shared weights), mapping images to class logits."""
        return keras.Model(self.discriminator.inputs[0], self.discriminator.outputs[0], name="sgan_classifier")

    def call(self, x, training: bool = False):
        """The discriminator's class logits for images ``x``."""
        return self.discriminator(x, training=training)[0]

    def noise(self, n):
        """Latent vectors ``z ~ U(0, 1)^latent_dim``, as in the paper's code."""
        return keras.random.uniform((n, self.latent_dim), seed=self.seed_generator)

    def train_step(self, data):
        import tensorflow as tf  # the book's backend; the step is the keras.io idiom

        (x_l, y_l), x_u = data
        x_l, x_u = ops.cast(x_l, "float32"), ops.cast(x_u, "float32")
        n_l, n_u = ops.shape(x_l)[0], ops.shape(x_u)[0]
        fake = self.generator(self.noise(n_u), training=True)
        with tf.GradientTape() as tape:        # the discriminator: which class, real or generated
            logits, _ = self.discriminator(ops.concatenate([x_l, x_u, fake], axis=0), training=True)
            logits_l, logits_u, logits_f = logits[:n_l], logits[n_l:n_l + n_u], logits[n_l + n_u:]
            supervised, unsupervised = sgan_discriminator_loss(logits_l, y_l, logits_u, logits_f)
            d_loss = supervised + self.unsupervised_weight * unsupervised
            scaled = replica_scaled(d_loss)
        weights = self.discriminator.trainable_weights
        self.d_optimizer.apply_gradients(zip(tape.gradient(scaled, weights), weights))
        with tf.GradientTape() as tape:        # the generator: match the real images' mean features
            fake = self.generator(self.noise(n_u), training=True)
            _, features = self.discriminator(ops.concatenate([x_u, fake], axis=0), training=True)
            g_loss = feature_matching_loss(features[:n_u], features[n_u:])
            scaled = replica_scaled(g_loss)
        weights = self.generator.trainable_weights
        self.g_optimizer.apply_gradients(zip(tape.gradient(scaled, weights), weights))
        correct = ops.cast(ops.equal(ops.argmax(logits_l, axis=-1), ops.cast(y_l, "int64")), "float32")
        for name, value in (("d_loss", d_loss), ("supervised_loss", supervised),
                            ("unsupervised_loss", unsupervised), ("g_loss", g_loss),
                            ("accuracy", ops.mean(correct)), ("p_real", ops.mean(real_probability(logits_u))),
                            ("p_fake", ops.mean(real_probability(logits_f)))):
            self.trackers[name].update_state(value)
        return {name: t.result() for name, t in self.trackers.items()}

    def get_config(self):
        return {**super().get_config(), "generator": keras.saving.serialize_keras_object(self.generator),
                "discriminator": keras.saving.serialize_keras_object(self.discriminator),
                "unsupervised_weight": self.unsupervised_weight, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in ("generator", "discriminator"):
            config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)


# --------------------------------------------------------------------------- M2

def gaussian_log_likelihood(x, mean, log_var):
    """``log N(x; mean, diag(exp(log_var)))`` per example, summed over the last axis."""
    return -0.5 * ops.sum(LOG_2PI + log_var + ops.square(x - mean) / ops.exp(log_var), axis=-1)


def _mlp(inputs, hidden: Sequence[int], outputs: int, name: str) -> keras.Model:
    h = inputs
    for i, units in enumerate(hidden):
        h = keras.layers.Dense(check_positive_int(units, "hidden units"), activation="softplus",
                               name=f"{name}_dense_{i}")(h)
    return keras.Model(inputs, keras.layers.Dense(outputs, name=f"{name}_out")(h), name=name)


@keras.saving.register_keras_serializable(package="uvbook")
class M2(keras.Model):
    """M2 of Kingma et al. (2014) on vectors: ``p(y) p(z) p(x|y,z)`` with a uniform prior on the
    ``n_classes`` labels, ``z ~ N(0, I)`` and a Gaussian ``p(x|y,z)`` (a mean from a decoder
    MLP, one learned variance a feature); ``q(z|x,y)`` Gaussian and ``q(y|x)`` categorical, both
    MLPs. ``q(y|x)`` is the classifier (``classifier``, logits out).

    The loss of a batch ``((x_l, y_l), x_u)`` is Kingma et al.'s objective divided by the
    number of examples ``N``:

    ``labelled_share * mean(L(x_l, y_l)) + (1 - labelled_share) * mean(B(x_u))
    + alpha * mean(-log q(y_l|x_l))``

    with the bounds :meth:`labelled_bound` ``-L`` and :meth:`unlabelled_bound` ``-B``, and ``labelled_share``
    the labelled fraction of all examples; the paper's ``alpha = 0.1 N`` on the undivided
    objective is ``alpha = 0.1`` here.

    ``posterior_inputs=True`` (M1 + M2): every input row is ``[mean, log_var]`` of another
    model's Gaussian posterior (``2 * input_dim`` columns); each step draws a fresh sample
    from it, as the paper's code does, and ``classifier`` reads the mean.

    Metrics: ``loss``, ``labelled_bound``, ``unlabelled_bound``, ``classification_loss``,
    ``accuracy`` (on the labelled batch).
    """

    def __init__(self, input_dim: int, n_classes: int = 10, latent_dim: int = 16,
                 hidden: Sequence[int] = (500,), alpha: float = 0.1, labelled_share: float = 0.0,
                 posterior_inputs: bool = False, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = check_positive_int(input_dim, "input_dim")
        self.n_classes = check_positive_int(n_classes, "n_classes")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be at least 2; got {n_classes}")
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.hidden = tuple(int(check_positive_int(u, "hidden units")) for u in hidden)
        self.alpha = _check_weight(alpha, "alpha")
        self.labelled_share = check_number(labelled_share, "labelled_share", 0.0, 1.0)
        if not isinstance(posterior_inputs, bool):
            raise ValueError(f"posterior_inputs must be True or False; got {posterior_inputs!r}")
        self.posterior_inputs = posterior_inputs
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        d, k, z = self.input_dim, self.n_classes, self.latent_dim
        self.classifier = _mlp(keras.Input((d,), name="x"), self.hidden, k, "q_y")
        self.encoder = _mlp(keras.Input((d + k,), name="x_y"), self.hidden, 2 * z, "q_z")
        self.decoder = _mlp(keras.Input((z + k,), name="z_y"), self.hidden[::-1], d, "p_x")
        self.decoder_log_var = self.add_weight(shape=(d,), initializer="zeros", name="decoder_log_var")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in
                         ("loss", "labelled_bound", "unlabelled_bound", "classification_loss", "accuracy")}
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _inputs(self, x, sample: bool):
        x = ops.cast(x, "float32")
        if not self.posterior_inputs:
            return x
        mean, log_var = x[:, :self.input_dim], x[:, self.input_dim:]
        if not sample:
            return mean
        return mean + ops.exp(0.5 * log_var) * keras.random.normal(ops.shape(mean), seed=self.seed_generator)

    def call(self, x, training: bool = False):
        """The classifier's logits ``log q(y|x)`` (up to a constant) for inputs ``x``."""
        return self.classifier(self._inputs(x, sample=False), training=training)

    def labelled_bound(self, x, y_onehot):
        """The bound ``-L(x, y) = E_q(z|x,y)[log p(x|y,z)] + log p(y) - KL(q(z|x,y) || p(z))`` per
        example (Chapter 7's and the paper's ``L`` is its negative, a loss), with one
        reparameterised sample of ``z``: a lower bound on ``log p(x, y)``."""
        stats = self.encoder(ops.concatenate([x, y_onehot], axis=-1))
        z_mean, z_log_var = stats[:, :self.latent_dim], stats[:, self.latent_dim:]
        eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        z = z_mean + ops.exp(0.5 * z_log_var) * eps
        x_mean = self.decoder(ops.concatenate([z, y_onehot], axis=-1))
        log_px = gaussian_log_likelihood(x, x_mean, self.decoder_log_var)
        return log_px - math.log(self.n_classes) - gaussian_kl(z_mean, z_log_var)

    def unlabelled_bound(self, x, logits=None):
        """The bound ``-B(x) = sum_y q(y|x) (-L(x, y)) + H(q(y|x))`` per example (the paper's
        ``-U(x)``): the label summed out, a lower bound on ``log p(x)``. ``logits``: the classifier's logits for ``x``, if already computed."""
        n, k = ops.shape(x)[0], self.n_classes
        if logits is None:
            logits = self.classifier(x)
        q = ops.softmax(logits, axis=-1)
        log_q = ops.log_softmax(logits, axis=-1)
        x_rep = ops.tile(x, [k, 1])                                   # every x once with every y
        y_rep = ops.repeat(ops.eye(k), n, axis=0)                     # rows: y = 0 for all x, then 1, ...
        bounds = ops.transpose(ops.reshape(self.labelled_bound(x_rep, y_rep), (k, n)))   # (n, k)
        return ops.sum(q * bounds, axis=-1) - ops.sum(q * log_q, axis=-1)

    def train_step(self, data):
        import tensorflow as tf  # the book's backend; the step is the keras.io idiom

        (x_l, y_l), x_u = data
        x_l, x_u = self._inputs(x_l, sample=True), self._inputs(x_u, sample=True)
        y_l = ops.cast(y_l, "int32")
        with tf.GradientTape() as tape:
            logits_l = self.classifier(x_l, training=True)
            logits_u = self.classifier(x_u, training=True)
            bound_l = ops.mean(self.labelled_bound(x_l, ops.one_hot(y_l, self.n_classes)))
            bound_u = ops.mean(self.unlabelled_bound(x_u, logits_u))
            ce = ops.mean(keras.losses.sparse_categorical_crossentropy(y_l, logits_l, from_logits=True))
            share = self.labelled_share
            loss = -share * bound_l - (1.0 - share) * bound_u + self.alpha * ce
            scaled = replica_scaled(loss)
        weights = self.trainable_weights
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, weights), weights))
        correct = ops.cast(ops.equal(ops.argmax(logits_l, axis=-1), ops.cast(y_l, "int64")), "float32")
        for name, value in (("loss", loss), ("labelled_bound", bound_l), ("unlabelled_bound", bound_u),
                            ("classification_loss", ce), ("accuracy", ops.mean(correct))):
            self.trackers[name].update_state(value)
        return {name: t.result() for name, t in self.trackers.items()}

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "n_classes": self.n_classes,
                "latent_dim": self.latent_dim, "hidden": list(self.hidden), "alpha": self.alpha,
                "labelled_share": self.labelled_share, "posterior_inputs": self.posterior_inputs,
                "seed": self.seed}
