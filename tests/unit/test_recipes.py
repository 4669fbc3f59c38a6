"""uvbook.recipes: every recipe shows its progress, one line an epoch, and only when asked.

Each recipe is run for one epoch on a few images (its sizes patched down) into a temporary
model cache; the lines it prints are what a reader sees in Jupyter.
"""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from uvbook import recipes
from uvbook.callbacks import EpochLog
from uvbook.data import load_dataset

LINE = re.compile(r"^(?P<name>\S+)  epoch (?P<epoch>\d+)/(?P<total>\d+)  (?P<numbers>.*)  \|  "
                  r"(?P<spent>\d+) s spent, about (?P<left>\d+) s left$", re.M)


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """Every recipe's sizes cut to a few images and one epoch; the cache in tmp_path."""
    monkeypatch.setenv("UVBOOK_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(recipes, "fashion_cnn_sizes", lambda: {
        "n_train": 300, "n_val": 50, "epochs": 1, "batch_size": 64, "adam_lr": 1e-3, "bn_momentum": 0.9, "seed": 0})
    monkeypatch.setitem(recipes.CHAPTER3_TRAINING, "n_train", {"quick": 200, "full": 200})
    monkeypatch.setitem(recipes.CHAPTER3_TRAINING, "epochs", {"quick": 1, "full": 1})
    for sizes in ("linear_ae_sizes", "sparse_ae_sizes", "anomaly_ae_sizes"):
        monkeypatch.setattr(recipes, sizes, lambda: {"epochs": 1, "batch_size": 64, "seed": 0})
    monkeypatch.setattr(recipes, "code_size_sizes", lambda: {  # 100 of the 200 images: the subset is drawn
        "code_dims": (2,), "n_train": 100, "epochs": 1, "batch_size": 64, "seed": 0})
    monkeypatch.setattr(recipes, "fashion_vae_sizes", lambda: {
        "n_train": 200, "n_val": 100, "epochs": 1, "batch_size": 64, "seed": 0})
    monkeypatch.setattr(recipes, "fashion_simclr_sizes", lambda: {
        "n_train": 300, "n_monitor": 50, "epochs": 1, "batch_size": 64, "seed": 0})
    monkeypatch.setattr(recipes, "fashion_scan_sizes", lambda: {"n_train": 300, "n_monitor": 50, "epochs": 1, "seed": 0})
    monkeypatch.setitem(recipes.FASHION_SCAN_CONFIG, "n_components", 32)   # at most the 250 images it fits
    monkeypatch.setitem(recipes.FASHION_SCAN_CONFIG, "hidden", 32)
    monkeypatch.setattr(recipes, "semisup_sizes", lambda: {
        "n_train": 300, "n_watch": 50, "supervised_steps": 4, "supervised_batch": 16, "steps": 4,
        "report_every": 4})
    monkeypatch.setattr(recipes, "generative_semisup_steps", lambda method: {"steps": 4, "report_every": 2})
    monkeypatch.setattr(recipes, "dense_vae_sizes", lambda: {
        "n_train": 200, "n_val": 100, "epochs": 1, "epochs_2d": 1, "batch_size": 64, "seed": 0})
    monkeypatch.setattr(recipes, "mnist_vae_split", lambda dataset: tuple(
        np.split(load_dataset("mnist_5k", "train", n=250)[0], [200])))
    monkeypatch.setattr(recipes, "mnist_vae_sizes", lambda dataset: {
        "n_train": 200, "n_val": 50, "examples": 200, "epochs": 1, "batch_size": 64, "seed": 0})
    monkeypatch.setattr(recipes, "simclr_twin_sizes", lambda: {
        "n_train": 300, "n_monitor": 50, "epochs": 1, "batch_size": 64, "seed": 0})
    monkeypatch.setattr(recipes, "diffusion_sizes", lambda: {
        "n_train": 200, "train_steps": 4, "report_every": 2, "seed": 0})
    monkeypatch.setattr(recipes, "masked_ae_sizes", lambda: {"n_train": 200, "epochs": 1, "seed": 0})
    monkeypatch.setattr(recipes, "beta_vae_sizes", lambda: {"n_train": 200, "epochs": 1, "seed": 0})
    monkeypatch.setattr(recipes, "overfit_ae_sizes", lambda: {"sizes": (30,), "train_steps": 4, "seed": 0})
    monkeypatch.setattr(recipes, "cas_sizes", lambda: {"per_class": 20, **recipes.fashion_cnn_sizes(), "seed": 11})


