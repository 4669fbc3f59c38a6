"""Chapter 8's models: the diffusion model (uvbook.models.diffusion) and the masked autoencoder
(uvbook.models.masked) train, reload from ``.keras`` and name bad arguments."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from uvbook.data import load_dataset
from uvbook.models.diffusion import Diffusion, StepEmbedding, build_denoiser, linear_schedule
from uvbook.models.masked import MaskedAutoencoder, patch_mask
from uvbook.modes import set_seed


def test_the_linear_schedule_is_the_chapters():
    betas, alphas, alpha_bar = linear_schedule(500)
    assert betas.dtype == alphas.dtype == alpha_bar.dtype == np.float32
    np.testing.assert_array_equal(betas, np.linspace(1e-4, 0.04, 500, dtype=np.float32))
    np.testing.assert_array_equal(alpha_bar, np.cumprod(1.0 - betas).astype(np.float32))
    assert -10.5 < np.log(alpha_bar[-1]) < -10.0   # the chapter's "about e^-10"


def test_the_step_embedding_is_sines_then_cosines():
    emb = keras.ops.convert_to_numpy(StepEmbedding(8)(np.array([0.0, 0.5], np.float32)))
    assert emb.shape == (2, 8)
    np.testing.assert_allclose(emb[0], [0, 0, 0, 0, 1, 1, 1, 1], atol=1e-7)
    np.testing.assert_allclose(emb[1, 0], np.sin(500.0), atol=1e-4)


def diffusion_batches(n_steps, x0, rng):
    for _ in range(n_steps):
        idx = rng.integers(0, len(x0), 16)
        yield x0[idx], rng.integers(0, 500, 16), rng.standard_normal((16, 28, 28, 1)).astype(np.float32)


def test_a_tiny_diffusion_model_learns_and_reloads(tmp_path):
    x0 = load_dataset("fashion_mnist", "train", n=64)[0] * 2.0 - 1.0
    set_seed(0)
    model = Diffusion(build_denoiser(), steps=500)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_generator(
        lambda: diffusion_batches(40, x0, rng),
        output_signature=(tf.TensorSpec((16, 28, 28, 1), tf.float32), tf.TensorSpec((16,), tf.int64),
                          tf.TensorSpec((16, 28, 28, 1), tf.float32)))
    losses = model.fit(data, epochs=4, steps_per_epoch=10, verbose=0).history["loss"]
    assert losses[-1] < losses[0] < 1.5, losses
    path = tmp_path / "diffusion.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, Diffusion) and loaded.steps == 500
    np.testing.assert_array_equal(loaded.alpha_bar, model.alpha_bar)
    x_t, t = x0[:4], np.array([0, 10, 200, 499])
    np.testing.assert_array_equal(loaded.predict((x_t, t), verbose=0), model.predict((x_t, t), verbose=0))


def test_a_tiny_masked_autoencoder_learns_and_reloads(tmp_path):
    x = load_dataset("fashion_mnist", "train", n=256)[0]
    mask = patch_mask(x.shape, 0.5, np.random.default_rng(0))
    for complete in (False, True):
        set_seed(0)
        model = MaskedAutoencoder(code_dim=8, complete=complete)
        model.compile(optimizer=keras.optimizers.Adam(2e-3))
        data = tf.data.Dataset.from_tensor_slices((x * mask, mask)).shuffle(256, seed=0).batch(32)
        losses = model.fit(data, epochs=3, verbose=0).history["loss"]
        assert losses[-1] < losses[0], (complete, losses)
        path = tmp_path / f"masked_{complete}.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        assert isinstance(loaded, MaskedAutoencoder) and loaded.complete == complete and loaded.code_dim == 8
        filled = model.predict((x[:5] * mask[:5], mask[:5]), verbose=0)
        assert filled.shape == (5, 28, 28, 1)
        np.testing.assert_array_equal(loaded.predict((x[:5] * mask[:5], mask[:5]), verbose=0), filled)


def test_the_patch_mask_hides_whole_patches_at_the_given_rate():
    mask = patch_mask((200, 28, 28, 1), 0.5, np.random.default_rng(0))
    assert mask.shape == (200, 28, 28, 1) and set(np.unique(mask)) == {0.0, 1.0}
    blocks = mask[..., 0].reshape(200, 7, 4, 7, 4)
    assert (blocks.min(axis=(2, 4)) == blocks.max(axis=(2, 4))).all()   # constant on every 4x4 patch
    assert 0.45 < mask.mean() < 0.55


@pytest.mark.parametrize("call, message", [
    (lambda: linear_schedule(0), "steps must be a positive integer; got 0"),
    (lambda: linear_schedule(500, beta_1=0.0), "beta_1 must be in (0, 1); got 0.0"),
    (lambda: linear_schedule(500, beta_T=1.5), "beta_T must be in (0, 1); got 1.5"),
    (lambda: StepEmbedding(0), "dim must be a positive integer; got 0"),
    (lambda: Diffusion(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])),
     "denoiser must be a keras.Model with two inputs (x_t, t / T); got Sequential with 1 inputs"),
    (lambda: Diffusion(build_denoiser(), steps=-1), "steps must be a positive integer; got -1"),
    (lambda: patch_mask((2, 28, 28, 1), 1.5, np.random.default_rng(0)), "missing must be in [0, 1]; got 1.5"),
    (lambda: patch_mask((2, 30, 28, 1), 0.5, np.random.default_rng(0)),
     "shape must be (n, height, width, 1) with height and width multiples of patch=4; got (2, 30, 28, 1)"),
    (lambda: MaskedAutoencoder(code_dim=0), "code_dim must be a positive integer; got 0"),
    (lambda: MaskedAutoencoder(hide=1.0), "hide must be in (0, 1); got 1.0"),
    (lambda: MaskedAutoencoder(missing=0.0), "missing must be in (0, 1); got 0.0"),
])
def test_chapter_8_models_name_a_bad_argument(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
