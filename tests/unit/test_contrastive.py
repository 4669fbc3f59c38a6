"""The SimCLR-style contrastive model of Chapter 6: augmentations, NT-Xent, training, saving."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from uvbook.callbacks import NeighbourMonitor
from uvbook.models.contrastive import SimCLR, augment, build_projection_head, build_simclr, nt_xent_loss


def nt_xent_reference(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
    """NT-Xent written out with loops, in float64, from the definition in Chen et al. (2020)."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n2, n = len(z), len(z) // 2
    total = 0.0
    for a in range(n2):
        p = (a + n) % n2
        sims = np.array([z[a] @ z[b] / tau for b in range(n2) if b != a])
        total += -(z[a] @ z[p] / tau) + np.log(np.sum(np.exp(sims)))
    return total / n2


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = np.zeros((16, 28, 28, 1), dtype=np.float32)
    for i in range(16):                       # bright rectangles of different sizes and places
        r, c, h, w = rng.integers(2, 10, size=4)
        x[i, r:r + h + 6, c:c + w + 6, 0] = rng.uniform(0.5, 1.0)
    return x


def test_nt_xent_matches_the_definition():
    rng = np.random.default_rng(1)
    z1, z2 = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=(6, 5)).astype(np.float32)
    for tau in (0.1, 0.5, 1.0):
        got = float(keras.ops.convert_to_numpy(nt_xent_loss(z1, z2, tau)))
        assert got == pytest.approx(nt_xent_reference(z1, z2, tau), rel=1e-4)


def test_nt_xent_rewards_agreeing_views():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(32, 16)).astype(np.float32)
    same, acc_same = nt_xent_loss(z, z + 0.01 * rng.normal(size=z.shape).astype(np.float32), 0.1,
                                  return_accuracy=True)
    shuffled, acc_shuffled = nt_xent_loss(z, z[rng.permutation(32)], 0.1, return_accuracy=True)
    assert float(same) < float(shuffled)
    assert float(acc_same) == 1.0 and float(acc_shuffled) < 0.5
    # Scale invariance: only directions count (the projections are normalised).
    assert float(nt_xent_loss(3 * z, z, 0.5)) == pytest.approx(float(nt_xent_loss(z, z, 0.5)), rel=1e-5)


def test_nt_xent_random_projections_are_near_log_of_negatives():
    # With unrelated views the positive is one of 2N - 1 candidates of similar similarity.
    rng = np.random.default_rng(3)
    z1, z2 = rng.normal(size=(256, 128)), rng.normal(size=(256, 128))
    loss = float(nt_xent_loss(z1.astype(np.float32), z2.astype(np.float32), 1.0))
    assert loss == pytest.approx(np.log(511), abs=0.1)


def test_nt_xent_rejects_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32), 0.0)


def test_augment_shapes_range_and_randomness(images):
    gen = keras.random.SeedGenerator(0)
    a = keras.ops.convert_to_numpy(augment(images, gen))
    b = keras.ops.convert_to_numpy(augment(images, gen))
    assert a.shape == images.shape and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert not np.allclose(a, b), "two calls with one generator must draw different views"
    same1 = keras.ops.convert_to_numpy(augment(images, 7))
    same2 = keras.ops.convert_to_numpy(augment(images, 7))
    np.testing.assert_allclose(same1, same2)


def test_augment_identity_when_switched_off(images):
    out = keras.ops.convert_to_numpy(augment(images, 0, crop_scale=(1.0, 1.0), flip=False, jitter=0.0))
    # A full-image box with aspect ratio near 1 is almost the identity (bilinear resampling).
    assert np.abs(out - images).mean() < 0.05


@pytest.mark.parametrize("kwargs, match", [
    ({"crop_scale": (0.0, 1.0)}, "crop_scale"),
    ({"crop_scale": (0.8, 0.5)}, "crop_scale"),
    ({"jitter": 1.5}, "jitter"),
])
def test_augment_rejects_bad_arguments(images, kwargs, match):
    with pytest.raises(ValueError, match=match):
        augment(images, 0, **kwargs)


