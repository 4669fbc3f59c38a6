"""uvbook.models.vae: known answers for the KL, the ELBO and the importance-weighted bound."""

import keras
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from uvbook.models import vae as V
from uvbook.models.vae import VAE, binarize, build_vae, gaussian_kl

SHAPE = (4, 4, 1)  # a 16-pixel "image" keeps the closed forms cheap
D = int(np.prod(SHAPE))


def test_closed_form_kl_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean = np.array([[0.7, -1.2, 0.1]], np.float32)
    log_var = np.array([[np.log(0.3), np.log(2.0), 0.0]], np.float32)
    exact = float(keras.ops.convert_to_numpy(gaussian_kl(mean, log_var))[0])
    std = np.exp(0.5 * log_var[0])
    z = mean[0] + std * rng.standard_normal((400_000, 3))
    log_q = multivariate_normal(mean[0], np.diag(std ** 2)).logpdf(z)
    log_p = multivariate_normal(np.zeros(3), np.eye(3)).logpdf(z)
    mc = float(np.mean(log_q - log_p))
    assert exact > 0
    assert abs(mc - exact) < 0.01, (mc, exact)
    assert float(keras.ops.convert_to_numpy(gaussian_kl(np.zeros((1, 3)), np.zeros((1, 3))))[0]) == 0.0


def _linear_gaussian(kernel, bias, sigma, enc_kernel, enc_bias, log_var):
    """x = z K + b + sigma * noise, z ~ N(0, I); encoder mean x A + c, fixed log-variance."""
    d = kernel.shape[0]
    enc_in = keras.Input(SHAPE)
    flat = keras.layers.Flatten()(enc_in)
    z_mean = keras.layers.Dense(d, name="z_mean")(flat)
    z_log_var = keras.layers.Dense(d, name="z_log_var")(flat)
    encoder = keras.Model(enc_in, [z_mean, z_log_var])
    encoder.get_layer("z_mean").set_weights([enc_kernel, enc_bias])
    encoder.get_layer("z_log_var").set_weights([np.zeros((D, d), np.float32), log_var.astype(np.float32)])
    dec_in = keras.Input((d,))
    out = keras.layers.Reshape(SHAPE)(keras.layers.Dense(D, name="linear")(dec_in))
    decoder = keras.Model(dec_in, out)
    decoder.get_layer("linear").set_weights([kernel, bias])
    return VAE(encoder, decoder, likelihood="gaussian", sigma=sigma, seed=0)


def _exact(kernel, bias, sigma, x):
    """log p(x) = log N(x; b, K^T K + sigma^2 I) and the exact posterior N(m(x), S)."""
    cov = kernel.T @ kernel + sigma ** 2 * np.eye(D)
    log_px = multivariate_normal(bias, cov).logpdf(x.reshape(len(x), -1))
    post_cov = np.linalg.inv(np.eye(kernel.shape[0]) + kernel @ kernel.T / sigma ** 2)
    gain = (post_cov @ kernel / sigma ** 2).T  # (D, d): m(x) = (x - b) @ gain
    return log_px, post_cov, gain


def _data(kernel, bias, sigma, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, kernel.shape[0])) @ kernel + bias + sigma * rng.standard_normal((n, D))
    return np.clip(x, 0.0, 1.0).astype(np.float32).reshape((n,) + SHAPE)


def test_exact_posterior_makes_elbo_and_iwae_equal_log_px():
    # Orthogonal rows of K: the posterior covariance is diagonal, so q can be exact.
    kernel = np.zeros((2, D))
    kernel[0, :8], kernel[1, 8:] = 0.12, -0.08
    bias, sigma = np.full(D, 0.5), 0.1
    log_px, post_cov, gain = _exact(kernel, bias, sigma, _data(kernel, bias, sigma, 1, 0))
    assert np.allclose(post_cov, np.diag(np.diag(post_cov)))
    vae = _linear_gaussian(kernel.astype(np.float32), bias.astype(np.float32), sigma, gain.astype(np.float32),
                           (-bias @ gain).astype(np.float32), np.log(np.diag(post_cov)))
    x = _data(kernel, bias, sigma, 20, 1)
    log_px, _, _ = _exact(kernel, bias, sigma, x)
    # Every importance weight equals p(x): the bound is tight whatever k.
    np.testing.assert_allclose(vae.elbo(x, n_samples=3), log_px, atol=2e-3)
    np.testing.assert_allclose(vae.iwae_log_likelihood(x, k=50), log_px, atol=2e-3)


