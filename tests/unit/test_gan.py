"""uvbook.models.gan (GAN, WGANGP, builders, callbacks) and Chapter 4's additions to uvbook.evaluate."""

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402
from scipy.linalg import sqrtm  # noqa: E402

from uvbook import evaluate, recipes  # noqa: E402
from uvbook.callbacks import FrechetMonitor, SampleGrid  # noqa: E402
from uvbook.models.gan import (GAN, WGANGP, build_dcgan_discriminator, build_dcgan_generator,  # noqa: E402
                               build_mlp_discriminator, build_mlp_generator, sample_noise)
from uvbook.recipes import train_gan  # noqa: E402

LN2 = float(np.log(2.0))


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _tiny_gan(cls=GAN, latent=4, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    gen = build_mlp_generator(latent, hidden=(16,))
    disc = build_mlp_discriminator(hidden=(16,), activation="leaky_relu")
    gan = cls(gen, disc, latent, seed=seed, **kwargs)
    gan.compile(keras.optimizers.Adam(2e-3, beta_1=0.5), keras.optimizers.Adam(2e-3, beta_1=0.5))
    return gan


def _pattern_images(n=256, seed=0):
    """A fixed 'garment': bright upper half, dark lower half, plus a little noise."""
    rng = np.random.default_rng(seed)
    x = np.full((n, 28, 28, 1), 0.15, np.float32)
    x[:, :14] = 0.85
    return np.clip(x + 0.03 * rng.normal(size=x.shape), 0, 1).astype(np.float32)


# ------------------------------------------------------------------ builders

@pytest.mark.parametrize("build, out", [
    (lambda: build_dcgan_generator(16, filters=(16, 8)), (None, 28, 28, 1)),
    (lambda: build_dcgan_discriminator(filters=(8, 16)), (None, 1)),
    (lambda: build_mlp_generator(10, hidden=(32,)), (None, 28, 28, 1)),
    (lambda: build_mlp_discriminator(hidden=(32,)), (None, 1)),
])
def test_builders_give_the_documented_shapes(build, out):
    assert tuple(build().output.shape) == out


def test_tanh_generator_stays_in_range_and_discriminator_uses_leaky_relu():
    gen = build_dcgan_generator(8, filters=(8, 8))
    images = _np(gen(np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32) * 20))
    assert images.min() >= -1.0 and images.max() <= 1.0 and images.min() < 0.0
    disc = build_dcgan_discriminator(filters=(8, 8))
    assert any(getattr(layer, "activation", None) is keras.activations.leaky_relu for layer in disc.layers)
    assert disc.get_layer("logit").activation is keras.activations.linear  # a logit, not a probability


# ------------------------------------------------------------------ losses

def test_losses_match_the_value_function_at_known_points():
    gan = _tiny_gan()
    zero = np.zeros((8, 1), np.float32)
    # D = 1/2 everywhere: -log(1/2) - log(1/2) = 2 ln 2 (the value at the game's equilibrium, negated)
    assert float(gan.discriminator_loss(zero, zero)) == pytest.approx(2 * LN2, rel=1e-6)
    assert float(gan.generator_loss(zero)) == pytest.approx(LN2, rel=1e-6)            # -log D
    minimax = _tiny_gan(loss="minimax")
    assert float(minimax.generator_loss(zero)) == pytest.approx(-LN2, rel=1e-6)       # log(1 - D)
    # One-sided label smoothing: real target 0.9 -> 0.9 softplus(-l) + 0.1 softplus(l)
    smooth = _tiny_gan(real_label=0.9)
    l_real = np.full((8, 1), 3.0, np.float32)
    want = 0.9 * np.log1p(np.exp(-3.0)) + 0.1 * np.log1p(np.exp(3.0)) + LN2
    assert float(smooth.discriminator_loss(l_real, zero)) == pytest.approx(want, rel=1e-5)