def test_augment_rejects_rgb():
    with pytest.raises(ValueError, match=r"\(N, height, width, 1\)"):
        augment(np.zeros((2, 28, 28, 3), np.float32), 0)


def test_model_trains_and_encodes(images):
    keras.utils.set_random_seed(0)
    model = build_simclr(filters=(8, 16), head_hidden=(32, 16), projection_dim=8, head_batchnorm=False,
                         temperature=0.5, seed=0)
    history = model.fit(np.repeat(images, 4, axis=0), batch_size=32, epochs=3, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}
    assert all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]
    features = model.encode(images)
    assert features.shape == (16, 7 * 7 * 16) and features.dtype == np.float32
    assert np.all(features >= 0)                    # ReLU conv features, flattened
    np.testing.assert_allclose(features, keras.ops.convert_to_numpy(model(images)), rtol=1e-5, atol=1e-6)


def test_keras_round_trip(images, tmp_path):
    keras.utils.set_random_seed(0)
    model = build_simclr(filters=(8, 16), head_hidden=16, projection_dim=8, temperature=0.3, jitter=0.3,
                         crop_scale=(0.3, 1.0), total_steps=4, seed=3)
    model.fit(images, batch_size=8, epochs=1, verbose=0)
    path = tmp_path / "simclr.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, SimCLR)
    assert (loaded.temperature, loaded.jitter, loaded.seed, loaded.crop_scale) == (0.3, 0.3, 3, (0.3, 1.0))
    np.testing.assert_allclose(loaded.encode(images), model.encode(images), rtol=1e-5, atol=1e-6)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 2   # the step count came back
    moments = [v for v in model.optimizer.variables if "momentum" in v.path or "velocity" in v.path]
    assert moments and any(float(np.abs(keras.ops.convert_to_numpy(v)).max()) > 0 for v in moments)
    for ours, theirs in zip(model.optimizer.variables, loaded.optimizer.variables):   # Adam's moments too
        np.testing.assert_allclose(keras.ops.convert_to_numpy(theirs), keras.ops.convert_to_numpy(ours))
    loaded.fit(images, batch_size=8, epochs=1, verbose=0)
    assert int(loaded.optimizer.iterations) == 4


def test_constructor_and_encode_validate():
    enc = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(8)])
    with pytest.raises(ValueError, match="projection_head must take"):
        SimCLR(enc, build_projection_head(4))
    with pytest.raises(ValueError, match="temperature"):
        SimCLR(enc, build_projection_head(8), temperature=0.0)
    model = SimCLR(enc, build_projection_head(8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.encode(np.full((2, 28, 28, 1), 2.0, np.float32))
    with pytest.raises(ValueError, match="shape"):
        model.encode(np.zeros((2, 32, 32, 1), np.float32))


def test_neighbour_monitor_writes_knn_accuracy_and_elapsed_time(images):
    keras.utils.set_random_seed(0)
    model = build_simclr(filters=(4, 8), head_hidden=8, projection_dim=4, seed=0)
    labels = np.arange(len(images)) % 2
    monitor = NeighbourMonitor(images, labels, k=3, every=2)
    history = model.fit(images, batch_size=8, epochs=3, verbose=0, callbacks=[monitor]).history
    acc = history["knn_accuracy"]
    assert np.isnan(acc[0]) and 0.0 <= acc[1] <= 1.0 and 0.0 <= acc[2] <= 1.0   # epochs 2 and 3 (the last)
    assert acc[2] == monitor.accuracy()                                        # the weights did not move since
    assert 0 < history["elapsed"][0] < history["elapsed"][1] < history["elapsed"][2]
    with pytest.raises(ValueError, match="smaller than the number of monitored images"):
        NeighbourMonitor(images, labels, k=len(images))
    with pytest.raises(ValueError, match="one label per image"):
        NeighbourMonitor(images, labels[:-1])
