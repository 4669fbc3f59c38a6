"""uvbook.layers builders and the Sampling layer; uvbook.train's cache."""

import json

import keras
import numpy as np
import pytest

from uvbook import layers as L
from uvbook import train


@pytest.mark.parametrize("build, out", [
    (lambda: L.build_dense_encoder(8, hidden=(32, 16)), (None, 8)),
    (lambda: L.build_conv_encoder(4, filters=(8, 16), dense_units=None), (None, 4)),
    (lambda: L.build_dense_decoder(8, hidden=(16, 32)), (None, 28, 28, 1)),
    (lambda: L.build_conv_decoder(8, filters=(16, 8), batchnorm=True, output_activation="tanh"), (None, 28, 28, 1)),
])
def test_builders_give_the_documented_shapes(build, out):
    assert tuple(build().output.shape) == out


def test_encoder_heads_and_decoder_range():
    enc = L.build_conv_encoder(3, filters=(8, 8), heads=("z_mean", "z_log_var"))
    mean, log_var = enc(np.zeros((2, 28, 28, 1), np.float32))
    assert mean.shape == (2, 3) and log_var.shape == (2, 3)
    dec = L.build_dense_decoder(3, hidden=(8,), output_activation="sigmoid")
    pixels = keras.ops.convert_to_numpy(dec(np.random.normal(size=(5, 3)).astype(np.float32) * 10))
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0


def test_sampling_has_the_requested_moments_and_is_seeded():
    n = 20000
    mean = np.full((n, 2), [1.0, -2.0], np.float32)
    log_var = np.full((n, 2), np.log([0.25, 4.0]), np.float32)
    z = keras.ops.convert_to_numpy(L.Sampling(seed=1)([mean, log_var]))
    np.testing.assert_allclose(z.mean(0), [1.0, -2.0], atol=0.05)
    np.testing.assert_allclose(z.std(0), [0.5, 2.0], rtol=0.03)
    again = keras.ops.convert_to_numpy(L.Sampling(seed=1)([mean, log_var]))
    np.testing.assert_array_equal(z, again)
    assert L.Sampling.from_config(L.Sampling(seed=3).get_config()).seed == 3


@pytest.mark.parametrize("call, message", [
    (lambda: L.build_dense_encoder(0), "code_dim must be a positive integer"),
    (lambda: L.build_dense_encoder(2, hidden=()), "at least one layer size"),
    (lambda: L.build_conv_encoder(2, heads=("a", "a")), "distinct names"),
    (lambda: L.build_conv_encoder(2, dropout=1.5), r"dropout must be in \[0, 1\)"),
    (lambda: L.build_conv_decoder(2, filters=(8,)), "at least 2 entries"),
    (lambda: L.build_dense_decoder(2, output_activation="softmax"), "output_activation must be one of"),
    (lambda: train.cache_key({}), "non-empty mapping"),
])
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_train_or_load_trains_once_then_loads(tmp_path, tiny_job):
    build, fit, calls = tiny_job
    model, hist = train.train_or_load("tiny", build, fit, {"units": 1}, folder=tmp_path)
    again, hist2 = train.train_or_load("tiny", build, fit, {"units": 1}, folder=tmp_path)
    assert calls == ["build"] and len(hist["loss"]) == 2 and hist2 == hist
    x = np.random.rand(4, 3).astype(np.float32)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0))
    train.train_or_load("tiny", build, fit, {"units": 1, "epochs": 3}, folder=tmp_path)
    assert calls == ["build", "build"], "a changed key must retrain"
    assert not list(tmp_path.glob(".*")), "no temporary files are left behind"


def test_a_corrupt_cache_entry_is_retrained(tmp_path, tiny_job):
    build, fit, calls = tiny_job
    train.train_or_load("tiny", build, fit, {"k": 1}, folder=tmp_path)
    (path,) = tmp_path.glob("tiny-*.keras")
    path.write_bytes(path.read_bytes()[:100])  # truncated
    train.train_or_load("tiny", build, fit, {"k": 1}, folder=tmp_path)
    assert calls == ["build", "build"]
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["sha256"] == train.sha256(path)


def test_unwritable_cache_dir_is_an_os_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("UVBOOK_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(OSError, match="cannot be created"):
        train.cache_dir()


def test_weights_digest_follows_the_weights_and_survives_save_and_load(tmp_path):
    from uvbook.train import weights_digest

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    digest = weights_digest(model)
    assert len(digest) == 16 and digest == weights_digest(model)
    model.save(tmp_path / "m.keras")
    assert weights_digest(keras.models.load_model(tmp_path / "m.keras")) == digest
    kernel = model.layers[0].kernel
    kernel.assign(kernel.numpy() + 1e-6)
    assert weights_digest(model) != digest
    with pytest.raises(ValueError, match="model must be a built keras.Model; got str"):
        weights_digest("model")
