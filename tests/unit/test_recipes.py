"""uvbook.recipes: every recipe shows its progress, one line an epoch, and only when asked.

Each recipe is run for one epoch on a few images (its sizes patched down) into a temporary
model cache; the lines it prints are what a reader sees in Jupyter.
"""

from __future__ import annotations

import re

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
    monkeypatch.setattr(recipes, "fashion_vae_sizes", lambda: {
        "n_train": 200, "n_val": 100, "epochs": 1, "batch_size": 64, "seed": 0})
    monkeypatch.setattr(recipes, "fashion_simclr_sizes", lambda: {
        "n_train": 300, "n_monitor": 50, "epochs": 1, "batch_size": 64, "seed": 0})
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


RUNS = {
    "cnn": lambda v: recipes.train_fashion_cnn(verbose=v),
    "conv_ae": lambda v: recipes.chapter3_model("conv_ae_32", verbose=v),
    "vae": lambda v: recipes.train_fashion_vae(verbose=v),
    # train_fashion_dcgan is train_gan with Chapter 4's DCGAN (and a Fréchet monitor that costs more than the test)
    "dcgan": lambda v: recipes.train_gan("tiny_dcgan", recipes.build_fashion_dcgan, load_dataset("fashion_mnist", n=128)[0],
                                         epochs=1, batch_size=32, key={"test": "tiny"}, verbose=v),
    "simclr": lambda v: recipes.train_fashion_simclr(verbose=v),
    "fixmatch": lambda v: recipes.train_few_label_classifier("fixmatch", 1, 0, verbose=v),
    "sgan": lambda v: recipes.train_few_label_classifier("sgan", 1, 0, verbose=v),
    "m2": lambda v: recipes.train_few_label_classifier("m2", 1, 0, verbose=v),
    "dense_vae": lambda v: recipes.train_dense_vae("tiny_dense_vae", 2, beta=4.0, verbose=v),
    "mnist_vae": lambda v: recipes.train_mnist_vae("mnist_5k", verbose=v),
    "simclr_twin_ae": lambda v: recipes.train_simclr_twin_ae(verbose=v),
}


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