RUNS = {
    "cnn": lambda v: recipes.train_fashion_cnn(verbose=v),
    "conv_ae": lambda v: recipes.chapter3_model("conv_ae_32", verbose=v),
    "linear_ae": lambda v: recipes.train_linear_ae(verbose=v),
    "sparse_ae": lambda v: recipes.train_sparse_ae("kl", verbose=v),
    "code_size_ae": lambda v: recipes.train_code_size_ae(2, verbose=v),
    "anomaly_ae": lambda v: recipes.train_anomaly_ae(verbose=v),
    "vae": lambda v: recipes.train_fashion_vae(verbose=v),
    # train_fashion_dcgan is train_gan with Chapter 4's DCGAN (and a Fréchet monitor that costs more than the test)
    "dcgan": lambda v: recipes.train_gan("tiny_dcgan", recipes.build_fashion_dcgan, load_dataset("fashion_mnist", n=128)[0],
                                         epochs=1, batch_size=32, key={"test": "tiny"}, verbose=v),
    "simclr": lambda v: recipes.train_fashion_simclr(verbose=v),
    "scan": lambda v: recipes.train_fashion_scan(verbose=v),
    "fixmatch": lambda v: recipes.train_few_label_classifier("fixmatch", 1, 0, verbose=v),
    "sgan": lambda v: recipes.train_few_label_classifier("sgan", 1, 0, verbose=v),
    "m2": lambda v: recipes.train_few_label_classifier("m2", 1, 0, verbose=v),
    "dense_vae": lambda v: recipes.train_dense_vae("tiny_dense_vae", 2, beta=4.0, verbose=v),
    "mnist_vae": lambda v: recipes.train_mnist_vae("mnist_5k", verbose=v),
    "simclr_twin_ae": lambda v: recipes.train_simclr_twin_ae(verbose=v),
    "diffusion": lambda v: recipes.train_diffusion(verbose=v),
    "masked_ae": lambda v: recipes.train_masked_ae(verbose=v),
    "masked_ae_complete": lambda v: recipes.train_masked_ae(complete=True, verbose=v),
    "beta_vae": lambda v: recipes.train_beta_vae(4.0, verbose=v),
    "overfit_ae": lambda v: recipes.train_overfit_ae(30, verbose=v),
    "gan_recipe": lambda v: recipes.train_gan_recipe(("hinge", "R1"), epochs=1, n_train=128, verbose=v),
    "cas": lambda v: recipes.train_cas_classifier(
        recipes.train_gan_recipe(conditional=True, epochs=1, n_train=128, verbose=False)[0], "tiny_cgan", verbose=v),
}


#: Recipes the progress test reaches through another: the Chapter 3 helper through the four
#: recipes that call it, the DCGAN's through train_gan, the SGAN's and M2's through
#: train_few_label_classifier.
REACHED_THROUGH_ANOTHER = {"train_chapter3_ae", "train_fashion_dcgan", "train_sgan_classifier",
                           "train_m2_classifier"}


def test_the_progress_test_runs_every_recipe():
    import inspect

    recipes_defined = {name for name, f in vars(recipes).items()
                       if name.startswith("train_") and inspect.isfunction(f) and f.__module__ == recipes.__name__}
    source = inspect.getsource(sys.modules[__name__])
    runs = source[source.index("RUNS = {"):source.index("\n}\n", source.index("RUNS = {"))]
    called = set(re.findall(r"recipes\.(train_\w+)", runs))
    assert recipes_defined - called - REACHED_THROUGH_ANOTHER == set()
    assert REACHED_THROUGH_ANOTHER <= recipes_defined