def test_iwae_approaches_exact_log_px_and_elbo_stays_below(monkeypatch):
    rng = np.random.default_rng(3)
    kernel = 0.1 * rng.standard_normal((2, D))  # correlated posterior: a diagonal q is never exact
    bias, sigma = np.full(D, 0.5), 0.15
    x = _data(kernel, bias, sigma, 200, 4)
    log_px, post_cov, gain = _exact(kernel, bias, sigma, x)
    # A deliberately poor q: the right mean shifted by 0.5, variances doubled.
    vae = _linear_gaussian(kernel.astype(np.float32), bias.astype(np.float32), sigma, gain.astype(np.float32),
                           (0.5 - bias @ gain).astype(np.float32), np.log(2 * np.diag(post_cov)))
    elbo_gap = log_px.mean() - vae.elbo(x, n_samples=2000).mean()
    assert elbo_gap > 1.0, "the ELBO is strictly below log p(x) when q is not the posterior"
    k1_gap = log_px.mean() - vae.iwae_log_likelihood(np.repeat(x, 20, axis=0), k=1).mean()
    assert abs(k1_gap - elbo_gap) < 0.3, f"k = 1 is the ELBO: {k1_gap} vs {elbo_gap}"
    gaps = {k: log_px.mean() - vae.iwae_log_likelihood(x, k=k, seed=k).mean() for k in (10, 100, 1000, 5000)}
    values = [elbo_gap] + list(gaps.values())[:3]
    assert all(a > b for a, b in zip(values, values[1:])), f"the gap must shrink as k grows: {gaps}"
    assert all(g > -0.02 for g in gaps.values()), f"a lower bound, up to noise: {gaps}"
    assert abs(gaps[5000]) < 0.02, f"k = 5000 must be within 0.02 nats of log p(x): {gaps}"
    # Small chunks give the same estimator (only the random draws differ).
    monkeypatch.setattr(V, "_CHUNK_IMAGES", 700)
    assert abs(log_px[:20].mean() - vae.iwae_log_likelihood(x[:20], k=5000).mean()) < 0.03


def test_bernoulli_log_likelihood_is_minus_summed_cross_entropy():
    vae = build_vae(2, "dense", hidden=(8,))
    x = binarize(np.random.default_rng(0).uniform(size=(3, 28, 28, 1)).astype(np.float32))
    logits = np.random.default_rng(1).normal(size=(3, 28, 28, 1)).astype(np.float32)
    ours = keras.ops.convert_to_numpy(vae.log_likelihood(x, logits))
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    bce = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(ours, -bce, rtol=1e-5)


def test_binarize_is_a_seeded_bernoulli_draw_of_the_grey_levels():
    grey = np.full((50, 28, 28, 1), 0.3, np.float32)
    a, b = binarize(grey, seed=1), binarize(grey, seed=1)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0.0, 1.0} and abs(a.mean() - 0.3) < 0.01
    assert not np.array_equal(a, binarize(grey, seed=2))


