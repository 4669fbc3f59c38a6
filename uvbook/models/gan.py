"""Generative adversarial networks (Chapter 4): the GAN game, DCGAN and WGAN-GP.

* :class:`GAN` alternates one discriminator update and ``g_steps`` generator updates
  per batch. The discriminator outputs a *logit* :math:`l`, with :math:`D = \\sigma(l)`,
  so every loss is written with ``softplus`` and never takes the log of a rounded
  probability:

  - discriminator: :math:`-\\log D(x) - \\log(1 - D(G(z))) = \\mathrm{softplus}(-l_{real}) + \\mathrm{softplus}(l_{fake})`;
  - generator, ``loss="non_saturating"`` (the default): :math:`-\\log D(G(z)) = \\mathrm{softplus}(-l_{fake})`;
  - generator, ``loss="minimax"`` (the value function of Goodfellow et al. 2014 taken
    literally): :math:`\\log(1 - D(G(z))) = -\\mathrm{softplus}(l_{fake})`, whose gradient
    vanishes when the discriminator rejects the fakes confidently (Chapter 4 shows it).

  Options add what the GAN literature added after DCGAN (Chapter 4, "Training GANs well"):
  ``loss="hinge"`` (Lim & Ye 2017), ``r1_weight`` (the R1 penalty on real images, Mescheder
  et al. 2018), ``ema_decay`` (a moving average of the generator's weights, Yazıcı et al.
  2019); spectral normalisation is a builder option (``build_dcgan_discriminator(spectral_norm=True)``),
  two time-scale learning rates a choice of optimizers.

* :class:`ConditionalGAN` gives both players the class (Mirza & Osindero 2014): the generator
  takes noise and one-hot class concatenated (:func:`build_conditional_generator`), the
  discriminator is a projection discriminator (:func:`build_projection_discriminator`,
  Miyato & Koyama 2018).

* :class:`WGANGP` is the Wasserstein GAN with gradient penalty (Gulrajani et al. 2017):
  ``critic_steps`` critic updates per generator update, each on its own slice of the
  batch, penalty weight 10, and interpolation weights drawn *uniformly* per sample
  (the keras.io WGAN-GP example draws them from a normal distribution instead).

* :func:`build_dcgan_generator` / :func:`build_dcgan_discriminator` (Radford et al. 2016)
  and :func:`build_mlp_generator` / :func:`build_mlp_discriminator` (the article's
  section 4.2, corrected) are thin wrappers around :mod:`uvbook.layers`.

Training them is :func:`uvbook.recipes.train_gan` (Chapter 4's DCGAN:
:func:`uvbook.recipes.train_fashion_dcgan`; its variants: :func:`uvbook.recipes.train_gan_recipe`); :class:`uvbook.callbacks.SampleGrid` and
:class:`uvbook.callbacks.FrechetMonitor` watch them train.

Models see images in their own range: ``[-1, 1]`` for a ``tanh`` generator,
``[0, 1]`` for a ``sigmoid`` one. Everything public takes and returns images in
``[0, 1]`` (the book's convention) and converts with :meth:`GAN.preprocess` and
:meth:`GAN.postprocess`.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from uvbook.layers import (build_conv_decoder, build_conv_encoder, build_conv_trunk, build_dense_decoder,
                           build_dense_encoder, normalised)
from uvbook.layers import replica_scaled
from uvbook.validate import check_images, check_labels, check_positive_int

#: The games :class:`GAN` can play (``loss=``): the generator's loss, and for ``"hinge"`` the discriminator's too.
GENERATOR_LOSSES = ("non_saturating", "minimax", "hinge")
OUTPUT_ACTIVATIONS = ("tanh", "sigmoid")


# --------------------------------------------------------------------------- builders

def build_dcgan_generator(latent_dim: int = 64, filters: Sequence[int] = (64, 32),
                          output_activation: str = "tanh") -> keras.Model:
    """DCGAN generator: Dense -> 7x7 map -> transposed convs to 28x28, BatchNorm + ReLU, tanh.

    :func:`uvbook.layers.build_conv_decoder` with ``batchnorm=True`` (Radford et al. 2016).
    """
    _check_activation(output_activation)
    return build_conv_decoder(latent_dim, filters=filters, activation="relu", batchnorm=True,
                              output_activation=output_activation, name="dcgan_generator")


def build_dcgan_discriminator(filters: Sequence[int] = (64, 128), dense_units: int | None = None,
                              dropout: float = 0.0, batchnorm: bool = False, spectral_norm: bool = False,
                              name: str = "dcgan_discriminator") -> keras.Model:
    """DCGAN discriminator: strided convs with LeakyReLU(0.2) -> one logit named ``"logit"``.

    :func:`uvbook.layers.build_conv_encoder`; with the defaults (no batch norm) it is also
    the WGAN-GP critic, whose gradient penalty is per sample and so must not mix
    examples through batch statistics. Chapter 6 reuses its ``"flatten"`` layer as features.
    ``spectral_norm`` divides every layer's kernel by its largest singular value
    (``keras.layers.SpectralNormalization``, Miyato et al. 2018).
    """
    return build_conv_encoder(1, filters=filters, dense_units=dense_units, heads=("logit",),
                              activation="leaky_relu", batchnorm=batchnorm, dropout=dropout,
                              spectral_norm=spectral_norm, name=name)


def build_mlp_generator(latent_dim: int = 100, hidden: Sequence[int] = (256, 512, 1024, 256),
                        activation: str = "relu", output_activation: str = "tanh") -> keras.Model:
    """The article's generator (section 4.2), as a model: Dense layers, 784 tanh pixels, reshaped to 28x28x1.

    The article uses ReLU; Chapter 4 trains it with ``activation="leaky_relu"``.
    """
    _check_activation(output_activation)
    return build_dense_decoder(latent_dim, hidden=hidden, activation=activation,
                               output_activation=output_activation, name="mlp_generator")


def build_mlp_discriminator(hidden: Sequence[int] = (512, 256), activation: str = "relu") -> keras.Model:
    """The article's discriminator (section 4.2), as a model that flattens the image and returns a logit.

    The article uses ReLU; Chapter 4 trains it with ``activation="leaky_relu"``.
    """
    return build_dense_encoder(1, hidden=hidden, heads=("logit",), activation=activation,
                               name="mlp_discriminator")


def _check_activation(output_activation: str) -> None:
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}; got {output_activation!r}")


# --------------------------------------------------------------------------- models

class TwoOptimizers:
    """What a ``keras.Model`` with a ``generator`` and a ``discriminator`` needs to train each
    with its own optimizer: ``compile(d_optimizer=..., g_optimizer=...)``, saved and loaded.

    Both optimizers are built at ``compile``, on their player's weights, rather than at their
    first step: a built optimizer's state (step count, moments) is saved and restored with the
    model, by ``.keras`` files and by ``keras.callbacks.BackupAndRestore`` alike. The default
    for each is ``Adam(default_learning_rate, beta_1=0.5)``.
    """

    default_learning_rate = 2e-4  # DCGAN's (Radford et al. 2016)

    def compile(self, d_optimizer: keras.optimizers.Optimizer | None = None,
                g_optimizer: keras.optimizers.Optimizer | None = None, **kwargs):
        super().compile(optimizer=None, **kwargs)
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(self.default_learning_rate, beta_1=0.5)
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(self.default_learning_rate, beta_1=0.5)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    def get_compile_config(self):
        if self.d_optimizer is None:
            return None
        return {"d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer),
                "g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer)}

    def compile_from_config(self, config):
        self.compile(d_optimizer=keras.saving.deserialize_keras_object(config["d_optimizer"]),
                     g_optimizer=keras.saving.deserialize_keras_object(config["g_optimizer"]))


@keras.saving.register_keras_serializable(package="uvbook")
class GAN(TwoOptimizers, keras.Model):
    """A GAN whose ``train_step`` updates the discriminator once, then the generator ``g_steps`` times.

    Args:
        generator: maps ``(batch, latent_dim)`` noise to ``(batch, 28, 28, 1)`` images.
        discriminator: maps images to one logit per image.
        latent_dim: size of the noise vector, drawn from N(0, I).
        loss: ``"non_saturating"`` (generator minimises -log D(G(z))), ``"minimax"``
            (generator minimises log(1 - D(G(z))), which saturates) or ``"hinge"``
            (discriminator minimises max(0, 1 - l_real) + max(0, 1 + l_fake), generator
            minimises -l_fake; Lim & Ye 2017, Miyato et al. 2018).
        real_label: target for real images in the discriminator's loss; 1.0 is the
            plain game, 0.9 is one-sided label smoothing.
        g_steps: generator updates per discriminator update. More than 1 lets the
            generator chase the current discriminator's favourite image: Chapter 4
            uses it to provoke mode collapse.
        output_activation: ``"tanh"`` (the model works in [-1, 1]) or ``"sigmoid"``.
        r1_weight: gamma of the R1 penalty (Mescheder et al. 2018): the discriminator's loss
            gets ``gamma / 2`` times the mean squared norm of its gradient on real images.
            0 (the default) switches it off.
        ema_decay: keep ``ema_generator``, an exponential moving average of the generator's
            weights (Yazıcı et al. 2019) with this decay in (0, 1), or ``None`` for none.
            The decay ramps up as ``min(ema_decay, (1 + t) / (10 + t))`` after ``t``
            generator updates, so that a short run averages over its own steps and not
            over the random initialisation. :meth:`generate` uses the average when there is one.
        seed: seeds the noise drawn during training.

    Compile with ``gan.compile(d_optimizer=..., g_optimizer=...)``; ``fit`` on batches of
    images in [0, 1] (labels, if present, are ignored). Metrics: ``d_loss``, ``g_loss``,
    ``d_real`` and ``d_fake`` (the mean probability D gives real and generated images),
    ``g_grad_norm`` (the global norm of the generator's gradient) and, with ``r1_weight``,
    ``r1`` (the penalty's mean squared gradient norm before weighting).
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, latent_dim: int,
                 loss: str = "non_saturating", real_label: float = 1.0, g_steps: int = 1,
                 output_activation: str = "tanh", r1_weight: float = 0.0, ema_decay: float | None = None,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        check_positive_int(latent_dim, "latent_dim")
        check_positive_int(g_steps, "g_steps")
        if loss not in GENERATOR_LOSSES:
            raise ValueError(f"loss must be one of {GENERATOR_LOSSES}; got {loss!r}")
        if not 0.5 < float(real_label) <= 1.0:
            raise ValueError(f"real_label must be in (0.5, 1]; got {real_label!r}")
        if loss == "hinge" and float(real_label) != 1.0:
            raise ValueError(f"the hinge loss has no label to smooth: real_label must be 1.0; got {real_label!r}")
        if not (isinstance(r1_weight, (int, float)) and float(r1_weight) >= 0.0):
            raise ValueError(f"r1_weight must be a number >= 0; got {r1_weight!r}")
        if ema_decay is not None and not (isinstance(ema_decay, (int, float)) and 0.0 < float(ema_decay) < 1.0):
            raise ValueError(f"ema_decay must be None or a number in (0, 1); got {ema_decay!r}")
        _check_activation(output_activation)
        self._check(generator, discriminator, latent_dim)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(latent_dim)
        self.loss_name = loss
        self.real_label = float(real_label)
        self.g_steps = int(g_steps)
        self.output_activation = output_activation
        self.r1_weight = float(r1_weight)
        self.ema_decay = None if ema_decay is None else float(ema_decay)
        self.ema_generator = None
        if self.ema_decay is not None:
            self.ema_generator = keras.models.clone_model(generator)
            self.ema_generator.set_weights(generator.get_weights())
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.d_optimizer = None
        self.g_optimizer = None
        self._trackers = {name: keras.metrics.Mean(name=name) for name in self._metric_names()}
        self.built = True

    def _check(self, generator, discriminator, latent_dim):
        _check_players(generator, discriminator, latent_dim)

    # -- image ranges
    def preprocess(self, images):
        """Images in [0, 1] -> the models' range ([-1, 1] for tanh)."""
        return images * 2.0 - 1.0 if self.output_activation == "tanh" else images

    def postprocess(self, images):
        """The generator's range -> [0, 1]."""
        return (images + 1.0) / 2.0 if self.output_activation == "tanh" else images

    # -- training
    def _metric_names(self) -> tuple[str, ...]:
        return ("d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm") + (("r1",) if self.r1_weight else ())

    @property
    def metrics(self):
        return list(self._trackers.values())

    def noise(self, batch_size):
        """Latent vectors z ~ N(0, I) from the model's seeded generator."""
        return keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)

    def call(self, z, training: bool = False):
        """Generate images (in the model's range) from latent vectors ``z``."""
        return self.generator(z, training=training)

    def generator_loss(self, fake_logits):
        """The generator's loss on the discriminator's logits for generated images."""
        return _generator_loss(self.loss_name, fake_logits)

    def discriminator_loss(self, real_logits, fake_logits):
        """Binary cross-entropy: real -> ``real_label``, generated -> 0 (or the hinge loss)."""
        if self.loss_name == "hinge":
            return ops.mean(ops.relu(1.0 - real_logits)) + ops.mean(ops.relu(1.0 + fake_logits))
        a = self.real_label
        real = a * ops.softplus(-real_logits) + (1.0 - a) * ops.softplus(real_logits)
        return ops.mean(real) + ops.mean(ops.softplus(fake_logits))

    def _generator_step(self, batch_size, labels=None):
        z = self.noise(batch_size)
        with tf.GradientTape() as tape:
            fake_logits = self.critic(self.draw(z, labels, training=True), labels, training=True)
            g_loss = self.generator_loss(fake_logits)
            scaled = replica_scaled(g_loss)  # one device: the loss itself (see uvbook.layers)
        grads = tape.gradient(scaled, self.generator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_variables))
        self.update_average()
        return g_loss, _global_norm(grads)

    def update_average(self):
        """One step of the generator's moving average (nothing without ``ema_decay``)."""
        if self.ema_generator is None:
            return
        t = ops.cast(self.g_optimizer.iterations, "float32")
        decay = ops.minimum(self.ema_decay, (1.0 + t) / (10.0 + t))
        for average, weight in zip(self.ema_generator.weights, self.generator.weights):
            average.assign(decay * average + (1.0 - decay) * weight)

    def draw(self, z, labels=None, training: bool = False):
        """The generator on noise ``z`` (a :class:`ConditionalGAN` also gives it ``labels``)."""
        return self.generator(z, training=training)

    def critic(self, images, labels=None, training: bool = False):
        """The discriminator's logits for images in the model's range (and, conditional, ``labels``)."""
        return self.discriminator(images, training=training)

    def real_logits_and_r1(self, real, labels=None):
        """The discriminator's logits on real images and the R1 penalty's
        mean squared gradient norm, ``E ||grad_x l(x)||^2`` (0 without ``r1_weight``)."""
        if not self.r1_weight:
            return self.critic(real, labels, training=True), 0.0
        with tf.GradientTape() as tape:
            tape.watch(real)
            real_logits = self.critic(real, labels, training=True)
        grads = tape.gradient(real_logits, real)  # of the sum over the batch: each image's own gradient
        return real_logits, ops.mean(ops.sum(ops.square(grads), axis=(1, 2, 3)))

    def conditions(self, data):
        """What the players are conditioned on in a batch: nothing for a GAN (labels are ignored)."""
        return None

    def train_step(self, data):
        real = _images_of(data)
        real = self.preprocess(ops.cast(real, "float32"))
        labels = self.conditions(data)
        batch_size = ops.shape(real)[0]
        fake = self.draw(self.noise(batch_size), labels, training=True)
        with tf.GradientTape() as tape:
            real_logits, r1 = self.real_logits_and_r1(real, labels)
            fake_logits = self.critic(fake, labels, training=True)
            d_loss = self.discriminator_loss(real_logits, fake_logits)
            scaled = replica_scaled(d_loss + 0.5 * self.r1_weight * r1)
        grads = tape.gradient(scaled, self.discriminator.trainable_variables)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_variables))
        for _ in range(self.g_steps):
            g_loss, g_norm = self._generator_step(batch_size, labels)
        values = {"d_loss": d_loss, "g_loss": g_loss, "d_real": ops.mean(ops.sigmoid(real_logits)),
                  "d_fake": ops.mean(ops.sigmoid(fake_logits)), "g_grad_norm": g_norm}
        return self._update({**values, "r1": r1} if self.r1_weight else values)

    def _update(self, values):
        for name, value in values.items():
            self._trackers[name].update_state(value)
        return {name: t.result() for name, t in self._trackers.items()}

    # -- use
    def sampler(self, averaged: bool | None = None) -> keras.Model:
        """The network that draws images: the moving average when ``averaged`` (default: when
        the model keeps one), else the trained generator itself."""
        if averaged and self.ema_generator is None:
            raise ValueError("averaged=True needs a model built with ema_decay; this one keeps no average")
        use_average = self.ema_generator is not None if averaged is None else averaged
        return self.ema_generator if use_average else self.generator

    def generate(self, n: int, seed: int = 0, batch_size: int = 500, averaged: bool | None = None) -> np.ndarray:
        """``n`` images in [0, 1] from noise drawn with NumPy's ``seed`` (repeatable); see :meth:`sampler`."""
        check_positive_int(n, "n")
        z = sample_noise(n, self.latent_dim, seed=seed)
        return self.generate_from(z, batch_size=batch_size, averaged=averaged)

    def generate_from(self, z, batch_size: int = 500, averaged: bool | None = None) -> np.ndarray:
        """Images in [0, 1] from given latent vectors ``z`` of shape (n, latent_dim)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (n, {self.latent_dim}); got {z.shape}")
        sampler = self.sampler(averaged)
        out = [keras.ops.convert_to_numpy(sampler(z[i:i + batch_size], training=False))
               for i in range(0, len(z), batch_size)]
        return np.clip(self.postprocess(np.concatenate(out)), 0.0, 1.0).astype(np.float32)

    def discriminate(self, images, batch_size: int = 500) -> np.ndarray:
        """The discriminator's logit (the critic's score for a WGAN) for images in [0, 1]."""
        images = check_images(images, "images")
        out = [keras.ops.convert_to_numpy(self.discriminator(self.preprocess(images[i:i + batch_size]),
                                                              training=False))
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out)[:, 0]

    def generator_gradient_norm(self, batch_size: int = 256, loss: str | None = None,
                                seed: int = 0) -> float:
        """Norm of the generator's gradient under ``loss`` (default: the model's own), no update.

        Chapter 4 uses it to show the minimax loss saturating: when D rejects the fakes
        confidently, log(1 - D(G(z))) barely moves with G's weights.
        """
        check_positive_int(batch_size, "batch_size")
        loss = loss or self.loss_name
        if loss not in GENERATOR_LOSSES:
            raise ValueError(f"loss must be one of {GENERATOR_LOSSES}; got {loss!r}")
        z = tf.constant(sample_noise(batch_size, self.latent_dim, seed=seed))
        with tf.GradientTape() as tape:
            logits = self.discriminator(self.generator(z, training=False), training=False)
            value = _generator_loss(loss, logits)
        grads = tape.gradient(value, self.generator.trainable_variables)
        return float(_global_norm(grads))

    # -- saving
    def get_config(self):
        return {**super().get_config(),
                "generator": keras.saving.serialize_keras_object(self.generator),
                "discriminator": keras.saving.serialize_keras_object(self.discriminator),
                "latent_dim": self.latent_dim, "loss": self.loss_name, "real_label": self.real_label,
                "g_steps": self.g_steps, "output_activation": self.output_activation,
                "r1_weight": self.r1_weight, "ema_decay": self.ema_decay, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="uvbook")
class ConditionalGAN(GAN):
    """A GAN whose players both see the class (Mirza & Osindero 2014): ``G(z, y)`` and ``D(x, y)``.

    The generator takes the noise and the one-hot class concatenated
    (:func:`build_conditional_generator`); the discriminator takes the image and the one-hot
    class (:func:`build_projection_discriminator`). ``fit`` on batches of ``(images, labels)``;
    each batch's generated images get the same classes as its real ones, so the generator
    is trained on the data's class frequencies. Everything else (losses, R1, the moving
    average, the metrics) is :class:`GAN`'s; ``n_classes`` is the number of classes K.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, latent_dim: int,
                 n_classes: int = 10, **kwargs):
        self.n_classes = check_positive_int(n_classes, "n_classes")
        super().__init__(generator, discriminator, latent_dim, **kwargs)

    def _check(self, generator, discriminator, latent_dim):
        _check_conditional_players(generator, discriminator, latent_dim, self.n_classes)

    def conditions(self, data):
        if not isinstance(data, (tuple, list)) or len(data) < 2:
            raise ValueError("ConditionalGAN trains on batches of (images, labels); got images alone")
        return ops.one_hot(ops.cast(data[1], "int32"), self.n_classes)

    def draw(self, z, labels=None, training: bool = False):
        return self.generator(ops.concatenate([z, labels], axis=-1), training=training)

    def critic(self, images, labels=None, training: bool = False):
        return self.discriminator([images, labels], training=training)

    def generate(self, n: int, seed: int = 0, batch_size: int = 500, averaged: bool | None = None,
                 labels=None) -> np.ndarray:
        """``n`` images in [0, 1] of classes ``labels`` (default: 0, 1, ..., K-1, 0, 1, ...)."""
        check_positive_int(n, "n")
        labels = np.arange(n) % self.n_classes if labels is None else labels
        return self.generate_from(sample_noise(n, self.latent_dim, seed=seed), batch_size=batch_size,
                                  averaged=averaged, labels=labels)

    def generate_from(self, z, batch_size: int = 500, averaged: bool | None = None, labels=None) -> np.ndarray:
        """Images in [0, 1] from latent vectors ``z`` (n, latent_dim) and class ``labels`` (n,) in 0..K-1."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (n, {self.latent_dim}); got {z.shape}")
        if labels is None:
            raise ValueError(f"a ConditionalGAN needs labels: {len(z)} class labels in 0..{self.n_classes - 1}")
        onehot = self.one_hot(labels, len(z))
        sampler = self.sampler(averaged)
        out = [keras.ops.convert_to_numpy(sampler(np.concatenate([z[i:i + batch_size], onehot[i:i + batch_size]], 1),
                                                  training=False))
               for i in range(0, len(z), batch_size)]
        return np.clip(self.postprocess(np.concatenate(out)), 0.0, 1.0).astype(np.float32)

    def discriminate(self, images, labels=None, batch_size: int = 500) -> np.ndarray:
        """The discriminator's logit for images in [0, 1] of classes ``labels``."""
        images = check_images(images, "images")
        onehot = self.one_hot(labels, len(images))
        out = [keras.ops.convert_to_numpy(self.discriminator([self.preprocess(images[i:i + batch_size]),
                                                               onehot[i:i + batch_size]], training=False))
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out)[:, 0]

    def generator_gradient_norm(self, *args, **kwargs) -> float:
        raise NotImplementedError("generator_gradient_norm is defined for the unconditional GAN only")

    def one_hot(self, labels, n: int) -> np.ndarray:
        """``labels`` checked (n integers in 0..K-1) and one-hot encoded as float32."""
        labels = check_labels(labels, "labels", length=n)
        if labels.min() < 0 or labels.max() >= self.n_classes:
            raise ValueError(f"labels must be class numbers in 0..{self.n_classes - 1}; got values from "
                             f"{labels.min()} to {labels.max()}")
        return np.eye(self.n_classes, dtype=np.float32)[labels]

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes}


