"""uvbook.plots and uvbook.models.classifier."""

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from uvbook import plots  # noqa: E402
from uvbook.models import build_cnn_classifier  # noqa: E402


def test_image_grid_draws_one_panel_per_image():
    images = np.random.default_rng(0).uniform(size=(7, 28, 28, 1)).astype(np.float32)
    fig = plots.image_grid(images, titles=[str(i) for i in range(7)], ncols=4)
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 8 and len(drawn) == 7
    assert [ax.get_title() for ax in drawn] == [str(i) for i in range(7)]


def test_scatter_and_curves():
    fig = plots.scatter_by_class(np.random.rand(30, 2), np.repeat(np.arange(3), 10), ["a", "b", "c"])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b", "c"]
    fig = plots.loss_curves({"loss": [3.0, 2.0, 1.0], "val_loss": [3.5, 2.5, 2.0]})
    assert len(fig.axes[0].lines) == 2


def test_scatter_draws_into_a_given_panel():
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2)
    labels = np.repeat(np.arange(4), 5)
    assert plots.scatter_by_class(np.random.rand(20, 2), labels, ax=left, legend=False, title="L") is fig
    plots.scatter_by_class(np.random.rand(20, 2), labels, ax=right)
    assert len(fig.axes) == 2 and len(left.collections) == 4 and len(right.collections) == 4
    assert left.get_legend() is None and right.get_legend() is not None and left.get_title() == "L"


def test_label_curves_draws_a_curve_a_method_and_the_lines_on_a_log_axis():
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2)
    curves = {"a": ([0.5, 0.6, 0.7], [0.01, 0.02, 0.0]), "b": ([0.4, 0.5, 0.9], [0.0, 0.0, 0.0])}
    drawn = plots.label_curves(curves, [1, 10, 100], ax=right, styles={"b": {"lw": 3.0}},
                               lines=[(0.92, "all labels", {}), (0.1, None, {"color": "grey"})], title="T")
    assert drawn is fig and not left.lines and right.get_xscale() == "log" and right.get_title() == "T"
    assert list(right.get_xticks()) == [1, 10, 100]
    legend = [t.get_text() for t in right.get_legend().get_texts()]
    assert legend == ["all labels", "a", "b"]           # the unlabelled chance line stays out of the legend
    data = {bars.get_label(): bars.lines[0] for bars in right.containers}       # one errorbar a method
    assert {name: tuple(line.get_ydata()) for name, line in data.items()} == {"a": (0.5, 0.6, 0.7),
                                                                                "b": (0.4, 0.5, 0.9)}
    assert data["b"].get_linewidth() == 3.0 and list(data["a"].get_xdata()) == [1, 10, 100]
    assert sorted(line.get_ydata()[0] for line in right.lines if len(set(line.get_ydata())) == 1
                  and len(line.get_ydata()) == 2) == [0.1, 0.92]


@pytest.mark.parametrize("call, message", [
    (lambda: plots.label_curves({"a": ([0.5], [0.0])}, [1, 10]), "must have 2 means"),
    (lambda: plots.label_curves({"a": ([0.5], [0.0])}, [0]), "positive integer"),
    (lambda: plots.label_curves({"a": ([0.5], [0.0])}, [1], ax="left"), "ax must be a matplotlib Axes"),
    (lambda: plots.image_grid(np.zeros((2, 28, 28, 3), np.float32)), "grey-scale"),
    (lambda: plots.image_grid(np.zeros((2, 28, 28, 1), np.float32), titles=["a"]), "one entry per image"),
    (lambda: plots.scatter_by_class(np.zeros((3, 3)), [0, 1, 2]), "2 columns"),
    (lambda: plots.scatter_by_class(np.zeros((3, 2)), [0, 1, 2], ax="left"), "ax must be a matplotlib Axes"),
    (lambda: plots.loss_curves({"loss": [1.0]}, keys=["acc"]), "unknown"),
    (lambda: plots.loss_curves({}), "non-empty mapping"),
    (lambda: build_cnn_classifier(num_classes=0), "positive integer"),
    (lambda: build_cnn_classifier(input_shape=(28, 28, 3)), r"\(height, width, 1\)"),
    (lambda: build_cnn_classifier(dropout=1.0), r"dropout must be in \[0, 1\)"),
])
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_classifier_learns_a_tiny_problem_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 32)
    x = rng.uniform(0, 0.3, size=(64, 28, 28, 1)).astype(np.float32)
    x[y == 1, :14] += 0.6  # class 1: bright upper half
    model = build_cnn_classifier(num_classes=2, width=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["accuracy"][-1] == 1.0
    assert model.get_layer("features").output.shape[-1] == 128
    path = tmp_path / "cnn.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
