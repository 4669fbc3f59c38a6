"""The small supervised CNN of Chapter 2: the upper bound trained on all labels.

Later chapters reuse it as a *domain classifier* (its penultimate features give a
Fréchet distance on Fashion-MNIST), so its layers carry stable names.
"""

from __future__ import annotations

import keras
from keras import layers

from uvbook.validate import check_positive_int


def build_cnn_classifier(num_classes: int = 10, input_shape=(28, 28, 1),
                         width: int = 32, dropout: float = 0.3, logits: bool = False) -> keras.Model:
    """Two conv blocks (``width`` and 2×``width`` filters), a 128-unit dense layer, softmax.

    The dense layer is named ``"features"``: its activations are the classifier's
    representation. Compile and ``fit`` it like any Keras model. With ``logits=True`` the
    last layer has no softmax (what :class:`uvbook.models.semisup.FixMatch` trains).
    """
    check_positive_int(num_classes, "num_classes")
    check_positive_int(width, "width")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
    if len(input_shape) != 3 or input_shape[-1] != 1:
        raise ValueError(f"input_shape must be (height, width, 1); got {input_shape!r}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, filters in enumerate((width, 2 * width)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}a")(x)
        x = layers.BatchNormalization(name=f"bn{i}a")(x)
        x = layers.ReLU(name=f"relu{i}a")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}b")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="dropout0")(x)
    x = layers.Dense(128, activation="relu", name="features")(x)
    x = layers.Dropout(dropout, name="dropout1")(x)
    outputs = layers.Dense(num_classes, activation=None if logits else "softmax",
                           name="logits" if logits else "probs")(x)
    return keras.Model(inputs, outputs, name="cnn_classifier")
