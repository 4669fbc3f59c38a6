"""The GAN training techniques of Chapter 4's second part (hinge loss, R1, spectral norm, the moving
average of the generator) and the conditional GAN, each checked against an answer known in advance."""

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from uvbook.models.gan import (GAN, ConditionalGAN, build_conditional_generator,  # noqa: E402
                               build_dcgan_discriminator, build_dcgan_generator, build_mlp_discriminator,
                               build_mlp_generator, build_projection_discriminator, sample_noise)


def _gan(**kwargs):
    keras.utils.set_random_seed(0)
    gan = GAN(build_mlp_generator(4, hidden=(8,)), build_mlp_discriminator(hidden=(8,), activation="leaky_relu"),
              4, seed=0, **kwargs)
    gan.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-2))
    return gan


def _images(n=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, 28, 28, 1)).astype(np.float32)


def _cgan(**kwargs):
    keras.utils.set_random_seed(0)
    gan = ConditionalGAN(build_conditional_generator(4, 3, filters=(4, 4)), build_projection_discriminator(3, (4, 4)),
                         4, n_classes=3, seed=0, **kwargs)
    gan.compile()
    return gan


def test_hinge_losses_at_known_logits():
    gan = _gan(loss="hinge")
    real = np.array([[2.0], [0.5], [-1.0]], np.float32)   # max(0, 1 - l): 0, 0.5, 2 -> mean 5/6
    fake = np.array([[-2.0], [0.0], [1.0]], np.float32)   # max(0, 1 + l): 0, 1, 2 -> mean 1
    assert float(gan.discriminator_loss(real, fake)) == pytest.approx(5 / 6 + 1.0, rel=1e-6)
    assert float(gan.generator_loss(fake)) == pytest.approx(1 / 3, rel=1e-6)   # -mean l


def test_r1_of_a_linear_discriminator_is_its_squared_weight_norm():
    """D(x) = w.x + b has gradient w at every image, so E ||grad D||^2 = ||w||^2 exactly."""
    keras.utils.set_random_seed(0)
    linear = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(1, name="logit")])
    gan = GAN(build_mlp_generator(4, hidden=(8,)), linear, 4, r1_weight=10.0, seed=0)
    gan.compile()
    w = keras.ops.convert_to_numpy(linear.get_layer("logit").kernel)
    _, r1 = gan.real_logits_and_r1(tf.constant(_images(5)))
    assert float(r1) == pytest.approx(float(np.sum(w ** 2)), rel=1e-5)
    history = gan.fit(_images(), batch_size=16, epochs=1, verbose=0)
    assert "r1" in history.history and history.history["r1"][0] > 0
    assert "r1" not in _gan().fit(_images(), batch_size=16, epochs=1, verbose=0).history


def test_moving_average_follows_the_warm_up_schedule():
    """After the first generator update (t = 1) the decay is min(0.999, 2/11) = 2/11."""
    gan = _gan(ema_decay=0.999)
    before = [w.copy() for w in gan.generator.get_weights()]
    np.testing.assert_array_equal(gan.ema_generator.get_weights()[0], before[0])   # starts as a copy
    gan.fit(_images(16), batch_size=16, epochs=1, verbose=0)                         # one step
    after = gan.generator.get_weights()
    assert int(gan.g_optimizer.iterations) == 1 and not np.allclose(after[0], before[0])
    for avg, w0, w1 in zip(gan.ema_generator.get_weights(), before, after):
        np.testing.assert_allclose(avg, 2 / 11 * w0 + 9 / 11 * w1, rtol=1e-5, atol=1e-7)
    z = sample_noise(4, 4, seed=1)
    assert not np.allclose(gan.generate_from(z), gan.generate_from(z, averaged=False))
    np.testing.assert_array_equal(gan.generate_from(z), gan.generate_from(z, averaged=True))


