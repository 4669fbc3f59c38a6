"""SCAN (Chapter 6): its loss on cases whose value is known, clusters found on separable data,
saving and loading, and refusals of bad input."""

import math

import keras
import numpy as np
import pytest

from uvbook.callbacks import ClusterMonitor
from uvbook.evaluate import cluster_accuracy
from uvbook.models.scan import SCAN, build_scan_head, mine_neighbours, neighbour_pairs, scan_loss


def test_loss_of_uniform_predictions_is_log_k_minus_weight_log_k():
    p = np.full((6, 4), 0.25, dtype=np.float32)
    loss, consistency, entropy = (float(v) for v in scan_loss(p, p, entropy_weight=2.0))
    assert consistency == pytest.approx(math.log(4), abs=1e-5)    # -log(4 * 1/16)
    assert entropy == pytest.approx(math.log(4), abs=1e-5)        # the mean is uniform
    assert loss == pytest.approx(math.log(4) - 2 * math.log(4), abs=1e-5)


def test_confident_agreeing_pairs_spread_over_clusters_cost_nothing_but_the_entropy_bonus():
    p = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    loss, consistency, entropy = (float(v) for v in scan_loss(p, p, entropy_weight=5.0))
    assert consistency == pytest.approx(0.0, abs=1e-5)
    assert entropy == pytest.approx(math.log(3), abs=1e-5)
    # disagreeing pairs: <p_a, p_n> = 0 for every pair, so the consistency is -log(eps), huge
    _, clash, _ = scan_loss(p, np.roll(p, 1, axis=1))
    assert float(clash) > 15


def blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 16)) * 4
    y = np.repeat(np.arange(3), n // 3)
    return (centres[y] + rng.normal(size=(len(y), 16))).astype(np.float32), y


def test_neighbours_exclude_the_row_itself_and_share_its_blob():
    x, y = blobs()
    head = build_scan_head(x, n_clusters=3, hidden=8, n_components=8)
    nbrs = mine_neighbours(head, x, k=5)
    assert nbrs.shape == (300, 5)
    assert not np.any(nbrs == np.arange(300)[:, None])
    assert np.mean(y[nbrs] == y[:, None]) > 0.99


def test_scan_finds_three_separable_blobs():
    keras.utils.set_random_seed(0)
    x, y = blobs()
    head = build_scan_head(x, n_clusters=3, hidden=16, n_components=8)
    model = SCAN(head, entropy_weight=5.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    monitor = ClusterMonitor(x[::2], y[::2])                 # every other point, watched each epoch
    history = model.fit(neighbour_pairs(x, mine_neighbours(head, x, k=5), batch_size=60, seed=0),
                        epochs=10, steps_per_epoch=5, verbose=0, callbacks=[monitor]).history
    assert history["loss"][-1] < history["loss"][0]
    assert cluster_accuracy(y, model.cluster(x)) == 1.0
    assert history["cluster_acc"][0] < 1.0 and history["cluster_acc"][-1] == 1.0   # it had to learn them
    assert history["cluster_nmi"][-1] == pytest.approx(1.0)
    assert 0 < history["elapsed"][0] and np.all(np.diff(history["elapsed"]) > 0)
    assert history["entropy"][-1] > math.log(3) - 0.05              # all three clusters in use
    assert model.embed(x).shape == (300, 16)


def test_pairs_are_anchor_and_one_of_its_neighbours():
    x = np.arange(20, dtype=np.float32)[:, None].repeat(2, axis=1)
    nbrs = np.stack([(np.arange(20) + 1) % 20, (np.arange(20) + 2) % 20], axis=1)
    anchors, partners = next(iter(neighbour_pairs(x, nbrs, batch_size=20, seed=3)))
    a, p = anchors.numpy()[:, 0].astype(int), partners.numpy()[:, 0].astype(int)
    assert sorted(a.tolist()) == list(range(20))                    # every anchor once a pass
    assert set(((p - a) % 20).tolist()) <= {1, 2} and len(set(((p - a) % 20).tolist())) == 2


def test_save_and_load(tmp_path):
    x, _ = blobs(60)
    model = SCAN(build_scan_head(x, n_clusters=3, hidden=4, n_components=4), entropy_weight=3.0)
    model.compile(optimizer="adam")
    path = tmp_path / "scan.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, SCAN) and loaded.entropy_weight == 3.0
    np.testing.assert_allclose(loaded.embed(x), model.embed(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(loaded.cluster(x), model.cluster(x))


def test_bad_input_raises():
    x, _ = blobs(60)
    head = build_scan_head(x, n_clusters=3, hidden=4, n_components=4)
    with pytest.raises(ValueError, match="entropy_weight"):
        SCAN(head, entropy_weight=-1.0)
    with pytest.raises(ValueError, match="layer named 'hidden'"):
        SCAN(keras.Sequential([keras.Input((16,)), keras.layers.Dense(3)]))
    with pytest.raises(ValueError, match="k must be smaller than the number of examples"):
        mine_neighbours(head, x, k=60)
    with pytest.raises(ValueError, match="n_components must be at most"):
        build_scan_head(x, n_components=17)
    with pytest.raises(ValueError, match="features must have 16 columns"):
        SCAN(head).cluster(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"neighbours must be an integer array of shape \(60, k\)"):
        neighbour_pairs(x, np.zeros((59, 2), int))
    with pytest.raises(ValueError, match="neighbours must index rows"):
        neighbour_pairs(x, np.full((60, 2), 60))



def test_the_cluster_monitor_refuses_features_that_do_not_match_the_labels():
    x, y = blobs()
    with pytest.raises(ValueError, match=r"one row per label \(150\); got shape \(149, 16\)"):
        ClusterMonitor(x[::2][:-1], y[::2])
