"""Fixtures shared by the unit tests."""
import keras
import numpy as np
import pytest


@pytest.fixture
def tiny_job():
    """``(build, fit, calls)`` for :func:`uvbook.train.train_or_load`: a one-``Dense``-layer
    model trained for 2 epochs on 8 rows. Every ``build`` appends ``"build"`` to ``calls``,
    so a test can count how often the model was (re)trained."""
    calls = []

    def build():
        calls.append("build")
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        return model

    def fit(model):
        x = np.ones((8, 3), np.float32)
        return model.fit(x, x[:, :1], epochs=2, verbose=0)

    return build, fit, calls
