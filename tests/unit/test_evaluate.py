"""uvbook.evaluate on cases whose answer is known."""

import numpy as np
import pytest

from uvbook import evaluate


def test_permuted_perfect_labelling_scores_one():
    y = np.repeat(np.arange(10), 30)
    perm = np.random.default_rng(0).permutation(10)
    assert evaluate.cluster_accuracy(y, perm[y]) == 1.0
    assert evaluate.nmi(y, perm[y]) == pytest.approx(1.0)


def test_match_clusters_maps_each_cluster_to_its_matched_class():
    np.testing.assert_array_equal(evaluate.match_clusters([0, 0, 1, 1], [1, 1, 1, 0]), [0, 0, 0, 1])
    np.testing.assert_array_equal(evaluate.match_clusters([3, 3, 7, 7], [5, 5, 2, 2]), [3, 3, 7, 7])
    mapped = evaluate.match_clusters([0, 0, 1, 1], [0, 1, 2, 2])     # three clusters, two classes
    assert mapped[2:].tolist() == [1, 1] and sorted(mapped[:2].tolist()) == [-1, 0]
    with pytest.raises(ValueError, match="y_pred"):
        evaluate.match_clusters([0, 1], [0, 1, 1])


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


# ----- the tuned probe (Chapter 6): C chosen without test labels -----------------------

def _shared_noise(n_per_class=40, seed=0):
    """Two classes that differ by +-0.5 in x0, buried in noise shared by x0 and x1.

    The class means differ only along x0, so a strongly penalised classifier (which tends
    to the class-mean direction) sees mostly noise; x0 - x1 is the noise-free signal, which
    only a weakly penalised classifier finds.
    """
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(2), n_per_class)
    noise = 10.0 * rng.normal(size=len(y))
    x = np.stack([(y - 0.5) + noise, noise + 0.01 * rng.normal(size=len(y))], axis=1)
    return x.astype(np.float32), y


def test_choose_C_prefers_the_weak_penalty_when_only_it_finds_the_signal():
    x, y = _shared_noise()
    grid = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
    c, cv_accuracy = evaluate.choose_C(x, y, grid=grid, folds=5)
    assert cv_accuracy.shape == (len(grid),)
    assert cv_accuracy[0] < 0.75 and cv_accuracy[-1] > 0.95, cv_accuracy
    assert c == grid[int(np.argmax(cv_accuracy))] and c >= 1.0


def test_choose_C_breaks_ties_towards_the_stronger_penalty():
    x, y = _blobs(n_per_class=10)          # separated by 20 units: every C of the grid is perfect
    c, cv_accuracy = evaluate.choose_C(x, y, grid=(10.0, 0.1, 1.0), folds=5)
    assert np.all(cv_accuracy == 1.0) and c == 0.1


def test_tuned_probe_records_the_chosen_C_and_an_oracle_that_bounds_it():
    x, y = _shared_noise(n_per_class=200, seed=0)
    xt, yt = _shared_noise(n_per_class=200, seed=1)
    grid = (0.001, 1.0, 100.0)
    tuned = evaluate.linear_probe(x, y, xt, yt, per_class=20, seeds=(0, 1, 2), C="cv", grid=grid)
    assert len(tuned.C) == len(tuned.oracle) == len(tuned.oracle_C) == 3
    assert set(tuned.C) <= set(grid) and tuned.typical_C > 0.001
    assert all(o >= a for o, a in zip(tuned.oracle, tuned.accuracies))
    fixed = evaluate.linear_probe(x, y, xt, yt, per_class=20, seeds=(0, 1, 2), C=0.001)
    assert fixed.C == () and np.isnan(fixed.oracle_mean)
    assert tuned.mean > fixed.mean + 0.2, (tuned, fixed)      # the fixed strong penalty misses x0 - x1
    one = evaluate.linear_probe(x, y, xt, yt, per_class=1, seeds=(0, 1), C="cv", grid=grid)
    assert one.C == (0.001, 0.001)                             # k = 1: the documented rule


@pytest.mark.parametrize("call, message", [
    (lambda: evaluate.choose_C(np.zeros((6, 2)), [0, 0, 0, 1, 1, 1], folds=2, classes=[0, 1, 2]),
     r"classes \[2\] have none"),
    (lambda: evaluate.choose_C(np.zeros((6, 2)), [0, 0, 0, 1, 1, 1], folds=5),
     "at least folds=5 labelled examples.*has 3"),
    (lambda: evaluate.choose_C(np.zeros((6, 2)), [0, 0, 0, 1, 1, 1], folds=1), "at least 2"),
    (lambda: evaluate.choose_C(np.zeros((6, 2)), [0, 0, 0, 1, 1, 1], grid=(0.1, -1.0)), "positive, finite"),
    (lambda: evaluate.linear_probe(np.zeros((8, 2)), [0] * 4 + [1] * 4, np.zeros((2, 2)), [0, 1], 3,
                                   C="cv", folds=5), r"folds must be at most per_class \(3\).*got 5"),
    (lambda: evaluate.linear_probe(np.zeros((8, 2)), [0] * 4 + [1] * 4, np.zeros((3, 2)), [0, 1, 2], 2,
                                   C="cv"), r"classes \[2\] have none"),
    (lambda: evaluate.linear_probe(np.zeros((8, 2)), [0] * 4 + [1] * 4, np.zeros((2, 2)), [0, 1], 2,
                                   C="auto"), "positive number or 'cv'; got 'auto'"),
    (lambda: evaluate.linear_probe(np.zeros((8, 2)), [0] * 4 + [1] * 4, np.zeros((2, 2)), [0, 1], 2,
                                   C=0.0), "positive number or 'cv'; got 0.0"),
    (lambda: evaluate.linear_probe(np.zeros((8, 2)), [0] * 4 + [1] * 4, np.zeros((2, 2)), [0, 1], 2,
                                   C="cv", tol=0), "tol must be a positive number; got 0"),
])
def test_tuned_probe_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_n2d_separates_blobs_and_checks_its_sizes():
    x, y = _blobs(n_per_class=60, d=8)
    assert evaluate.n2d_scores(x, y, n_clusters=3, n_neighbors=10) == {"acc": 1.0, "nmi": pytest.approx(1.0)}
    with pytest.raises(ValueError, match="smaller than the number of examples"):
        evaluate.n2d_scores(x[:10], y[:10], n_clusters=3, n_neighbors=10)