@pytest.mark.parametrize("recipe", sorted(RUNS))
def test_a_recipe_prints_one_progress_line_an_epoch(tiny, capsys, recipe):
    RUNS[recipe](True)
    out = capsys.readouterr().out
    lines = [m.groupdict() for m in LINE.finditer(out)]
    assert lines, out
    last = lines[-1]
    assert last["epoch"] == last["total"] and last["left"] == "0"
    assert re.search(r"(loss|accuracy) -?\d", last["numbers"]), last
    assert "uvbook: trained" in out


@pytest.mark.parametrize("call, message", [
    (lambda: recipes.train_dense_vae("tiny_dense_vae", 0), "latent_dim must be a positive integer; got 0"),
    (lambda: recipes.train_dense_vae("tiny_dense_vae", 2, epochs=1.5), "epochs must be a positive integer; got 1.5"),
    (lambda: recipes.train_dense_vae("tiny_dense_vae", 2, beta=0.0), "beta must be in (0, inf); got 0.0"),
    (lambda: recipes.train_dense_vae("tiny_dense_vae", 2, beta="4"), "beta must be in (0, inf); got '4'"),
    (lambda: recipes.train_dense_vae("../dense_vae", 2), "name must be a non-empty file-name-safe string"),
    (lambda: recipes.train_mnist_vae("fashion_mnist"), "dataset must be one of ('mnist', 'mnist_5k'); got 'fashion_mnist'"),
    (lambda: recipes.train_masked_ae(complete="yes"), "complete must be True or False; got 'yes'"),
    (lambda: recipes.train_beta_vae(0.0), "beta must be in (0, inf); got 0.0"),
    (lambda: recipes.train_beta_vae("4"), "beta must be in (0, inf); got '4'"),
    (lambda: recipes.train_overfit_ae(0), "n_train must be a positive integer; got 0"),
    (lambda: recipes.train_overfit_ae(30.0), "n_train must be a positive integer; got 30.0"),
    (lambda: recipes.train_sparse_ae("l2"), "variant must be one of ('none', 'l1', 'kl'); got 'l2'"),
    (lambda: recipes.train_code_size_ae(0), "code_dim must be a positive integer; got 0"),
    (lambda: recipes.train_code_size_ae(8.0), "code_dim must be a positive integer; got 8.0"),
    (lambda: recipes.train_anomaly_ae(10), "held_out must be a class label from 0 to 9; got 10"),
    (lambda: recipes.train_anomaly_ae("8"), "held_out must be a class label from 0 to 9; got '8'"),
])
def test_a_recipe_names_a_bad_argument_and_trains_nothing(tiny, tmp_path, call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
    assert list(tmp_path.iterdir()) == []


def test_the_mnist_split_names_a_bad_dataset():
    with pytest.raises(ValueError, match=re.escape("dataset must be one of ('mnist', 'mnist_5k'); got 'emnist'")):
        recipes.mnist_vae_split("emnist")


def test_a_quiet_recipe_prints_nothing(tiny, capsys):
    recipes.train_fashion_cnn(verbose=False)
    assert capsys.readouterr().out == ""


def test_epoch_log_estimates_the_time_left_from_the_epochs_done(monkeypatch):
    clock = iter([100.0, 110.0, 130.0])  # train begins; epoch 1 ends after 10 s; epoch 2 after 30 s
    monkeypatch.setattr("uvbook.callbacks.time.perf_counter", lambda: next(clock))
    printed = []
    log = EpochLog("m", print_fn=printed.append)
    log.set_params({"epochs": 4})
    log.on_train_begin()
    log.on_epoch_end(0, {"loss": 2.0, "elapsed": 9.0, "knn": float("nan")})
    log.on_epoch_end(1, {"loss": 1.5})
    assert printed == ["m  epoch 1/4  loss 2  |  10 s spent, about 30 s left",
                       "m  epoch 2/4  loss 1.5  |  30 s spent, about 30 s left"]


def test_the_code_size_sweep_trains_on_the_chapters_subset(tiny):
    # the draw Chapter 3 made before the sweep moved here: sorted, without replacement, seed 0
    x, _ = recipes.chapter3_images()
    assert len(x) == 200
    expected = x[np.sort(np.random.default_rng(0).choice(200, 100, replace=False))]
    np.testing.assert_array_equal(recipes.code_size_images(), expected)


@pytest.mark.parametrize("call, message", [
    (lambda: recipes.diffusion_batches(np.zeros((4, 28, 28, 1), np.float32) + 2.0, 2, 10), "x0 must"),
    (lambda: recipes.diffusion_batches(np.zeros((4, 28, 28, 1), np.float32), 0, 10),
     "batch_size must be a positive integer; got 0"),
    (lambda: recipes.diffusion_batches(np.zeros((4, 28, 28, 1), np.float32), 2, 1.5),
     "steps must be a positive integer; got 1.5"),
    (lambda: recipes.masked_ae_split(-1), "n_test must be a non-negative integer; got -1"),
    (lambda: recipes.masked_ae_split(2.0), "n_test must be a non-negative integer; got 2.0"),
])
def test_chapter_8_data_helpers_name_a_bad_argument(tiny, call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_the_diffusion_batches_are_the_chapters_draws():
    # the draws of Chapter 8's loop before it moved here: per step the indices, the steps, the noise
    x0 = np.linspace(-1, 1, 5 * 784, dtype=np.float32).reshape(5, 28, 28, 1)
    batches = recipes.diffusion_batches(x0, 3, 500, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(2):
        x, t, eps = next(batches)
        idx = rng.integers(0, 5, 3)
        np.testing.assert_array_equal(t, rng.integers(0, 500, 3))
        np.testing.assert_array_equal(x, x0[idx])
        np.testing.assert_array_equal(eps, rng.standard_normal((3, 28, 28, 1)).astype(np.float32))


def test_the_masked_split_draws_the_test_mask_after_the_training_mask(tiny):
    x, mask, test_mask = recipes.masked_ae_split(n_test=7)
    rng = np.random.default_rng(0)
    from uvbook.models.masked import patch_mask
    np.testing.assert_array_equal(mask, patch_mask(x.shape, 0.5, rng))
    np.testing.assert_array_equal(test_mask, patch_mask((7, 28, 28, 1), 0.5, rng))
    assert len(x) == 200 and set(np.unique(mask)) == {0.0, 1.0}


def test_the_diffusion_history_keeps_every_steps_loss(tiny):
    _, history = recipes.train_diffusion(verbose=False)
    assert len(history["step_loss"]) == 4 and len(history["loss"]) == 2
    assert np.isclose(history["loss"][-1], np.mean(history["step_loss"][-2:]), rtol=1e-6)


@pytest.mark.parametrize("method", ["supervised", "finetune"])
def test_a_few_label_run_is_trained_again_when_its_settings_change(tiny, capsys, monkeypatch, method):
    """The labelled-only rows read FIXMATCH_CONFIG's rate, augmentation and dropout: a change
    there must not load a model trained with the old settings from the cache."""
    recipes.train_few_label_classifier(method, 1, 0, verbose=True)
    recipes.train_few_label_classifier(method, 1, 0, verbose=True)
    out = capsys.readouterr().out
    assert out.count(f"uvbook: trained ch7_{method}") == 1 and f"uvbook: loaded ch7_{method}" in out, out
    monkeypatch.setitem(recipes.FIXMATCH_CONFIG, "learning_rate", recipes.FIXMATCH_CONFIG["learning_rate"] / 10)
    recipes.train_few_label_classifier(method, 1, 0, verbose=True)
    assert f"uvbook: trained ch7_{method}" in capsys.readouterr().out


def test_fixmatch_trains_the_steps_asked_for(tiny, capsys):
    """``steps`` sets FixMatch's length (ten reports a run) and gets a cache entry of its own."""
    _, history = recipes.train_few_label_classifier("fixmatch", 1, 0, verbose=True, steps=20)
    assert len(history["watch_accuracy"]) == 10 and len(history["mask_rate"]) == 10
    _, default = recipes.train_few_label_classifier("fixmatch", 1, 0, verbose=True)
    assert len(default["watch_accuracy"]) == recipes.semisup_sizes()["steps"] // recipes.semisup_sizes()["report_every"]
    assert capsys.readouterr().out.count("uvbook: trained ch7_fixmatch_k1_s0") == 2