def test_the_average_does_not_change_training():
    """The average only watches: with and without it, the generator learns the same weights."""
    plain, averaged = _gan(), _gan(ema_decay=0.9)
    for gan in (plain, averaged):
        gan.fit(_images(), batch_size=16, epochs=1, verbose=0)
    for a, b in zip(plain.generator.get_weights(), averaged.generator.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_spectral_norm_bounds_every_layer_of_the_discriminator():
    keras.utils.set_random_seed(0)
    disc = build_dcgan_discriminator(filters=(8, 8), spectral_norm=True)
    wrapped = [layer for layer in disc.layers if isinstance(layer, keras.layers.SpectralNormalization)]
    assert len(wrapped) == 3                                            # two convs and the logit
    x = tf.constant(_images(8))
    for _ in range(30):                                                 # power iterations converge
        disc(x, training=True)
    for layer in wrapped:
        kernel = keras.ops.convert_to_numpy(layer.layer.kernel)
        sigma = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
        assert sigma == pytest.approx(1.0, abs=0.02)


def test_round_trip_keeps_the_average_and_the_options(tmp_path):
    gan = _gan(loss="hinge", r1_weight=1.0, ema_decay=0.99)
    gan.fit(_images(), batch_size=16, epochs=1, verbose=0)
    gan.save(tmp_path / "gan.keras")
    loaded = keras.models.load_model(tmp_path / "gan.keras")
    assert (loaded.loss_name, loaded.r1_weight, loaded.ema_decay) == ("hinge", 1.0, 0.99)
    for a, b in zip(loaded.ema_generator.get_weights(), gan.ema_generator.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_projection_discriminator_adds_the_class_embedding_times_the_features():
    keras.utils.set_random_seed(0)
    disc = build_projection_discriminator(3, (4, 4))
    x = _images(2)
    trunk = disc.get_layer("projection_trunk")
    features = keras.ops.convert_to_numpy(trunk(x))
    embed = keras.ops.convert_to_numpy(disc.get_layer("class_embedding").kernel)   # (3, width)
    onehot = np.eye(3, dtype=np.float32)
    logits = {y: keras.ops.convert_to_numpy(disc([x, onehot[[y, y]]]))[:, 0] for y in range(3)}
    for y in (1, 2):   # the unconditional part cancels: what differs is (e_y - e_0) . phi(x)
        np.testing.assert_allclose(logits[y] - logits[0], features @ (embed[y] - embed[0]), rtol=1e-4, atol=1e-5)


def test_conditional_gan_trains_on_labelled_batches_and_generates_the_asked_classes(tmp_path):
    gan = _cgan(ema_decay=0.9)
    history = gan.fit(_images(), np.arange(32) % 3, batch_size=16, epochs=1, verbose=0)
    assert int(gan.g_optimizer.iterations) == 2 and {"d_loss", "g_loss"} <= set(history.history)
    z = sample_noise(3, 4, seed=0)
    a = gan.generate_from(np.repeat(z[:1], 3, 0), labels=[0, 1, 2])
    assert a.shape == (3, 28, 28, 1) and not np.allclose(a[0], a[1])     # the class changes the image
    gan.save(tmp_path / "cgan.keras")
    loaded = keras.models.load_model(tmp_path / "cgan.keras")
    assert type(loaded) is ConditionalGAN and loaded.n_classes == 3
    np.testing.assert_array_equal(loaded.generate(6, seed=2), gan.generate(6, seed=2))


@pytest.mark.parametrize("call, message", [
    (lambda: _gan(ema_decay=1.0), r"ema_decay must be None or a number in \(0, 1\); got 1.0"),
    (lambda: _gan(ema_decay=0.0), r"ema_decay must be None or a number in \(0, 1\); got 0.0"),
    (lambda: _gan(ema_decay="0.9"), r"ema_decay must be None or a number in \(0, 1\); got '0.9'"),
    (lambda: _gan(r1_weight=-1.0), "r1_weight must be a number >= 0; got -1.0"),
    (lambda: _gan(loss="hinge", real_label=0.9), "real_label must be 1.0; got 0.9"),
    (lambda: _gan().generate(2, averaged=True), "needs a model built with ema_decay"),
    (lambda: _cgan().generate(3, labels=[0, 1, 3]), r"labels must be class numbers in 0..2; got values from 0 to 3"),
    (lambda: _cgan().generate(3, labels=[0, -1, 2]), r"in 0..2; got values from -1 to 2"),
    (lambda: _cgan().generate(3, labels=[0, 1]), r"one label per example \(3\); got 2"),
    (lambda: _cgan().generate(2, labels=[0.5, 1.0]), "integer class labels"),
    (lambda: _cgan().generate_from(sample_noise(2, 4)), "needs labels"),
    (lambda: _cgan().fit(_images(4), batch_size=4, epochs=1, verbose=0), r"batches of \(images, labels\)"),
    (lambda: ConditionalGAN(build_dcgan_generator(4, filters=(4, 4)), build_projection_discriminator(3, (4, 4)), 4,
                            n_classes=3), r"\(batch, 4 \+ 3\)"),
    (lambda: ConditionalGAN(build_conditional_generator(4, 3, (4, 4)), build_dcgan_discriminator(filters=(4, 4)), 4,
                            n_classes=3), r"\[images, one-hot classes of size 3\]"),
])
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