def test_leave_one_out_knn_leaves_each_example_out():
    x = np.array([[0.0], [0.1], [10.0], [10.1]], np.float32)
    assert evaluate.leave_one_out_knn_accuracy(x, [0, 0, 1, 1], k=1) == 1.0
    assert evaluate.leave_one_out_knn_accuracy(x, [0, 1, 0, 1], k=1) == 0.0   # its twin has the other label
    # unit length: [1, 0] and [10, 0] are the same direction, [0, 1] another one
    d = np.array([[1.0, 0.0], [10.0, 0.1], [0.0, 1.0], [0.1, 10.0]], np.float32)
    assert evaluate.leave_one_out_knn_accuracy(d, [0, 0, 1, 1], k=1, unit=True) == 1.0
    with pytest.raises(ValueError, match="k must be smaller than the number of examples \\(4\\); got 4"):
        evaluate.leave_one_out_knn_accuracy(x, [0, 0, 1, 1], k=4)


def test_probe_fits_in_the_span_of_its_examples_give_the_same_classifier():
    # more features than examples: the path is fitted on the coordinates in the examples' span
    rng = np.random.default_rng(0)
    x, y, xt = rng.normal(size=(60, 500)), np.repeat(np.arange(3), 20), rng.normal(size=(200, 500))
    from sklearn.linear_model import LogisticRegression

    for fit, c in zip(evaluate._fit_path(x, y, (0.01, 0.1, 1.0), tol=1e-10), (0.01, 0.1, 1.0)):
        full = LogisticRegression(C=c, max_iter=20000, tol=1e-10).fit(x, y)
        assert fit.coef_.shape == (3, 500)
        np.testing.assert_allclose(fit.decision_function(xt), full.decision_function(xt), atol=1e-4)


def test_protocol_scores_every_measure_and_matches_the_single_functions():
    x, y = _blobs()
    xt, yt = _blobs(seed=1)
    scored = evaluate.protocol(x, y, xt, yt, per_class=(1, 5), seeds=(0, 1), knn_k=3, kmeans_n_init=2,
                               retrieval_k=5)
    row = scored.row()
    assert list(row) == ["probe 1", "probe 5", "3-NN", "k-means ACC", "k-means NMI", "P@5"]
    assert row["probe 5"] == evaluate.linear_probe(x, y, xt, yt, per_class=5, seeds=(0, 1)).mean
    assert row["3-NN"] == evaluate.knn_accuracy(x, y, xt, yt, k=3)
    assert row["k-means ACC"] == evaluate.kmeans_scores(xt, yt, n_clusters=3, seed=0, n_init=2)["acc"]
    assert row["P@5"] == evaluate.retrieval_precision_at_k(xt, yt, k=5)
    assert min(row.values()) > 0.9            # well-separated blobs: every measure close to 1
    assert "P@10" not in evaluate.protocol(x, y, xt, yt, per_class=(1,), seeds=(0,)).row()
    with pytest.raises(ValueError, match=r"per_class must name at least one .*got \(\)"):
        evaluate.protocol(x, y, xt, yt, per_class=())


def test_protocol_table_scores_each_representation_with_the_same_settings(capsys):
    x, y = _blobs()
    xt, yt = _blobs(seed=1)
    noise = np.random.default_rng(0).normal(size=x.shape), np.random.default_rng(1).normal(size=xt.shape)
    rows, probes = evaluate.protocol_table({"blobs": (x, xt), "noise": noise}, y, yt, per_class=(1, 5),
                                           seeds=(0, 1), knn_k=3, kmeans_n_init=2)
    assert rows["blobs"] == evaluate.protocol(x, y, xt, yt, per_class=(1, 5), seeds=(0, 1), knn_k=3,
                                              kmeans_n_init=2).row()
    assert set(probes) == {("blobs", 1), ("blobs", 5), ("noise", 1), ("noise", 5)}
    assert probes["blobs", 5].mean == rows["blobs"]["probe 5"] and rows["noise"]["3-NN"] < 0.6
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["blobs", "noise"]
    with pytest.raises(ValueError, match="non-empty mapping of name to"):
        evaluate.protocol_table({}, y, yt)
    with pytest.raises(ValueError, match=r"representations\['blobs'\] must be a pair"):
        evaluate.protocol_table({"blobs": x}, y, yt)
