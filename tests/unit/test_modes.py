"""uvbook.modes: the mode switch and seeding."""

import numpy as np
import pytest

from uvbook import modes


@pytest.mark.parametrize("value, quick", [("1", True), ("true", True), ("0", False), ("", False)])
def test_mode_follows_the_environment(monkeypatch, value, quick):
    monkeypatch.setenv("UVBOOK_QUICK", value)
    assert modes.is_quick() is quick
    assert modes.by_mode(quick="q", full="f") == ("q" if quick else "f")
    assert modes.mode_name() == ("quick" if quick else "full")


def test_unset_means_full(monkeypatch):
    monkeypatch.delenv("UVBOOK_QUICK", raising=False)
    assert modes.mode_name() == "full"


def test_a_typo_in_the_mode_is_an_error(monkeypatch):
    monkeypatch.setenv("UVBOOK_QUICK", "quick")
    with pytest.raises(ValueError, match="UVBOOK_QUICK must be one of .* got 'quick'"):
        modes.is_quick()


def test_set_seed_makes_numpy_and_keras_repeat():
    import keras

    modes.set_seed(7)
    a, ka = np.random.rand(3), keras.random.normal((3,)).numpy()
    modes.set_seed(7)
    b, kb = np.random.rand(3), keras.random.normal((3,)).numpy()
    assert np.array_equal(a, b) and np.array_equal(ka, kb)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_set_seed_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="non-negative integer"):
        modes.set_seed(seed)
