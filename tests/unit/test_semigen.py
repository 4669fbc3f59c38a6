"""Chapter 7's generative routes: the semi-supervised GAN's losses and model, M2's bounds and
model, and the batches both train on, each against an answer known in advance."""

from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from uvbook.models.semigen import (M2, SemiSupervisedGAN, build_sgan_discriminator,  # noqa: E402
                                   build_sgan_generator, feature_matching_loss, gaussian_log_likelihood,
                                   real_probability, sgan_discriminator_loss)
from uvbook.models.semisup import semisup_batches  # noqa: E402
from uvbook.modes import set_seed  # noqa: E402


def _np(x):
    return keras.ops.convert_to_numpy(x)


# ----------------------------------------------------------------------------- the semi-supervised GAN

def test_real_probability_is_z_over_z_plus_one():
    logits = np.log(np.array([[1.0, 2.0, 1.0], [0.5, 0.25, 0.25]]))     # Z = 4 and Z = 1
    assert np.allclose(_np(real_probability(logits)), [4 / 5, 1 / 2], atol=1e-6)
    # a huge logit: D -> 1 without overflow
    assert np.isclose(_np(real_probability(np.array([[1000.0, 0.0]])))[0], 1.0)


def test_the_unsupervised_loss_stays_finite_for_huge_logits():
    # l_u = l_f = (1000, 0): -log D(x) = softplus(-1000) = 0 and -log(1 - D(G(z))) = softplus(1000)
    # = 1000, so the loss is 0.5 * (0 + 1000); log(sigmoid(.)) written naively gives inf or nan
    huge = np.array([[1000.0, 0.0]])
    _, unsup = sgan_discriminator_loss(np.zeros((1, 2)), np.array([0]), huge, huge)
    assert math.isclose(float(_np(unsup)), 500.0, rel_tol=1e-6)


def test_discriminator_losses_match_their_definitions():
    rng = np.random.default_rng(0)
    l_l, l_u, l_f = (rng.normal(size=(4, 3)) for _ in range(3))
    y = np.array([0, 2, 1, 2])
    sup, unsup = (float(_np(v)) for v in sgan_discriminator_loss(l_l, y, l_u, l_f))
    p = np.exp(l_l) / np.exp(l_l).sum(1, keepdims=True)
    assert math.isclose(sup, -np.mean(np.log(p[np.arange(4), y])), rel_tol=1e-5)
    d_u = np.exp(l_u).sum(1) / (np.exp(l_u).sum(1) + 1)
    d_f = np.exp(l_f).sum(1) / (np.exp(l_f).sum(1) + 1)
    assert math.isclose(unsup, -0.5 * (np.mean(np.log(d_u)) + np.mean(np.log(1 - d_f))), rel_tol=1e-5)


def test_feature_matching_is_the_squared_distance_of_the_means():
    a = np.array([[0.0, 2.0], [2.0, 0.0]])
    b = np.array([[2.0, 1.0], [4.0, 1.0]])     # means (1, 1) and (3, 1): squared 2 a feature, absolute 1
    assert math.isclose(float(_np(feature_matching_loss(a, b))), 2.0, rel_tol=1e-6)
    assert float(_np(feature_matching_loss(a, a[::-1]))) == 0.0


def test_real_probability_refuses_a_vector():
    with pytest.raises(ValueError, match=r"\(N, classes\).*got shape \(3,\)"):
        real_probability(np.zeros(3))