def test_training_metrics_sanity_and_keras_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    x = binarize(np.random.default_rng(0).uniform(size=(64, 28, 28, 1)).astype(np.float32) * 0.3)
    vae = build_vae(3, "conv", filters=(4, 8), dense_units=16, beta=2.0, binarize=True, seed=5)
    hist = vae.fit(x, epochs=2, batch_size=32, validation_data=(x,), verbose=0).history
    assert set(hist) == {"loss", "reconstruction_loss", "kl_loss",
                         "val_loss", "val_reconstruction_loss", "val_kl_loss"}
    np.testing.assert_allclose(hist["val_loss"][-1], hist["val_reconstruction_loss"][-1]
                               + 2.0 * hist["val_kl_loss"][-1], rtol=1e-5)
    elbo, ll = vae.elbo(x), vae.iwae_log_likelihood(x, k=20)
    assert np.all(ll <= 0) and elbo.mean() <= ll.mean(), "binary images: ELBO <= IWAE <= 0"
    path = tmp_path / "vae.keras"
    vae.save(path)
    again = keras.models.load_model(path)
    assert isinstance(again, VAE)
    assert (again.beta, again.binarize, again.likelihood, again.latent_dim, again.seed) == (2.0, True,
                                                                                          "bernoulli", 3, 5)
    for a, b in zip(vae.encode(x), again.encode(x)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(vae.sample(4, seed=1), again.sample(4, seed=1), atol=1e-6)
    np.testing.assert_allclose(again.iwae_log_likelihood(x, k=20), ll, atol=1e-4)
    # the optimizer came back too: its step count and Adam's moments, so that training continues
    assert int(again.optimizer.iterations) == int(vae.optimizer.iterations) == 4
    saved = {v.path: keras.ops.convert_to_numpy(v) for v in vae.optimizer.variables}
    loaded = {v.path: keras.ops.convert_to_numpy(v) for v in again.optimizer.variables}
    assert saved.keys() == loaded.keys() and len(saved) > 2
    for name, value in saved.items():
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)
    assert any(np.abs(value).max() > 0 for name, value in saved.items() if "iteration" not in name)
    again.fit(x, epochs=1, batch_size=32, verbose=0)
    assert int(again.optimizer.iterations) == 6
    assert vae.sample(5).shape == (5, 28, 28, 1) and vae.reconstruct(x[:2]).shape == (2, 28, 28, 1)


def _model(**kw):
    return build_vae(2, "dense", hidden=(8,), **kw)


@pytest.mark.parametrize("call, message", [
    (lambda: _model(likelihood="poisson"), "likelihood must be one of"),
    (lambda: _model(beta=-1.0), "beta must be a finite number >= 0"),
    (lambda: _model(sigma=0.0), "sigma must be a finite number > 0"),
    (lambda: _model(likelihood="gaussian", binarize=True), "binarize=True needs likelihood='bernoulli'"),
    (lambda: build_vae(2, "mlp"), "architecture must be one of"),
    (lambda: build_vae(0), "latent_dim must be a positive integer"),
    (lambda: VAE(keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(2)]),
                 _model().decoder), r"encoder must output \[z_mean, z_log_var\]"),
    (lambda: VAE(_model().encoder, build_vae(3, "dense", hidden=(8,)).decoder),
     r"decoder must take codes of shape \(None, 2\)"),
    (lambda: _model().encode(np.zeros((2, 28, 28), np.float32)), r"shaped \(N, height, width, 1\)"),
    (lambda: _model().encode(np.zeros((2, 32, 32, 1), np.float32)),
     r"shape \(28, 28, 1\) \(this VAE's input\); got images of shape \(32, 32, 1\)"),
    (lambda: _model().encode(np.full((2, 28, 28, 1), 255.0, np.float32)), r"must lie in \[0, 1\]"),
    (lambda: _model().iwae_log_likelihood(np.zeros((2, 28, 28, 1), np.float32), k=0), "k must be a positive"),
    (lambda: _model(binarize=True).iwae_log_likelihood(np.full((2, 28, 28, 1), 0.5, np.float32), k=2),
     "must be binary"),
    (lambda: _model().decode(np.zeros((3, 5))), r"z must be a non-empty array of shape \(N, 2\); got shape \(3, 5\)"),
    (lambda: _model().sample(0), "n must be a positive integer"),
])
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