def test_minimax_generator_gradient_vanishes_when_d_rejects_fakes():
    """d/dl log(1 - sigmoid(l)) = -sigmoid(l) -> 0 as l -> -inf; -log sigmoid(l) keeps slope -1."""
    logits = tf.constant([[-8.0]])
    grads = {}
    for loss in ("minimax", "non_saturating"):
        gan = _tiny_gan(loss=loss)
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = gan.generator_loss(logits)
        grads[loss] = abs(float(tape.gradient(value, logits)[0, 0]))
    assert grads["minimax"] == pytest.approx(1 / (1 + np.exp(8.0)), rel=1e-3)   # ~3e-4
    assert grads["non_saturating"] == pytest.approx(1 - 1 / (1 + np.exp(8.0)), rel=1e-3)
    assert grads["non_saturating"] > 1000 * grads["minimax"]


# ------------------------------------------------------------------ training

def test_train_step_alternates_the_players_and_tracks_metrics():
    gan = _tiny_gan(g_steps=3)
    history = gan.fit(_pattern_images(64), batch_size=32, epochs=2, verbose=0)
    assert set(history.history) == {"d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm"}
    assert int(gan.d_optimizer.iterations) == 4 and int(gan.g_optimizer.iterations) == 12
    for key in ("d_real", "d_fake"):
        assert all(0.0 <= v <= 1.0 for v in history.history[key])


@pytest.mark.parametrize("seed", [0, 1])
def test_gan_learns_a_fixed_pattern(seed):
    """The thresholds hold with a margin for every seed from 0 to 5 (the worst: error ratio
    0.41, probability gap 0.24); an untrained or broken G keeps its error (ratio near 1)."""
    x = _pattern_images()
    gan = _tiny_gan(seed=seed)
    before = np.abs(gan.generate(200).mean(0) - x.mean(0)).mean()
    gan.fit(x, batch_size=16, epochs=25, verbose=0)  # 400 steps
    after = np.abs(gan.generate(200).mean(0) - x.mean(0)).mean()
    assert after < 0.5 * before, (before, after)
    # D can no longer tell: its mean probability on real and fake images are both near 1/2
    real_p = 1 / (1 + np.exp(-gan.discriminate(x)))
    fake_p = 1 / (1 + np.exp(-gan.discriminate(gan.generate(200))))
    assert abs(real_p.mean() - fake_p.mean()) < 0.3, (real_p.mean(), fake_p.mean())


def test_wgangp_does_critic_steps_on_slices_and_one_generator_step():
    gan = _tiny_gan(WGANGP, critic_steps=5)
    history = gan.fit(_pattern_images(80), batch_size=40, epochs=1, verbose=0)  # 2 batches of 5 x 8
    assert int(gan.d_optimizer.iterations) == 10 and int(gan.g_optimizer.iterations) == 2
    assert {"d_loss", "g_loss", "gp", "d_real", "d_fake", "g_grad_norm"} == set(history.history)
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least critic_steps"):
        gan.train_step(tf.zeros((3, 28, 28, 1)))


def _critic(fn):
    inputs = keras.Input((28, 28, 1))
    return keras.Model(inputs, keras.layers.Lambda(fn, output_shape=(1,))(inputs))


def test_gradient_penalty_of_linear_critics():
    """f(x) = w.x has gradient w everywhere: penalty (|w| - 1)^2 whatever eps."""
    real, fake = tf.random.uniform((16, 28, 28, 1)), tf.random.uniform((16, 28, 28, 1))
    for norm, want in ((1.0, 0.0), (3.0, 4.0)):
        w = np.random.default_rng(0).normal(size=(1, 28, 28, 1)).astype(np.float32)
        w *= norm / np.linalg.norm(w)
        critic = _critic(lambda x, w=w: ops.sum(x * w, axis=(1, 2, 3))[:, None])
        gan = WGANGP(build_mlp_generator(4, hidden=(8,)), critic, 4, seed=0)
        assert float(gan.gradient_penalty(real, fake)) == pytest.approx(want, abs=1e-3)