def _toy(n=200, seed=0):
    """Two classes of 28x28 images: a bright band at the top or at the bottom."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    x = rng.uniform(0, 0.2, (n, 28, 28, 1)).astype("float32")
    x[y == 0, 2:10] += 0.7
    x[y == 1, 18:26] += 0.7
    return x, y


def test_sgan_learns_from_two_labels_a_class_saves_and_reloads(tmp_path):
    set_seed(0)
    x, y = _toy()
    gan = SemiSupervisedGAN(build_sgan_generator(8, (32,)), build_sgan_discriminator(2, (64, 32)), seed=0)
    gan.compile(d_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5),
                g_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5))
    lab = np.r_[0:2, 100:102]
    hist = gan.fit(semisup_batches(x[lab], y[lab], x, 4, 32, n_classes=2), epochs=2, steps_per_epoch=30,
                   verbose=0).history
    assert hist["supervised_loss"][-1] < hist["supervised_loss"][0]
    assert hist["p_real"][-1] > hist["p_fake"][-1]              # it tells real from generated
    pred = _np(gan.classifier(x, training=False)).argmax(1)
    assert np.mean(pred == y) > 0.9
    path = tmp_path / "sgan.keras"
    gan.save(path)
    again = keras.models.load_model(path)
    assert isinstance(again, SemiSupervisedGAN)
    assert np.allclose(_np(again.classifier(x[:8])), _np(gan.classifier(x[:8])), atol=1e-6)
    # both optimizers come back with their state
    assert int(_np(again.d_optimizer.iterations)) == int(_np(gan.d_optimizer.iterations)) == 60
    assert int(_np(again.g_optimizer.iterations)) == int(_np(gan.g_optimizer.iterations)) == 60
    for ours, theirs in zip(gan.g_optimizer.variables, again.g_optimizer.variables):
        assert np.allclose(_np(ours), _np(theirs))


def _one_sgan_step(unsupervised_weight):
    set_seed(0)
    x, y = _toy(40)
    gan = SemiSupervisedGAN(build_sgan_generator(8, (16,)), build_sgan_discriminator(2, (16, 8)),
                            unsupervised_weight=unsupervised_weight, seed=0)
    gan.compile()
    before = [_np(w).copy() for w in (*gan.generator.trainable_weights, *gan.discriminator.trainable_weights)]
    batch = next(iter(semisup_batches(x[[0, 1, 20, 21]], y[[0, 1, 20, 21]], x, 4, 16, n_classes=2)))
    gan.train_step(batch)
    g = len(gan.generator.trainable_weights)
    after = [_np(w) for w in (*gan.generator.trainable_weights, *gan.discriminator.trainable_weights)]
    return before[:g], after[:g], after[g:]


def test_a_sgan_step_moves_the_generator_and_its_discriminator_update_uses_the_unlabelled_term():
    g_before, g_after, d_with = _one_sgan_step(1.0)
    assert any(not np.allclose(b, a) for b, a in zip(g_before, g_after))     # the generator step ran
    _, _, d_without = _one_sgan_step(0.0)
    # same seed, same batch: only the unlabelled and generated images' term differs
    assert any(not np.allclose(a, b) for a, b in zip(d_with, d_without))


def test_sgan_refuses_a_discriminator_without_features():
    one_output = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="two outputs.*got 1"):
        SemiSupervisedGAN(build_sgan_generator(8, (16,)), one_output)


# ----------------------------------------------------------------------------- M2

def _zeroed_m2(d=3, k=4, share=0.0):
    m2 = M2(d, n_classes=k, latent_dim=2, hidden=(5,), labelled_share=share, seed=0)
    for net in (m2.encoder, m2.decoder):
        net.set_weights([np.zeros_like(w) for w in net.get_weights()])
    return m2


def test_m2_bounds_equal_their_closed_form_when_the_networks_ignore_x_y_and_z():
    # encoder all zero: q(z|x,y) = N(0, I), so KL = 0; decoder all zero: mean 0 whatever z and y,
    # unit variance. Then L(x, y) = log N(x; 0, I) - log K exactly, whatever z was drawn, and
    # U(x) = L(x, .) + H(q(y|x)).
    m2 = _zeroed_m2()
    x = np.array([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]], dtype="float32")
    y = np.eye(4, dtype="float32")[[1, 3]]
    expected = -0.5 * np.sum(math.log(2 * math.pi) + x ** 2, axis=1) - math.log(4)
    assert np.allclose(_np(m2.labelled_bound(x, y)), expected, atol=1e-5)
    logits = np.array([[0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0]], dtype="float32")
    q = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    entropy = -np.sum(q * np.log(q), axis=1)
    assert np.allclose(_np(m2.unlabelled_bound(x, logits)), expected + entropy, atol=1e-5)
    assert math.isclose(entropy[1], math.log(4), rel_tol=1e-6)    # a uniform q adds log K


def test_unlabelled_bound_is_the_q_weighted_labelled_bounds_plus_the_entropy():
    # with the encoder's log-variance at -30, z is its mean and every bound is deterministic;
    # then -B(x) = sum_y q(y|x) (-L(x, y)) + H(q) must hold for any q, which fails if the
    # tiled classes were paired with the wrong examples or the wrong columns of q
    set_seed(0)
    m2 = M2(3, n_classes=3, latent_dim=2, hidden=(6,), seed=0)
    w = m2.encoder.get_weights()
    w[-2][:, 2:] = 0.0
    w[-1][2:] = -30.0
    m2.encoder.set_weights(w)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 3)).astype("float32")
    logits = rng.normal(size=(5, 3)).astype("float32") * 2
    q = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    per_class = np.stack([_np(m2.labelled_bound(x, np.eye(3, dtype="float32")[[c] * 5])) for c in range(3)], 1)
    assert np.ptp(per_class, axis=1).min() > 1e-3               # the classes' bounds differ
    expected = np.sum(q * per_class, axis=1) - np.sum(q * np.log(q), axis=1)
    assert np.allclose(_np(m2.unlabelled_bound(x, logits)), expected, atol=1e-4)


def test_gaussian_log_likelihood_of_a_standard_normal():
    x = np.array([[1.0, -2.0]], dtype="float32")
    value = float(_np(gaussian_log_likelihood(x, np.zeros_like(x), np.zeros(2, "float32")))[0])
    assert math.isclose(value, -math.log(2 * math.pi) - 2.5, rel_tol=1e-6)


def test_gaussian_log_likelihood_with_another_variance():
    from scipy.stats import norm

    x, mean = np.array([[1.0, -2.0]], "float32"), np.array([[0.5, 1.0]], "float32")
    value = float(_np(gaussian_log_likelihood(x, mean, np.full(2, math.log(4.0), "float32")))[0])
    assert math.isclose(value, norm.logpdf(x, mean, 2.0).sum(), rel_tol=1e-6)      # standard deviation 2


def test_labelled_bound_subtracts_the_kl_of_a_shifted_posterior():
    # encoder outputs z_mean = 1 and log_var = -30 whatever x and y: KL(N(1, e^-30) || N(0, 1)) =
    # 0.5 (1 + e^-30 - 1 + 30) = 15.5 - tiny, a dimension; decoder zero: log N(x; 0, I) - log K
    m2 = _zeroed_m2(k=4)
    w = m2.encoder.get_weights()
    w[-1][:] = [1.0, 1.0, -30.0, -30.0]
    m2.encoder.set_weights(w)
    x = np.array([[0.5, -1.0, 2.0]], dtype="float32")
    expected = -0.5 * np.sum(math.log(2 * math.pi) + x ** 2) - math.log(4) - 2 * 0.5 * (1 + math.exp(-30) + 30 - 1)
    assert math.isclose(float(_np(m2.labelled_bound(x, np.eye(4, dtype="float32")[[2]]))[0]), expected,
                        rel_tol=1e-5)


def test_posterior_inputs_are_sampled_with_their_standard_deviation():
    m2 = M2(2, n_classes=2, latent_dim=1, hidden=(4,), posterior_inputs=True, seed=0)
    rows = np.tile(np.array([[1.0, -1.0, math.log(4.0), math.log(0.25)]], "float32"), (20000, 1))
    draws = _np(m2._inputs(rows, sample=True))
    assert np.allclose(draws.mean(0), [1.0, -1.0], atol=0.03)
    assert np.allclose(draws.std(0), [2.0, 0.5], rtol=0.03)          # exp(0.5 log_var)


def test_the_unlabelled_bound_trains_the_classifier():
    # without labels, only B(x) reaches q(y|x): its gradient with respect to the classifier is not zero
    import tensorflow as tf

    set_seed(0)
    m2 = M2(3, n_classes=3, latent_dim=2, hidden=(6,), seed=0)
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    with tf.GradientTape() as tape:
        bound = keras.ops.mean(m2.unlabelled_bound(x))
    grads = tape.gradient(bound, m2.classifier.trainable_weights)
    assert all(g is not None for g in grads)
    assert max(float(np.abs(_np(g)).max()) for g in grads) > 1e-4
    # and in a training step with the labels' terms switched off (alpha = 0, labelled_share = 0)
    m2 = M2(3, n_classes=3, latent_dim=2, hidden=(6,), alpha=0.0, labelled_share=0.0, seed=0)
    m2.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = [_np(w).copy() for w in m2.classifier.trainable_weights]
    m2.train_step(next(iter(semisup_batches(x[:3], np.arange(3), x, 3, 8, n_classes=3))))
    assert any(not np.allclose(b, _np(w)) for b, w in zip(before, m2.classifier.trainable_weights))


def test_m2_learns_two_blobs_from_five_labels_each_saves_and_reloads(tmp_path):
    set_seed(0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    x = (rng.normal(size=(1000, 4)) + 3.0 * y[:, None] * np.array([1, 0, 0, 0])).astype("float32")
    lab = np.r_[np.where(y == 0)[0][:5], np.where(y == 1)[0][:5]]
    m2 = M2(4, n_classes=2, latent_dim=2, hidden=(32,), alpha=5.0, labelled_share=0.01, seed=0)
    m2.compile(optimizer=keras.optimizers.Adam(3e-3))
    hist = m2.fit(semisup_batches(x[lab], y[lab], x, 10, 100, n_classes=2), epochs=3, steps_per_epoch=100,
                  verbose=0).history
    assert hist["unlabelled_bound"][-1] > hist["unlabelled_bound"][0]
    assert np.mean(_np(m2(x)).argmax(1) == y) > 0.85          # the Bayes rule gets about 0.93
    path = tmp_path / "m2.keras"
    m2.save(path)
    again = keras.models.load_model(path)
    assert isinstance(again, M2) and again.alpha == 5.0
    assert np.allclose(_np(again(x[:10])), _np(m2(x[:10])), atol=1e-6)


def test_m2_reads_the_mean_of_posterior_inputs():
    m2 = M2(2, n_classes=2, latent_dim=1, hidden=(4,), posterior_inputs=True, seed=0)
    mean = np.array([[0.3, -0.2]], dtype="float32")
    with_var = np.concatenate([mean, np.full((1, 2), 5.0, "float32")], axis=1)
    assert np.allclose(_np(m2(with_var)), _np(m2.classifier(mean)))


@pytest.mark.parametrize("kwargs, message", [
    ({"n_classes": 1}, "n_classes must be at least 2; got 1"),
    ({"alpha": -1.0}, "alpha"),
    ({"labelled_share": 1.5}, "labelled_share"),
    ({"posterior_inputs": "yes"}, "posterior_inputs must be True or False"),
])
def test_m2_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        M2(4, **kwargs)


# ----------------------------------------------------------------------------- the batches

def test_batches_hold_the_asked_numbers_of_each_set():
    x, y = _toy(20)
    (x_l, y_l), x_u = next(iter(semisup_batches(x[[0, 1, 10, 11]], y[[0, 1, 10, 11]], x, 3, 7, n_classes=2)))
    assert x_l.shape == (3, 28, 28, 1) and y_l.shape == (3,) and x_u.shape == (7, 28, 28, 1)


@pytest.mark.parametrize("args, message", [
    (lambda x, y: (x[:4], np.array([0, 1, 2, 1]), x, 2, 2), r"classes in 0\.\.1; got values from 0 to 2"),
    (lambda x, y: (x[:4], np.array([0, 0, 0, 0]), x, 2, 2), r"every class 0\.\.1; it has none of \[1\]"),
    (lambda x, y: (x[:4], np.array([0, 1, 0, 1]), x[:, :14], 2, 2), "one shape"),
    (lambda x, y: (x[:4], np.array([0, 1, 0, 1]), x, 0, 2), "labelled_batch"),
])
def test_batches_refuse_bad_inputs(args, message):
    x, y = _toy(20)
    with pytest.raises(ValueError, match=message):
        semisup_batches(*args(x, y), n_classes=2)
