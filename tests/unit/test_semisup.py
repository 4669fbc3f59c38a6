"""Chapter 7's semi-supervised pieces: FixMatch's loss and model, its augmentations and data, and
label spreading, each against an answer known in advance."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from uvbook.evaluate import graph_predict, neighbour_graph, spread_labels  # noqa: E402
from uvbook.callbacks import WatchAccuracy  # noqa: E402
from uvbook.models.semisup import FixMatch, fixmatch_loss, semisup_pipeline, strong_augment, weak_augment  # noqa: E402
from uvbook.recipes import build_few_label_classifier  # noqa: E402


def _np(x):
    return keras.ops.convert_to_numpy(x)


# ----------------------------------------------------------------------------- the loss

def test_fixmatch_loss_counts_exactly_the_confident_examples():
    # Rows 0 and 2 are confident (softmax max >= 0.95), rows 1 and 3 are not.
    weak = np.array([[10.0, 0, 0], [1.0, 0.5, 0], [0, 0, 8.0], [0.2, 0.1, 0]], np.float32)
    strong = np.array([[0.0, 2, 0], [3.0, 0, 0], [0, 1.0, 1.0], [0, 0, 5.0]], np.float32)
    loss, rate = fixmatch_loss(weak, strong, threshold=0.95)

    def ce(logits, target):
        return -(logits[target] - np.log(np.exp(logits).sum()))

    expected = (ce(strong[0], 0) + ce(strong[2], 2)) / 4          # divided by the whole batch
    assert float(rate) == pytest.approx(0.5)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # a higher threshold keeps only row 0 (softmax max 0.99991); a low one keeps all
    loss0, rate0 = fixmatch_loss(weak, strong, threshold=0.9999)
    assert float(rate0) == 0.25 and float(loss0) == pytest.approx(ce(strong[0], 0) / 4, rel=1e-5)
    _, rate_all = fixmatch_loss(weak, strong, threshold=0.34)
    assert float(rate_all) == 1.0


def test_fixmatch_loss_sends_no_gradient_through_the_pseudo_label():
    import tensorflow as tf

    weak = tf.Variable([[5.0, 0.0], [0.0, 6.0]])
    strong = tf.Variable([[0.0, 1.0], [1.0, 0.0]])
    with tf.GradientTape() as tape:
        loss, _ = fixmatch_loss(weak, strong, 0.9)
    g_weak, g_strong = tape.gradient(loss, [weak, strong])
    assert g_weak is None or np.allclose(_np(g_weak), 0.0)
    assert np.abs(_np(g_strong)).sum() > 0.1


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5, -0.1, float("nan"), True])
def test_fixmatch_threshold_outside_the_open_interval_is_refused(threshold):
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\)"):
        fixmatch_loss(np.zeros((2, 3)), np.zeros((2, 3)), threshold)
    with pytest.raises(ValueError, match="threshold"):
        FixMatch(build_few_label_classifier(), threshold=threshold)


def test_fixmatch_loss_refuses_mismatched_logits():
    with pytest.raises(ValueError, match=r"one shape; got \(2, 3\) and \(2, 4\)"):
        fixmatch_loss(np.zeros((2, 3)), np.zeros((2, 4)))


# ----------------------------------------------------------------------------- augmentations

def test_weak_augment_shifts_whole_pixels_and_flips():
    x = np.zeros((64, 28, 28, 1), np.float32)
    x[:, 10:18, 12:16, 0] = 1.0                  # an off-centre bar
    y = _np(weak_augment(x, seed=0, shift=2))
    assert y.shape == x.shape
    assert set(np.unique(np.round(y, 5))) <= {0.0, 1.0}      # integer shifts: no interpolation
    assert np.allclose(y.sum(axis=(1, 2, 3)), x[0].sum())    # nothing lost: the bar stays inside
    assert not np.allclose(y, x)
    ident = _np(weak_augment(x, seed=0, shift=0, flip=False))
    assert np.array_equal(ident, x)


def test_strong_augment_cuts_out_a_grey_square():
    x = np.ones((16, 28, 28, 1), np.float32)
    y = _np(strong_augment(x, seed=1, crop_scale=(1.0, 1.0), jitter=0.0, cutout=10))
    grey = (np.abs(y - 0.5) < 1e-6).sum(axis=(1, 2, 3))
    assert np.all(grey > 0) and np.all(grey <= 100)
    assert np.all(y[np.abs(y - 0.5) >= 1e-6] == 1.0)


# ----------------------------------------------------------------------------- the data

def test_pipeline_batches_labelled_and_unlabelled_in_the_ratio():
    xl, yl = np.zeros((10, 28, 28, 1), np.float32), np.arange(10) % 5
    xu = np.ones((100, 28, 28, 1), np.float32)
    batches = list(semisup_pipeline(xl, yl, xu, batch_size=4, ratio=3))
    assert len(batches) == 100 // 12                              # one pass over the unlabelled images
    (bx, by), bu = batches[0]
    assert bx.shape == (4, 28, 28, 1) and by.shape == (4,) and bu.shape == (12, 28, 28, 1)


def test_pipeline_refuses_bad_inputs():
    xl, xu = np.zeros((6, 28, 28, 1), np.float32), np.zeros((20, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match=r"every class 0..2; it has none of \[1\]"):
        semisup_pipeline(xl, np.array([0, 0, 2, 2, 0, 2]), xu)
    with pytest.raises(ValueError, match="must have one shape"):
        semisup_pipeline(xl, np.array([0, 1, 2, 0, 1, 2]), np.zeros((20, 32, 32, 1), np.float32))
    with pytest.raises(ValueError, match=r"classes in 0..9; got values from -1 to 2"):
        semisup_pipeline(xl, np.array([0, 1, 2, 0, 1, -1]), xu, n_classes=10)
    with pytest.raises(ValueError, match=r"classes in 0..1; got values from 0 to 2"):
        semisup_pipeline(xl, np.array([0, 1, 2, 0, 1, 1]), xu, n_classes=2)


# ----------------------------------------------------------------------------- the model

def _toy(n_per_class: int = 40, seed: int = 0):
    """Two classes a network tells apart at once: a bright bar at the top or at the bottom (a
    left-right flip, which the augmentations use, keeps the class)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.2, size=(2 * n_per_class, 28, 28, 1)).astype(np.float32)
    y = np.repeat([0, 1], n_per_class)
    x[y == 0, 3:11, 6:22] += 0.7
    x[y == 1, 17:25, 6:22] += 0.7
    return x, y


