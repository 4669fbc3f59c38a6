"""uvbook.represent: every representation's shape, determinism and wiring, on small untrained models."""

import keras
import numpy as np
import pytest

from uvbook import represent
from uvbook.models.autoencoder import Autoencoder, DenoisingAutoencoder
from uvbook.models.classifier import build_cnn_classifier
from uvbook.models.contrastive import build_simclr
from uvbook.models.scan import SCAN, build_scan_head
from uvbook.models.vae import build_vae
from uvbook.recipes import build_fashion_dcgan


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, size=(12, 28, 28, 1)).astype(np.float32)


def test_the_table_of_representations():
    assert list(represent.REPRESENTATIONS) == ["pixels", "pca32", "conv_ae", "denoising_ae", "vae",
                                               "dcgan", "simclr", "scan", "cnn"]
    assert represent.UNSUPERVISED == tuple(list(represent.REPRESENTATIONS)[:-1])
    assert represent.REPRESENTATIONS["cnn"].supervised
    assert represent.REPRESENTATIONS["dcgan"].dim == 7 * 7 * 128


def test_pixels_are_the_flattened_images(images):
    z = represent.features("pixels", images)
    assert z.shape == (12, 784) and z.dtype == np.float32
    np.testing.assert_array_equal(z[3], images[3].ravel())


def test_pca_projection_by_hand():
    rng = np.random.default_rng(1)
    # 200 images varying along two pixel directions only: two components explain everything
    base = rng.normal(size=(200, 2)) * [0.2, 0.05]
    x = np.full((200, 784), 0.5)
    x[:, 0] += base[:, 0]
    x[:, 1] += base[:, 1]
    x = np.clip(x, 0, 1).astype(np.float32).reshape(200, 28, 28, 1)
    pca = represent.PCAProjection(x, n_components=2)
    assert pca.explained_variance_ratio == pytest.approx(1.0, abs=1e-5) and pca.n_train == 200
    z = represent.features("pca32", x, model=pca)
    assert z.shape == (200, 2)
    # the projection preserves distances within the 2-D subspace the data live in
    d_pix = np.linalg.norm(x[0].ravel() - x[1].ravel())
    assert np.linalg.norm(z[0] - z[1]) == pytest.approx(d_pix, rel=1e-4)
    with pytest.raises(ValueError, match="n_components must be at most"):
        represent.PCAProjection(x[:5], n_components=10)


@pytest.mark.parametrize("cls", [Autoencoder, DenoisingAutoencoder])
def test_autoencoder_codes(images, cls):
    keras.utils.set_random_seed(0)
    ae = cls.conv(4, filters=(4, 8), dense_units=16)
    name = "conv_ae" if cls is Autoencoder else "denoising_ae"
    z = represent.features(name, images, model=ae, batch_size=5)
    assert z.shape == (12, 4) and z.dtype == np.float32 and np.all(np.isfinite(z))
    np.testing.assert_allclose(z, ae.encode(images), rtol=1e-5, atol=1e-6)
    # no training-time noise: the denoising model's code is deterministic
    np.testing.assert_array_equal(z, represent.features(name, images, model=ae, batch_size=5))


def test_vae_gives_the_posterior_mean(images):
    vae = build_vae(3, "conv", filters=(4, 8), dense_units=16, binarize=True, seed=0)
    z = represent.features("vae", images, model=vae)
    assert z.shape == (12, 3)
    np.testing.assert_allclose(z, vae.encode(images)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(z, represent.features("vae", images, model=vae))   # a mean, not a sample


def test_dcgan_uses_the_discriminators_flatten_layer_on_scaled_images(images):
    keras.utils.set_random_seed(0)
    gan = build_fashion_dcgan(latent_dim=4, g_filters=(4, 4), d_filters=(4, 8))
    z = represent.features("dcgan", images, model=gan, batch_size=5)
    assert z.shape == (12, 7 * 7 * 8)
    flat = keras.Model(gan.discriminator.inputs[0], gan.discriminator.get_layer("flatten").output)
    expected = keras.ops.convert_to_numpy(flat(images * 2.0 - 1.0))   # tanh GAN: images in [-1, 1]
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-5)


def test_simclr_and_cnn_features(images):
    keras.utils.set_random_seed(0)
    simclr = build_simclr(filters=(4, 8), head_hidden=8, projection_dim=4)
    z = represent.features("simclr", images, model=simclr)
    assert z.shape == (12, 7 * 7 * 8) and np.all(z >= 0)              # flattened ReLU conv features
    np.testing.assert_allclose(z, simclr.encode(images), rtol=1e-5, atol=1e-6)
    cnn = build_cnn_classifier(num_classes=10)
    f = represent.features("cnn", images, model=cnn)
    assert f.shape == (12, 128) and np.all(np.isfinite(f))


def test_scan_features_are_the_heads_hidden_layer_on_the_encoders_features(images):
    keras.utils.set_random_seed(0)
    simclr = build_simclr(filters=(4, 8), head_hidden=8, projection_dim=4)
    h = simclr.encode(images)
    head = SCAN(build_scan_head(h, n_clusters=3, hidden=6, n_components=5))
    z = represent.features("scan", images, model=(simclr, head))
    assert z.shape == (12, 6) and np.all(z >= 0)                      # the ReLU hidden layer
    np.testing.assert_allclose(z, head.embed(h), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"model for 'scan' must be the pair \(SimCLR, SCAN\); got SimCLR"):
        represent.features("scan", images, model=simclr)
    with pytest.raises(ValueError, match=r"must be the pair \(SimCLR, SCAN\); got tuple"):
        represent.features("scan", images, model=(head, simclr))


def test_bad_arguments_raise(images):
    with pytest.raises(ValueError, match="name must be one of"):
        represent.features("resnet", images)
    with pytest.raises(ValueError, match="name must be one of"):
        represent.load_model("resnet")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        represent.features("pixels", images * 255)
    with pytest.raises(ValueError, match=r"images shaped \(N, 28, 28, 1\); got an array of shape \(\d+, 28, 28\)"):
        represent.features("pixels", images[..., 0])
    with pytest.raises(ValueError, match=r"images shaped \(N, 28, 28, 1\); got an array of shape \(2, 32, 32, 1\)"):
        represent.features("pixels", np.zeros((2, 32, 32, 1), np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        represent.features("pixels", images, batch_size=0)


def test_models_are_loaded_once_per_mode(monkeypatch):
    calls = []
    monkeypatch.setattr(represent, "_loaders", lambda: {"conv_ae": lambda verbose: calls.append(1) or "model"})
    monkeypatch.setattr(represent, "_MODELS", {})
    monkeypatch.setenv("UVBOOK_QUICK", "1")
    assert represent.load_model("conv_ae") == "model" and represent.load_model("conv_ae") == "model"
    assert len(calls) == 1
    monkeypatch.setenv("UVBOOK_QUICK", "0")
    represent.load_model("conv_ae")
    assert len(calls) == 2
