"""uvbook.models.autoencoder: shapes, losses with known values, corruption, saving, input checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from uvbook.models.autoencoder import Autoencoder, DenoisingAutoencoder, SparseAutoencoder, corrupt
from uvbook.validate import check_images

RNG = np.random.default_rng(0)
X = RNG.random((16, 28, 28, 1)).astype(np.float32)


def _np(t):
    return keras.ops.convert_to_numpy(t)


def _identity_ae(cls=Autoencoder, **kwargs):
    """A linear autoencoder whose code is the 784 pixels themselves: x_hat = (what the encoder saw)."""
    model = cls.linear(784, **kwargs)
    eye = np.eye(784, dtype=np.float32)
    model.encoder.get_layer("code").set_weights([eye, np.zeros(784, np.float32)])
    model.decoder.get_layer("dense_out").set_weights([eye, np.zeros(784, np.float32)])
    return model


@pytest.mark.parametrize("build, code_dim", [
    (lambda: Autoencoder.dense(8, hidden=(64, 32)), 8),
    (lambda: Autoencoder.conv(4, filters=(8, 16), dense_units=32), 4),
    (lambda: Autoencoder.linear(3), 3),
    (lambda: DenoisingAutoencoder.conv(5, filters=(8, 8), dense_units=None), 5),
    (lambda: SparseAutoencoder.dense(6, hidden=(16,)), 6),
])
def test_shapes_of_code_and_reconstruction(build, code_dim):
    model = build()
    assert model.code_dim == code_dim and model.image_shape == (28, 28, 1)
    assert model.encode(X[:3]).shape == (3, code_dim)
    assert model.reconstruct(X[:3]).shape == (3, 28, 28, 1)
    assert model.decode(np.zeros((2, code_dim), np.float32)).shape == (2, 28, 28, 1)
    assert _np(model(X[:2])).shape == (2, 28, 28, 1)


def test_article_network_has_the_articles_layer_sizes():
    model = Autoencoder.dense(8, hidden=(64, 32), code_activation="relu")
    enc = [layer.units for layer in model.encoder.layers if hasattr(layer, "units")]
    dec = [layer.units for layer in model.decoder.layers if hasattr(layer, "units")]
    assert enc == [64, 32, 8] and dec == [32, 64, 784]


def test_fit_reports_the_metrics_and_learns():
    keras.utils.set_random_seed(0)
    x = np.repeat(X[:4], 16, axis=0)
    model = Autoencoder.dense(4, hidden=(32,))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = model.evaluate(x, verbose=0, return_dict=True)
    hist = model.fit(x, epochs=15, batch_size=16, verbose=0, validation_data=x[:8])
    assert set(hist.history) == {"loss", "mse", "val_loss", "val_mse"}
    assert hist.history["mse"][-1] < 0.5 * before["mse"], "4 distinct images must be learnt quickly"
    # the "mse" metric is the reconstruction error per pixel, the same as evaluate's measure
    after = model.evaluate(x, verbose=0, return_dict=True)
    recon = model.reconstruct(x)
    assert after["mse"] == pytest.approx(float(np.mean((recon - x) ** 2)), rel=1e-4)


def test_fit_accepts_a_tf_data_pipeline():
    model = Autoencoder.dense(2, hidden=(8,))
    model.compile(optimizer="adam")
    ds = tf.data.Dataset.from_tensor_slices(X).batch(8)
    assert len(model.fit(ds, epochs=1, verbose=0).history["loss"]) == 1


def test_bce_loss_has_its_known_value():
    model = Autoencoder.dense(2, hidden=(8,), loss="bce")
    x = np.full((1, 28, 28, 1), 0.5, np.float32)
    # a decoder whose output is sigmoid(0) = 0.5 everywhere: BCE = log 2 for targets 0.5
    for w in model.decoder.get_layer("dense_out").weights:
        w.assign(np.zeros(w.shape, np.float32))
    loss = model.reconstruction_loss(x, model.reconstruct(x))
    assert float(loss) == pytest.approx(np.log(2.0), rel=1e-5)
    with pytest.raises(ValueError, match="loss='bce' needs pixel_range"):
        Autoencoder.linear(2, loss="bce")


def test_denoising_corrupts_only_while_training_and_targets_the_clean_image():
    keras.utils.set_random_seed(1)
    model = _identity_ae(DenoisingAutoencoder, noise="masking", noise_level=0.3, seed=1)
    ones = np.ones((8, 28, 28, 1), np.float32)
    np.testing.assert_allclose(_np(model(ones, training=False)), ones, atol=1e-6)
    seen = _np(model(ones, training=True))
    assert 0.25 < 1.0 - seen.mean() < 0.35, "about 30 % of the pixels are masked in training"
    # the loss compares the reconstruction of the corrupted input with the clean input:
    # with an identity network it is the masked fraction in training and 0 in evaluation
    train_loss, train_mse, _ = model._compute_losses(ones, training=True)
    test_loss, _, _ = model._compute_losses(ones, training=False)
    assert 0.25 < float(train_loss) < 0.35 and float(train_mse) == pytest.approx(float(train_loss))
    assert float(test_loss) == pytest.approx(0.0, abs=1e-10)
    model.compile(optimizer="sgd")
    assert model.evaluate(ones, verbose=0, return_dict=True)["loss"] == pytest.approx(0.0, abs=1e-10)
    np.testing.assert_allclose(model.reconstruct(ones), ones, atol=1e-6)


@pytest.mark.parametrize("noise", ["gaussian", "masking", "salt_pepper"])
def test_training_noise_stays_in_range_and_changes_the_input(noise):
    model = DenoisingAutoencoder.dense(2, hidden=(8,), noise=noise, noise_level=0.2, seed=0)
    noisy = _np(model.corrupt_inputs(keras.ops.convert_to_tensor(X), training=True))
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    changed = np.mean(noisy != X)
    assert changed > 0.15, f"{noise} noise must change many pixels; changed {changed:.2f}"
    np.testing.assert_array_equal(_np(model.corrupt_inputs(X, training=False)), X)


@pytest.mark.parametrize("noise, level", [("gaussian", 0.1), ("masking", 0.25), ("salt_pepper", 0.1)])
def test_numpy_corrupt_is_deterministic_and_has_the_stated_strength(noise, level):
    x = np.full((200, 28, 28, 1), 0.5, np.float32)
    a, b = corrupt(x, noise, level, seed=3), corrupt(x, noise, level, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.min() >= 0.0 and a.max() <= 1.0
    if noise == "gaussian":  # 0.5 +- 0.1 is (almost) never clipped: the std is 0.1
        assert np.std(a - x) == pytest.approx(0.1, rel=0.02)
    elif noise == "masking":
        assert np.mean(a == 0.0) == pytest.approx(0.25, abs=0.01)
    else:
        assert np.mean(a == 0.0) == pytest.approx(0.05, abs=0.01)
        assert np.mean(a == 1.0) == pytest.approx(0.05, abs=0.01)


def test_sparsity_penalties_have_their_known_values():
    l1 = SparseAutoencoder.dense(3, hidden=(8,), penalty="l1", weight=0.5)
    z = np.array([[1.0, -2.0, 0.0], [0.0, 0.0, 3.0]], np.float32)
    assert float(l1.code_penalty(z)) == pytest.approx(0.5 * (3.0 + 3.0) / 2)
    kl = SparseAutoencoder.dense(2, hidden=(8,), penalty="kl", weight=2.0, target=0.1,
                                 code_activation="sigmoid")
    at_target = np.full((4, 2), 0.1, np.float32)
    assert float(kl.code_penalty(at_target)) == pytest.approx(0.0, abs=1e-6)
    z = np.array([[0.2, 0.5], [0.4, 0.5]], np.float32)  # unit means 0.3 and 0.5
    def kl_(rho, q):
        return rho * np.log(rho / q) + (1 - rho) * np.log((1 - rho) / (1 - q))
    assert float(kl.code_penalty(z)) == pytest.approx(2.0 * (kl_(0.1, 0.3) + kl_(0.1, 0.5)), rel=1e-5)
    kl.compile(optimizer="adam")
    hist = kl.fit(X, epochs=1, batch_size=8, verbose=0)
    assert set(hist.history) == {"loss", "mse", "sparsity"}


def test_l1_penalty_makes_the_code_sparser():
    keras.utils.set_random_seed(0)
    x = X[:8]
    codes = {}
    for weight in (0.0, 0.05):
        keras.utils.set_random_seed(0)
        model = SparseAutoencoder.dense(32, hidden=(64,), code_activation="relu", weight=weight)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        model.fit(np.repeat(x, 8, axis=0), epochs=20, batch_size=16, verbose=0)
        codes[weight] = model.encode(x)
    assert np.mean(np.abs(codes[0.05])) < 0.5 * np.mean(np.abs(codes[0.0]))


@pytest.mark.parametrize("build", [
    lambda: Autoencoder.conv(3, filters=(4, 8), dense_units=16),
    lambda: Autoencoder.linear(3),
    lambda: DenoisingAutoencoder.dense(3, hidden=(8,), noise="salt_pepper", noise_level=0.1, seed=4),
    lambda: SparseAutoencoder.dense(3, hidden=(8,), penalty="kl", weight=0.1, target=0.2,
                                    code_activation="sigmoid"),
])
def test_keras_file_round_trip_reproduces_outputs_and_settings(build, tmp_path):
    model = build()
    model.compile(optimizer="adam")
    model.fit(X, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    np.testing.assert_allclose(loaded.reconstruct(X), model.reconstruct(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.encode(X), model.encode(X), rtol=1e-5, atol=1e-6)
    skip = {"encoder", "decoder"}
    mine = {k: v for k, v in model.get_config().items() if k not in skip}
    theirs = {k: v for k, v in loaded.get_config().items() if k not in skip}
    assert mine == theirs
    # the reloaded model goes on training
    loaded.fit(X, epochs=1, batch_size=8, verbose=0)


def test_linear_model_accepts_any_real_pixels_but_others_do_not():
    x = X * 4.0 - 2.0
    assert Autoencoder.linear(2).reconstruct(x).shape == x.shape
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*got values from -1.9"):
        Autoencoder.dense(2, hidden=(8,)).reconstruct(x)


BAD_INPUTS = [
    (np.zeros((2, 28, 28), np.float32), r"shaped \(N, 28, 28, 1\); got an array of shape \(2, 28, 28\)"),
    (np.zeros((2, 32, 32, 3), np.float32), r"shaped \(N, 28, 28, 1\)"),
    ((X * 255).astype(np.uint8), r"floating-point pixels in \[0, 1\] \(divide uint8 pixels by 255\); got dtype uint8"),
    (X + 1.0, r"must lie in \[0, 1\]"),
    (np.full((1, 28, 28, 1), np.nan, np.float32), "must be finite"),
    (np.zeros((0, 28, 28, 1), np.float32), "at least one image"),
    ("images", r"shaped \(N, 28, 28, 1\)"),
]


@pytest.mark.parametrize("bad, message", BAD_INPUTS)
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict", "encode", "reconstruct"])
def test_bad_images_raise_a_value_error_naming_what_was_expected(bad, message, method):
    model = Autoencoder.dense(2, hidden=(8,))
    model.compile(optimizer="adam")
    kwargs = {"verbose": 0} if method in ("fit", "evaluate") else {}
    with pytest.raises(ValueError, match=message):
        getattr(model, method)(bad, **kwargs)


def test_other_bad_inputs_raise_value_errors():
    model = Autoencoder.dense(2, hidden=(8,))
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="targets are its inputs"):
        model.fit(X, X[::-1], verbose=0)
    with pytest.raises(ValueError, match="validation_data must lie in"):
        model.fit(X, validation_data=X + 2.0, verbose=0)
    wrong = tf.data.Dataset.from_tensor_slices(np.zeros((4, 28, 28), np.float32)).batch(2)
    with pytest.raises(ValueError, match=r"batches of images shaped \(batch, 28, 28, 1\)"):
        model.fit(wrong, verbose=0)
    ints = tf.data.Dataset.from_tensor_slices(np.zeros((4, 28, 28, 1), np.int32)).batch(2)
    with pytest.raises(ValueError, match="floating-point pixels"):
        model.fit(ints, verbose=0)
    with pytest.raises(ValueError, match=r"expects images shaped \(N, 28, 28, 1\)"):
        model(np.zeros((1, 28, 28, 3), np.float32))
    with pytest.raises(ValueError, match=r"float codes shaped \(N, 2\)"):
        model.decode(np.zeros((1, 3), np.float32))
    # fit(x, x), the habit from supervised Keras, is accepted
    model.fit(X, X, epochs=1, verbose=0)


@pytest.mark.parametrize("call, message", [
    (lambda: Autoencoder.dense(2, loss="mae"), "loss must be one of"),
    (lambda: Autoencoder.dense(2, pixel_range=(1, 0)), "low < high"),
    (lambda: Autoencoder(Autoencoder.dense(2).encoder, Autoencoder.dense(3).decoder),
     r"decoder must take the encoder's code of shape \(2,\)"),
    (lambda: Autoencoder("enc", "dec"), "must be keras.Model"),
    (lambda: DenoisingAutoencoder.dense(2, noise="blur"), "noise must be one of"),
    (lambda: DenoisingAutoencoder.dense(2, noise="masking", noise_level=1.5), r"noise_level must be in \(0, 1\]"),
    (lambda: DenoisingAutoencoder.dense(2, noise_level=0.0), "noise_level must be in"),
    (lambda: SparseAutoencoder.dense(2, penalty="l2"), "penalty must be one of"),
    (lambda: SparseAutoencoder.dense(2, penalty="kl"), "code_activation='sigmoid'"),
    (lambda: SparseAutoencoder.dense(2, weight=-1.0), "weight must be in"),
    (lambda: SparseAutoencoder.dense(2, penalty="kl", target=1.0, code_activation="sigmoid"), "target must be in"),
    (lambda: corrupt(X, "blur"), "noise must be one of"),
    (lambda: corrupt((X * 255).astype(np.uint8)), "floating-point"),
    (lambda: check_images(X, "x", shape=(28, 28, 1), pixel_range=(0.0, 0.5)), r"x must lie in \[0, 0.5\]"),
])
def test_bad_settings_raise_a_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