def test_fixmatch_trains_saves_and_reloads(tmp_path):
    x, y = _toy()
    clf = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, strides=4, activation="relu"),
                            keras.layers.Flatten(), keras.layers.Dense(2)])
    model = FixMatch(clf, threshold=0.6, seed=0, shift=0, crop_scale=(0.9, 1.0), jitter=0.0, cutout=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    lab = np.r_[0:3, 40:43]
    data = semisup_pipeline(x[lab], y[lab], x, batch_size=6, ratio=2).repeat()
    hist = model.fit(data, epochs=3, steps_per_epoch=20, verbose=0,
                     callbacks=[WatchAccuracy(x, y)]).history
    assert hist["watch_accuracy"][-1] == 1.0
    assert hist["mask_rate"][-1] > 0.5                      # the unlabelled images became confident
    assert 0 < hist["elapsed"][0] < hist["elapsed"][-1]
    path = tmp_path / "fm.keras"
    model.save(path)
    again = keras.models.load_model(path)
    assert isinstance(again, FixMatch) and again.threshold == 0.6
    assert np.array_equal(again.predict_classes(x), model.predict_classes(x))


def test_few_label_classifier_copies_the_encoder():
    from uvbook.layers import build_conv_trunk

    enc = build_conv_trunk((4, 8))
    clf = build_few_label_classifier(enc)
    x = np.random.default_rng(0).uniform(size=(3, 28, 28, 1)).astype(np.float32)
    inner = clf.layers[1]
    assert np.allclose(_np(inner(x)), _np(enc(x)))           # same weights ...
    inner.weights[0].assign(inner.weights[0] * 0)
    assert not np.allclose(_np(enc(x)), 0.0)                  # ... in a separate copy
    assert clf.output.shape[-1] == 10
    assert build_few_label_classifier().output.shape[-1] == 10


# ----------------------------------------------------------------------------- label spreading

def _two_moons_like(seed=0):
    """Two well-separated blobs of 50 points in 5-D, around opposite directions (the graph is
    cosine-based); each blob's 8-NN graph is connected."""
    rng = np.random.default_rng(seed)
    centre = np.eye(5)[0]
    a = centre + rng.normal(0, 0.15, (50, 5))
    b = -centre + rng.normal(0, 0.15, (50, 5))
    return np.r_[a, b], np.repeat([0, 1], 50)


def test_spreading_reaches_every_node_of_a_cluster():
    x, y = _two_moons_like()
    g = neighbour_graph(x, n_neighbors=8)
    labels = np.full(100, -1)
    labels[[0, 50]] = [0, 1]
    F = spread_labels(g, labels, alpha=0.9, iterations=200)
    assert np.allclose(F.sum(axis=1), 1.0)
    assert np.array_equal(F.argmax(axis=1), y)
    assert np.array_equal(graph_predict(g, F, np.array([[0.9, 0.05, 0, 0, 0], [-1.1, 0.0, 0.1, 0, 0]])), [0, 1])


def test_spreading_converges_to_the_closed_form():
    x, _ = _two_moons_like(1)
    g = neighbour_graph(x, n_neighbors=8)
    labels = np.full(100, -1)
    labels[[3, 60, 70]] = [0, 1, 1]
    alpha = 0.7
    Y = np.zeros((100, 2))
    Y[[3, 60, 70], [0, 1, 1]] = 1
    closed = (1 - alpha) * np.linalg.solve(np.eye(100) - alpha * g.S.toarray(), Y)
    closed /= closed.sum(axis=1, keepdims=True)
    assert np.allclose(spread_labels(g, labels, alpha, iterations=300), closed, atol=1e-8)


def test_graph_is_symmetric_and_normalised():
    x, _ = _two_moons_like(2)
    S = neighbour_graph(x, n_neighbors=6).S.toarray()
    assert np.allclose(S, S.T)
    assert np.all(np.linalg.eigvalsh(S) <= 1 + 1e-9)         # D^-1/2 W D^-1/2 has spectral radius 1
    g = neighbour_graph(np.random.default_rng(0).normal(size=(40, 20)), 5, n_components=3)
    assert g.features.shape == (40, 3)
    assert graph_predict(g, np.eye(2)[np.arange(40) % 2], np.ones((2, 20))).shape == (2,)


def test_spreading_refuses_bad_inputs():
    x, _ = _two_moons_like()
    g = neighbour_graph(x, n_neighbors=5)
    with pytest.raises(ValueError, match="at least one labelled example"):
        spread_labels(g, np.full(100, -1))
    with pytest.raises(ValueError, match="100 integers"):
        spread_labels(g, np.zeros(99, dtype=int))
    with pytest.raises(ValueError, match=r"values from -2"):
        spread_labels(g, np.r_[-2, np.zeros(99, dtype=int)])
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\); got 1.0"):
        spread_labels(g, np.zeros(100, dtype=int), alpha=1.0)
    with pytest.raises(ValueError, match="n_neighbors must be smaller"):
        neighbour_graph(x[:5], n_neighbors=5)
    with pytest.raises(ValueError, match="5 columns the graph was built from; got 3"):
        graph_predict(g, np.ones((100, 2)), np.ones((1, 3)))


def test_graph_predict_takes_features_or_links():
    x, y = _two_moons_like(3)
    g = neighbour_graph(x, n_neighbors=8)
    labels = np.full(100, -1)
    labels[[0, 50]] = [0, 1]
    F = spread_labels(g, labels, alpha=0.9, iterations=100)
    queries = x[[1, 2, 60, 70]]
    assert np.array_equal(graph_predict(g, F, queries), graph_predict(g, F, links=g.links(queries)))
    with pytest.raises(ValueError, match="either features or links"):
        graph_predict(g, F)
    with pytest.raises(ValueError, match="either features or links"):
        graph_predict(g, F, queries, links=g.links(queries))


def test_recipe_refuses_an_unknown_method_before_training():
    from uvbook.recipes import train_few_label_classifier

    with pytest.raises(ValueError, match=r"method must be one of \['finetune', 'fixmatch', 'm2', 'sgan', 'supervised'\]; "
                                         r"got 'mixmatch'"):
        train_few_label_classifier("mixmatch", 10, 0)
    with pytest.raises(ValueError, match="per_class must be a positive integer; got 0"):
        train_few_label_classifier("supervised", 0, 0)
