"""uvbook.evaluate on cases whose answer is known."""

import numpy as np
import pytest

from uvbook import evaluate


def test_permuted_perfect_labelling_scores_one():
    y = np.repeat(np.arange(10), 30)
    perm = np.random.default_rng(0).permutation(10)
    assert evaluate.cluster_accuracy(y, perm[y]) == 1.0
    assert evaluate.nmi(y, perm[y]) == pytest.approx(1.0)


def test_cluster_accuracy_small_case_by_hand():
    # best map: cluster 1 -> class 0, cluster 0 -> class 1: 3 of 4 right
    assert evaluate.cluster_accuracy([0, 0, 1, 1], [1, 1, 1, 0]) == 0.75
    # more clusters than classes: the extra cluster can match nothing
    assert evaluate.cluster_accuracy([0, 0, 1, 1], [0, 1, 2, 2]) == 0.75


def test_random_labelling_is_near_chance():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 20_000)
    pred = rng.integers(0, 10, 20_000)
    assert 0.1 <= evaluate.cluster_accuracy(y, pred) < 0.12
    assert evaluate.nmi(y, pred) < 0.01


def _blobs(n_per_class=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(3, d) * 20.0
    x = np.concatenate([c + 0.3 * rng.normal(size=(n_per_class, d)) for c in centres])
    return x.astype(np.float32), np.repeat(np.arange(3), n_per_class)


def test_kmeans_recovers_separated_blobs():
    x, y = _blobs()
    scores = evaluate.kmeans_scores(x, y, n_clusters=3)
    assert scores == {"acc": 1.0, "nmi": pytest.approx(1.0)}


def test_linear_probe_and_knn_on_separable_data():
    x, y = _blobs(seed=0)
    xt, yt = _blobs(seed=1)
    result = evaluate.linear_probe(x, y, xt, yt, per_class=1, seeds=(0, 1, 2))
    assert result.accuracies == (1.0, 1.0, 1.0) and result.mean == 1.0 and result.std == 0.0
    assert "1 label a class, 3 seeds" in str(result)
    assert evaluate.knn_accuracy(x, y, xt, yt, k=3) == 1.0


def test_probe_accepts_images_and_improves_with_labels():
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(2), 200)
    x = rng.uniform(0, 0.5, size=(400, 4, 4, 1)).astype(np.float32)
    x[y == 1, 0, 0, 0] += 0.6  # one informative pixel, plus noise in all others
    few = evaluate.linear_probe(x[::2], y[::2], x[1::2], y[1::2], per_class=1, seeds=range(5))
    many = evaluate.linear_probe(x[::2], y[::2], x[1::2], y[1::2], per_class=50, seeds=range(5))
    assert many.mean > few.mean + 0.1 and many.mean > 0.95


@pytest.mark.parametrize("call, message", [
    (lambda: evaluate.cluster_accuracy([0, 1], [0, 1, 1]), "one label per example"),
    (lambda: evaluate.cluster_accuracy([], []), "non-empty"),
    (lambda: evaluate.nmi([0, 1], [[0, 1]]), "1-D"),
    (lambda: evaluate.kmeans_scores(np.zeros((5, 2)), np.zeros(4, int)), "5 rows|4 rows"),
    (lambda: evaluate.kmeans_scores(np.full((5, 2), np.nan), np.zeros(5, int)), "finite"),
    (lambda: evaluate.kmeans_scores(np.zeros((5, 2)), np.zeros(5, int), n_clusters=6), "n_clusters must be at most"),
    (lambda: evaluate.knn_accuracy(np.zeros((3, 2)), [0, 1, 1], np.zeros((2, 2)), [0, 1], k=4), "k must be at most"),
    (lambda: evaluate.knn_accuracy(np.zeros((3, 2)), [0, 1, 1], np.zeros((2, 2)), [0, 1], k=-1), "positive integer"),
    (lambda: evaluate.linear_probe(np.zeros((4, 2)), [0, 0, 1, 1], np.zeros((2, 3)), [0, 1], 1), "same number of features"),
    (lambda: evaluate.linear_probe(np.zeros((4, 2)), [0, 0, 1, 1], np.zeros((2, 2)), [0, 1], 3), "smallest class"),
    (lambda: evaluate.linear_probe(np.zeros((4, 2)), [0, 0, 1, 1], np.zeros((2, 2)), [0, 1], 1, seeds=()), "at least one seed"),
    (lambda: evaluate.linear_probe(np.zeros((0, 2)), [], np.zeros((2, 2)), [0, 1], 1), "non-empty"),
])
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