def test_interpolation_weights_are_uniform_per_sample():
    """f(x) = |x|^2 / 2, real of unit norm, fake = 0: |grad f(x_hat)| = eps, penalty = E(1 - eps)^2.

    That is 1/3 for eps ~ U[0, 1] per sample; a normal eps (keras.io) would give 2, and one
    eps shared by the batch would make the batch mean swing between 0 and 1.
    """
    critic = _critic(lambda x: 0.5 * ops.sum(x * x, axis=(1, 2, 3))[:, None])
    gan = WGANGP(build_mlp_generator(4, hidden=(8,)), critic, 4, seed=0)
    real = np.zeros((4000, 28, 28, 1), np.float32)
    real[:, 0, 0, 0] = 1.0
    values = [float(gan.gradient_penalty(tf.constant(real), tf.zeros_like(real))) for _ in range(3)]
    assert values == pytest.approx([1 / 3] * 3, abs=0.02)


# ------------------------------------------------------------------ saving, callbacks

@pytest.mark.parametrize("cls, kwargs", [
    (GAN, {"loss": "minimax", "g_steps": 2, "real_label": 0.9}),
    (WGANGP, {"critic_steps": 2, "gp_weight": 5.0}),
])
def test_round_trip_keeps_weights_config_and_optimizer_state(tmp_path, cls, kwargs):
    gan = _tiny_gan(cls, **kwargs)
    gan.fit(_pattern_images(32), batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "gan.keras"
    gan.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is cls
    for key, value in kwargs.items():
        assert loaded.get_config()[key] == value
    z = sample_noise(5, 4, seed=3)
    np.testing.assert_allclose(loaded.generate_from(z), gan.generate_from(z), atol=1e-6)
    images = _pattern_images(4)
    np.testing.assert_allclose(loaded.discriminate(images), gan.discriminate(images), atol=1e-5)
    assert int(loaded.d_optimizer.iterations) == int(gan.d_optimizer.iterations) > 0
    loaded.fit(_pattern_images(32), batch_size=16, epochs=1, verbose=0)  # training resumes


def test_callbacks_record_snapshots_frechet_and_time():
    gan = _tiny_gan()
    noise = sample_noise(6, 4, seed=0)
    grid = SampleGrid(noise, every=1, show=False)
    seen = []
    monitor = FrechetMonitor(lambda im: seen.append(im.shape) or 1.5, n=10, every=2)
    history = gan.fit(_pattern_images(32), batch_size=16, epochs=2, verbose=0, callbacks=[grid, monitor])
    assert [e for e, _ in grid.snapshots] == [1, 2]
    assert all(im.shape == (6, 28, 28, 1) and 0 <= im.min() and im.max() <= 1 for _, im in grid.snapshots)
    np.testing.assert_allclose(grid.snapshots[-1][1], gan.generate_from(noise), atol=1e-6)
    assert np.isnan(history.history["frechet"][0]) and history.history["frechet"][1] == 1.5
    assert seen == [(10, 28, 28, 1)]
    assert 0 < history.history["elapsed"][0] <= history.history["elapsed"][1]


def test_train_gan_caches_the_model_and_its_monitored_history(tmp_path):
    calls = []

    def build():
        calls.append("build")
        return _tiny_gan()

    kwargs = dict(epochs=2, batch_size=16, key={"model": "tiny"}, distance=lambda im: float(im.mean()),
                  monitor_samples=8, folder=tmp_path, verbose=False)
    gan, history = train_gan("tiny_gan", build, _pattern_images(32), **kwargs)
    again, cached = train_gan("tiny_gan", build, _pattern_images(32), **kwargs)
    assert calls == ["build"] and cached == history
    assert len(history["frechet"]) == 2 and len(history["elapsed"]) == 2 and "d_loss" in history
    np.testing.assert_allclose(again.generate(4), gan.generate(4), atol=1e-6)
    train_gan("tiny_gan", build, _pattern_images(32), **{**kwargs, "epochs": 1})  # new key: retrains
    assert calls == ["build", "build"]


def test_generate_is_repeatable_and_in_unit_range():
    gan = _tiny_gan()
    a, b = gan.generate(7, seed=1), gan.generate(7, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (7, 28, 28, 1) and a.dtype == np.float32 and 0 <= a.min() <= a.max() <= 1


@pytest.mark.parametrize("call, message", [
    (lambda: _tiny_gan(loss="wasserstein"), "loss must be one of"),
    (lambda: _tiny_gan(g_steps=0), "g_steps must be a positive integer"),
    (lambda: _tiny_gan(real_label=0.3), r"real_label must be in \(0.5, 1\]"),
    (lambda: _tiny_gan(WGANGP, critic_steps=0), "critic_steps must be a positive integer"),
    (lambda: GAN(build_mlp_generator(4, hidden=(8,)), build_mlp_discriminator(hidden=(8,)), 5),
     r"noise of shape \(batch, 5\)"),
    (lambda: GAN(build_mlp_generator(4, hidden=(8,)), build_mlp_generator(4, hidden=(8,)), 4),
     "must match the discriminator's input"),
    (lambda: GAN("generator", build_mlp_discriminator(hidden=(8,)), 4), "keras.Model"),
    (lambda: build_dcgan_generator(8, output_activation="linear"), "output_activation must be one of"),
    (lambda: _tiny_gan().generate_from(np.zeros((2, 3))), r"z must have shape \(n, 4\)"),
    (lambda: _tiny_gan().discriminate(np.zeros((2, 28, 28, 3), np.float32)), "grey-scale"),
    (lambda: SampleGrid(np.zeros(4)), "noise must have shape"),
    (lambda: evaluate.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4))), "same number of features"),
    (lambda: evaluate.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3))), "at least 2 rows"),
    (lambda: evaluate.frechet_distance_from_stats(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)),
     r"\(2, 2\) covariance"),
    (lambda: evaluate.frechet_distance_from_stats(np.zeros(2), np.array([[1.0, 1.0], [0.0, 1.0]]),
                                                  np.zeros(2), np.eye(2)), "symmetric"),
    (lambda: evaluate.class_coverage(_StubClassifier([0]), np.zeros((1, 28, 28, 1), np.float32),
                                     min_share=1.5), r"min_share must be in \[0, 1\)"),
    (lambda: evaluate.domain_features(keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten()]),
                                      np.zeros((1, 28, 28, 1), np.float32)), "layer named 'features'"),
])
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------ Fréchet distance, coverage