@keras.saving.register_keras_serializable(package="uvbook")
class WGANGP(GAN):
    """Wasserstein GAN with gradient penalty (Gulrajani et al. 2017, Algorithm 1).

    Each ``train_step`` splits its batch of real images into ``critic_steps`` equal
    slices (feed batches of ``critic_steps`` times the per-step batch size) and does one
    critic update on each, then one generator update:

    * critic: minimise ``mean f(G(z)) - mean f(x) + gp_weight * mean (||grad f(x_hat)|| - 1)^2``,
      with ``x_hat = eps * x + (1 - eps) * G(z)`` and ``eps ~ U[0, 1]`` drawn per sample;
    * generator: minimise ``-mean f(G(z))``.

    The critic (``discriminator``) returns an unbounded score and must not use batch
    normalisation. Metrics: ``d_loss`` (critic loss with penalty), ``g_loss``, ``gp``,
    ``d_real`` and ``d_fake`` (mean critic scores; their difference estimates the
    Wasserstein-1 distance up to the critic's Lipschitz constant) and ``g_grad_norm``.
    A batch with fewer than ``critic_steps`` images cannot be split and raises an error.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, latent_dim: int,
                 critic_steps: int = 5, gp_weight: float = 10.0, output_activation: str = "tanh",
                 seed: int | None = None, **kwargs):
        for unused in ("loss", "real_label", "g_steps", "r1_weight"):
            kwargs.pop(unused, None)
        super().__init__(generator, discriminator, latent_dim, output_activation=output_activation,
                         seed=seed, **kwargs)
        self.critic_steps = check_positive_int(critic_steps, "critic_steps")
        if not float(gp_weight) >= 0.0:
            raise ValueError(f"gp_weight must be a non-negative number; got {gp_weight!r}")
        self.gp_weight = float(gp_weight)

    def _metric_names(self) -> tuple[str, ...]:
        return ("d_loss", "g_loss", "gp", "d_real", "d_fake", "g_grad_norm")

    def compile(self, d_optimizer=None, g_optimizer=None, **kwargs):
        """Default Adam(1e-4, beta_1=0, beta_2=0.9) for both, as in Gulrajani et al. 2017."""
        super().compile(d_optimizer=d_optimizer or keras.optimizers.Adam(1e-4, beta_1=0.0, beta_2=0.9),
                        g_optimizer=g_optimizer or keras.optimizers.Adam(1e-4, beta_1=0.0, beta_2=0.9),
                        **kwargs)

    def gradient_penalty(self, real, fake):
        """Mean of (||grad_x f(x_hat)||_2 - 1)^2 on random points between real and fake images."""
        eps = keras.random.uniform((ops.shape(real)[0], 1, 1, 1), seed=self.seed_generator)
        x_hat = eps * real + (1.0 - eps) * fake
        with tf.GradientTape() as tape:
            tape.watch(x_hat)
            scores = self.discriminator(x_hat, training=True)
        grads = tape.gradient(scores, x_hat)
        norms = ops.sqrt(ops.sum(ops.square(grads), axis=(1, 2, 3)) + 1e-12)
        return ops.mean(ops.square(norms - 1.0))

    def train_step(self, data):
        real_all = self.preprocess(ops.cast(_images_of(data), "float32"))
        n = self.critic_steps
        per_step = ops.shape(real_all)[0] // n
        tf.debugging.assert_positive(per_step, message=f"WGANGP needs batches of at least critic_steps={n} images")
        variables = self.discriminator.trainable_variables
        for i in range(n):
            real = real_all[i * per_step:(i + 1) * per_step]
            fake = self.generator(self.noise(per_step), training=True)
            with tf.GradientTape() as tape:
                real_scores = self.discriminator(real, training=True)
                fake_scores = self.discriminator(fake, training=True)
                gp = self.gradient_penalty(real, fake)
                d_loss = ops.mean(fake_scores) - ops.mean(real_scores) + self.gp_weight * gp
                scaled = replica_scaled(d_loss)
            grads = tape.gradient(scaled, variables)
            self.d_optimizer.apply_gradients(zip(grads, variables))
        g_loss, g_norm = self._generator_step(per_step)
        return self._update({"d_loss": d_loss, "g_loss": g_loss, "gp": gp,
                             "d_real": ops.mean(real_scores), "d_fake": ops.mean(fake_scores),
                             "g_grad_norm": g_norm})

    def generator_loss(self, fake_scores):
        return -ops.mean(fake_scores)

    def get_config(self):
        config = super().get_config()
        for unused in ("loss", "real_label", "g_steps", "r1_weight"):
            config.pop(unused)
        return {**config, "critic_steps": self.critic_steps, "gp_weight": self.gp_weight}


def _generator_loss(loss: str, fake_logits):
    if loss == "minimax":
        return -ops.mean(ops.softplus(fake_logits))  # log(1 - D(G(z)))
    if loss == "hinge":
        return -ops.mean(fake_logits)
    return ops.mean(ops.softplus(-fake_logits))  # -log D(G(z))


def _images_of(data):
    return data[0] if isinstance(data, (tuple, list)) else data


def _global_norm(grads):
    return ops.sqrt(sum(ops.sum(ops.square(g)) for g in grads if g is not None))


def _check_players(generator, discriminator, latent_dim: int) -> None:
    if not isinstance(generator, keras.Model) or not isinstance(discriminator, keras.Model):
        raise ValueError("generator and discriminator must be keras.Model objects (build them with "
                         f"the builders of uvbook.models.gan); got {type(generator).__name__} and "
                         f"{type(discriminator).__name__}")
    g_in, g_out = tuple(generator.input_shape), tuple(generator.output_shape)
    if g_in[1:] != (latent_dim,):
        raise ValueError(f"generator must take noise of shape (batch, {latent_dim}); its input is {g_in}")
    if g_out[1:] != tuple(discriminator.input_shape[1:]):
        raise ValueError(f"the generator's output {g_out} must match the discriminator's input "
                         f"{tuple(discriminator.input_shape)}")
    if tuple(discriminator.output_shape)[1:] != (1,):
        raise ValueError(f"discriminator must return one logit per image, shape (batch, 1); got "
                         f"{tuple(discriminator.output_shape)}")


def _check_conditional_players(generator, discriminator, latent_dim: int, n_classes: int) -> None:
    if not isinstance(generator, keras.Model) or not isinstance(discriminator, keras.Model):
        raise ValueError("generator and discriminator must be keras.Model objects; got "
                         f"{type(generator).__name__} and {type(discriminator).__name__}")
    g_in = tuple(generator.input_shape)
    if g_in[1:] != (latent_dim + n_classes,):
        raise ValueError(f"a conditional generator takes noise and one-hot class concatenated, shape "
                         f"(batch, {latent_dim} + {n_classes}); its input is {g_in}")
    d_in = discriminator.input_shape
    if not (isinstance(d_in, list) and len(d_in) == 2 and tuple(d_in[1])[1:] == (n_classes,)):
        raise ValueError(f"a conditional discriminator takes [images, one-hot classes of size {n_classes}]; "
                         f"its inputs are {d_in}")
    if tuple(generator.output_shape)[1:] != tuple(d_in[0])[1:]:
        raise ValueError(f"the generator's output {tuple(generator.output_shape)} must match the "
                         f"discriminator's image input {tuple(d_in[0])}")


def build_conditional_generator(latent_dim: int = 64, n_classes: int = 10, filters: Sequence[int] = (64, 32)) -> keras.Model:
    """The DCGAN generator on the noise and the one-hot class concatenated: input size ``latent_dim + n_classes``."""
    check_positive_int(n_classes, "n_classes")
    return build_dcgan_generator(latent_dim + n_classes, filters=filters)


def build_projection_discriminator(n_classes: int = 10, filters: Sequence[int] = (64, 128),
                                   spectral_norm: bool = False) -> keras.Model:
    r"""A conditional discriminator with a projection (Miyato & Koyama 2018): inputs ``[image, one-hot class]``.

    The image goes through the DCGAN discriminator's convolutions to features
    :math:`\phi(x)`; the logit is :math:`w^\top \phi(x) + b + e_y^\top \phi(x)`, where
    :math:`e_y` is a learned embedding of the class (a Dense layer without bias on the
    one-hot vector). The last term asks "do these features look like class y?".
    """
    check_positive_int(n_classes, "n_classes")
    trunk = build_conv_trunk(filters, activation="leaky_relu", spectral_norm=spectral_norm,
                             name="projection_trunk")
    image = keras.Input(shape=trunk.input_shape[1:], name="image")
    label = keras.Input(shape=(n_classes,), name="label")
    features = trunk(image)
    width = trunk.output_shape[-1]
    plain = normalised(keras.layers.Dense(1, name="logit"), spectral_norm)(features)
    embedding = normalised(keras.layers.Dense(width, use_bias=False, name="class_embedding"), spectral_norm)(label)
    projection = keras.layers.Dot(axes=1, name="projection")([embedding, features])
    return keras.Model([image, label], keras.layers.Add(name="conditional_logit")([plain, projection]),
                       name="projection_discriminator")


def sample_noise(n: int, latent_dim: int, seed: int = 0) -> np.ndarray:
    """Fixed latent vectors z ~ N(0, I) from NumPy's ``seed`` (for grids that are comparable across epochs)."""
    check_positive_int(n, "n")
    check_positive_int(latent_dim, "latent_dim")
    return np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)