def _closed_form_diagonal(mu1, var1, mu2, var2):
    return float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2))


def test_frechet_distance_matches_the_closed_form_for_two_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    want = _closed_form_diagonal(mu1, var1, mu2, var2)
    got = evaluate.frechet_distance_from_stats(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(want, rel=1e-10)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert evaluate.frechet_distance_from_stats([2.0], [[9.0]], [0.0], [[1.0]]) == pytest.approx(4 + 4)
    # a rotation of both Gaussians changes nothing
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    rotated = evaluate.frechet_distance_from_stats(q @ mu1, q @ np.diag(var1) @ q.T,
                                                   q @ mu2, q @ np.diag(var2) @ q.T)
    assert rotated == pytest.approx(want, rel=1e-8)


def test_frechet_distance_with_non_commuting_covariances_matches_sqrtm():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    want = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2)))
    assert evaluate.frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-8)
    assert evaluate.frechet_distance_from_stats(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    assert (evaluate.frechet_distance_from_stats(mu1, s1, mu2, s2)
            == pytest.approx(evaluate.frechet_distance_from_stats(mu2, s2, mu1, s1), rel=1e-9))


def test_frechet_distance_of_samples_approaches_the_closed_form():
    rng = np.random.default_rng(2)
    mu1, mu2 = np.array([0.0, 0.0]), np.array([1.0, -1.0])
    var1, var2 = np.array([1.0, 1.0]), np.array([4.0, 0.25])
    a = mu1 + np.sqrt(var1) * rng.normal(size=(200_000, 2))
    b = mu2 + np.sqrt(var2) * rng.normal(size=(200_000, 2))
    assert evaluate.frechet_distance(a, b) == pytest.approx(_closed_form_diagonal(mu1, var1, mu2, var2),
                                                            rel=0.01)  # 2 + 1 + 0.25 = 3.25


class _StubClassifier:
    """Predicts given classes, in order, whatever the images (for class_coverage)."""

    def __init__(self, classes):
        self.classes = np.asarray(classes)

    def predict(self, images, batch_size=None, verbose=0):
        return np.eye(10, dtype=np.float32)[self.classes[:len(images)]]


@pytest.mark.parametrize("classes, n_classes, bits", [
    (np.repeat(np.arange(10), 100), 10, np.log2(10)),
    (np.full(1000, 3), 1, 0.0),
    (np.repeat([2, 7], 500), 2, 1.0),
    (np.r_[np.full(995, 1), np.full(5, 4)], 1, None),  # 0.5% of class 4 is below min_share = 1%
])
def test_class_coverage_counts_classes_and_entropy(classes, n_classes, bits):
    images = np.zeros((len(classes), 28, 28, 1), np.float32)
    cov = evaluate.class_coverage(_StubClassifier(classes), images)
    assert cov.classes == n_classes
    if bits is not None:
        assert cov.entropy_bits == pytest.approx(bits)
    assert sum(cov.histogram) == pytest.approx(1.0) and len(cov.histogram) == 10
    assert f"{n_classes} of 10 classes" in str(cov)


def test_domain_classifier_is_cached_and_retrained_when_absent(tmp_path):
    clf = recipes.domain_classifier(n_train=300, epochs=1, folder=tmp_path, verbose=False)
    files = sorted(tmp_path.glob("*.keras"))
    assert len(files) == 1 and clf.get_layer("features").output.shape[-1] == 128
    again = recipes.domain_classifier(n_train=300, epochs=1, folder=tmp_path, verbose=False)
    x = np.random.default_rng(0).uniform(size=(6, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(evaluate.domain_features(again, x), evaluate.domain_features(clf, x),
                               rtol=1e-5, atol=1e-5)
    assert evaluate.domain_features(clf, x).shape == (6, 128)
    files[0].unlink()
    recipes.domain_classifier(n_train=300, epochs=1, folder=tmp_path, verbose=False)
    assert [f.name for f in tmp_path.glob("*.keras")] == [files[0].name]
    # the distance of a set to itself is 0; to a shifted set it is the Fréchet distance of the two
    # feature sets, and it grows as the sets move apart
    assert evaluate.domain_frechet_distance(clf, x, x) == pytest.approx(0.0, abs=1e-6)
    near, far = np.clip(x + 0.1, 0, 1), np.clip(x + 0.4, 0, 1)
    d_far = evaluate.domain_frechet_distance(clf, x, far)
    assert d_far == pytest.approx(evaluate.frechet_distance(evaluate.domain_features(clf, x),
                                                            evaluate.domain_features(clf, far)), rel=1e-6)
    assert d_far > evaluate.domain_frechet_distance(clf, x, near) > 1e-3


def test_fashion_cnn_split_is_disjoint_balanced_and_checked():
    x_fit, y_fit, x_val, y_val = recipes.fashion_cnn_split(1000, 100)
    assert len(x_fit) == 900 and len(x_val) == 100
    assert np.bincount(y_val, minlength=10).tolist() == [10] * 10
    fit_rows = {x.tobytes() for x in x_fit}
    assert not any(x.tobytes() in fit_rows for x in x_val)
    again = recipes.fashion_cnn_split(1000, 100)
    np.testing.assert_array_equal(again[3], y_val)   # the same split every time
    with pytest.raises(ValueError, match="n_val must be smaller than the 1000"):
        recipes.fashion_cnn_split(1000, 1000)


def test_train_fashion_cnn_watches_the_validation_split_and_is_the_domain_classifier(tmp_path):
    model, history = recipes.train_fashion_cnn(n_train=300, epochs=2, folder=tmp_path, verbose=False)
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history)
    assert len(history["val_accuracy"]) == 2 and history["loss"][1] < history["loss"][0]
    clf = recipes.domain_classifier(n_train=300, epochs=2, folder=tmp_path, verbose=False)
    assert len(list(tmp_path.glob("*.keras"))) == 1   # loaded, not trained again
    x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(clf.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="bn_momentum must be in"):
        recipes.build_fashion_cnn(bn_momentum=1.5)
