"""The latent-space explorer of Chapter 5's web page: the 2-D VAE's decoder, run in the reader's browser.

:func:`export_explorer` writes what the page's script (``book/_static/explorer.js``, a
forward pass of dense layers in plain JavaScript) needs, into one JavaScript file that the
page loads with a ``<script>`` tag: the decoder's weights in half precision, the test
images' codes and classes, and the geometry of the pad. A ``<script>`` tag (not ``fetch``)
works when the site is opened from the disk as well as from a server, and the file loads
nothing from anywhere else.

:func:`pad_point` is the one mapping between the pad's pixels and latent points; the
browser test clicks pixels and compares what the page draws with the Python decoder's
output at :func:`pad_point` of those pixels, which :func:`export_explorer` writes beside
(``reference.json``, not loaded by the page).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from uvbook.models.vae import VAE
from uvbook.validate import check_labels, check_number, check_positive_int

#: The pad's size in CSS pixels and the latent square it shows, ``[-radius, radius]^2``.
PAD_PIXELS = 320
#: Pixels of the pad (column, row from the top) at which the browser test decodes.
REFERENCE_PIXELS = ((60, 60), (160, 200), (250, 110))
#: The largest magnitude half precision holds; the exported weights must fit.
HALF_MAX = 65504.0
#: The explorer's data, a script the page loads (``window.UVBOOK_VAE2D = {...}``).
DATA_FILE = "vae2d.js"
#: The Python decoder's images at :data:`REFERENCE_PIXELS`, read by the browser test.
REFERENCE_FILE = "reference.json"


def pad_point(column: float, row: float, radius: float, pixels: int = PAD_PIXELS) -> tuple[float, float]:
    """The latent point ``(z1, z2)`` at the centre of pad pixel ``(column, row)`` (row 0 at the
    top; z2 grows upwards), for a pad of ``pixels`` x ``pixels`` over ``[-radius, radius]^2``."""
    check_positive_int(pixels, "pixels")
    radius = check_number(radius, "radius", 0.0, lo_open=True)
    for name, v in (("column", column), ("row", row)):
        check_number(v, name, 0, pixels, hi_open=True)
    step = 2.0 * radius / pixels
    return (-radius + (int(column) + 0.5) * step, radius - (int(row) + 0.5) * step)


def dense_layers(decoder: keras.Model) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """The decoder as a list of ``(kernel, bias, activation)``, in order; reshapes and linear
    activations are skipped (a reshape to 28x28x1 keeps the row-major pixel order).

    Raises:
        ValueError: a layer other than Dense, Reshape, Activation or the input, or an
            activation the explorer's script does not know.
    """
    known = {"relu", "sigmoid", "linear"}
    allowed = (keras.layers.InputLayer, keras.layers.Reshape, keras.layers.Activation, keras.layers.Dense)
    for layer in decoder.layers:
        if not isinstance(layer, allowed):
            raise ValueError(f"the explorer runs dense decoders only; layer {layer.name!r} is a "
                             f"{type(layer).__name__}")
    out: list[tuple[np.ndarray, np.ndarray, str]] = []
    reshaped = False
    for layer in decoder.layers:
        if isinstance(layer, keras.layers.Reshape):
            reshaped = True
        if isinstance(layer, (keras.layers.InputLayer, keras.layers.Reshape)):
            continue
        if reshaped and isinstance(layer, keras.layers.Dense):
            raise ValueError(f"the explorer's decoder may reshape only after its last dense layer; "
                             f"{layer.name!r} comes after a reshape")
        if isinstance(layer, keras.layers.Activation):
            name = keras.activations.serialize(layer.activation)
            name = name if isinstance(name, str) else name.get("config", {}).get("name", str(name))
            if name != "linear":
                raise ValueError(f"the explorer's decoder may end in a linear activation only; got {name!r}")
            continue
        name = keras.activations.serialize(layer.activation)
        name = name if isinstance(name, str) else name.get("config", {}).get("name", str(name))
        if name not in known:
            raise ValueError(f"activation of layer {layer.name!r} must be one of {sorted(known)}; got {name!r}")
        kernel = np.asarray(layer.kernel, dtype=np.float32)
        bias = np.asarray(layer.bias, dtype=np.float32) if layer.use_bias else np.zeros(kernel.shape[1], np.float32)
        out.append((kernel, bias, name))
    width = 2
    for kernel, _, _ in out:
        if kernel.shape[0] != width:
            raise ValueError(f"the decoder's dense layers must chain from the 2-D code; a layer takes "
                             f"{kernel.shape[0]} inputs after {width}")
        width = kernel.shape[1]
    return out


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def export_explorer(vae: VAE, codes, labels, class_names: Sequence[str], folder: str | Path,
                    radius: float = 3.0) -> dict[str, Path]:
    """Write the explorer's data for ``vae`` (a dense VAE with a 2-D code) into ``folder``.

    ``codes`` (N, 2) are the test images' posterior means and ``labels`` their classes,
    drawn on the pad as coloured points; ``radius`` sets the pad's latent square. Writes
    :data:`DATA_FILE` (``window.UVBOOK_VAE2D = {...}``: layers with half-precision weights
    in base64, points, classes, pad geometry, the output nonlinearity) and
    :data:`REFERENCE_FILE` (the Python decoder's images at :data:`REFERENCE_PIXELS`).
    Returns their paths.

    Raises:
        ValueError: a VAE whose code is not 2-D, whose decoder is not dense or does not draw
            28x28 images, or whose weights do not fit half precision; codes not shaped (N, 2)
            or not finite; class names that are not 1 to 256 strings; labels of another length
            or outside the classes.
    """
    if not isinstance(vae, VAE):
        raise ValueError(f"vae must be a uvbook VAE; got {type(vae).__name__}")
    if vae.latent_dim != 2:
        raise ValueError(f"the explorer needs a 2-D code; got a VAE with latent_dim={vae.latent_dim}")
    codes = np.asarray(codes, dtype=np.float32)
    if codes.ndim != 2 or codes.shape[1] != 2 or not len(codes):
        raise ValueError(f"codes must be a finite (N, 2) array; got shape {codes.shape}")
    if not np.all(np.isfinite(codes)):
        raise ValueError(f"codes must be finite; got {int(np.sum(~np.isfinite(codes)))} values that are not")
    if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names) \
            or not 0 < len(class_names) <= 256:
        raise ValueError(f"class_names must be 1 to 256 strings; got {class_names!r}")
    labels = check_labels(labels, "labels", length=len(codes))
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise ValueError(f"labels must be in 0..{len(class_names) - 1} (one a class name); got values "
                         f"from {labels.min()} to {labels.max()}")
    radius = check_number(radius, "radius", 0.0, lo_open=True)
    layers = dense_layers(vae.decoder)
    if layers[-1][0].shape[1] != 28 * 28 or tuple(vae.image_shape) != (28, 28, 1):
        raise ValueError(f"the explorer draws 28x28 grey images; got a decoder of {layers[-1][0].shape[1]} "
                         f"outputs for images shaped {tuple(vae.image_shape)}")
    largest = max(float(np.max(np.abs(w))) for k, b, _ in layers for w in (k, b))
    if largest > HALF_MAX:
        raise ValueError(f"the weights must fit half precision (|w| <= {HALF_MAX}); got a weight of {largest:g}")
    output = "sigmoid" if vae.likelihood == "bernoulli" else "clip"
    data = {
        "format": "uvbook latent explorer 1",
        "layers": [{"inputs": int(k.shape[0]), "units": int(k.shape[1]), "activation": act,
                    "kernel": _b64(k, "<f2"), "bias": _b64(b, "<f2")} for k, b, act in layers],
        "output": output, "image": [28, 28],
        "pad": {"pixels": PAD_PIXELS, "radius": float(radius)},
        "points": _b64(codes, "<f2"), "classes": _b64(labels, "u1"), "class_names": list(class_names),
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / DATA_FILE
    script.write_text("// Written by uvbook.explorer.export_explorer from Chapter 5's 2-D VAE; read by "
                      "_static/explorer.js.\nwindow.UVBOOK_VAE2D = " + json.dumps(data) + ";\n", encoding="utf-8")
    points = [pad_point(c, r, radius) for c, r in REFERENCE_PIXELS]
    # the page shows probabilities in [0, 1]; a Gaussian decoder's means are clipped there, as on the page
    images = np.clip(vae.decode(np.asarray(points, dtype=np.float32))[..., 0], 0.0, 1.0)
    reference = folder / REFERENCE_FILE
    reference.write_text(json.dumps({"pixels": [list(p) for p in REFERENCE_PIXELS], "points": points,
                                     "images": np.round(images, 6).tolist()}), encoding="utf-8")
    return {"data": script, "reference": reference}


def read_export(path: str | Path) -> dict:
    """The data object of a file written by :func:`export_explorer`."""
    text = Path(path).read_text(encoding="utf-8")
    start = text.index("window.UVBOOK_VAE2D = ") + len("window.UVBOOK_VAE2D = ")
    return json.loads(text[start:text.rindex(";")])


def decode_export(data: dict, z) -> np.ndarray:
    """What the page's script computes, in NumPy: the exported (half-precision) decoder's images
    (N, 28, 28) for latent points ``z`` (N, 2). The notebook checks it against the Keras model."""
    h = np.asarray(z, dtype=np.float32)
    if h.ndim != 2 or h.shape[1] != 2:
        raise ValueError(f"z must be an (N, 2) array of latent points; got shape {h.shape}")
    for layer in data["layers"]:
        kernel = np.frombuffer(base64.b64decode(layer["kernel"]), "<f2").astype(np.float32)
        bias = np.frombuffer(base64.b64decode(layer["bias"]), "<f2").astype(np.float32)
        h = h @ kernel.reshape(layer["inputs"], layer["units"]) + bias
        if layer["activation"] == "relu":
            h = np.maximum(h, 0.0)
        elif layer["activation"] == "sigmoid":
            h = 1.0 / (1.0 + np.exp(-h))
    h = 1.0 / (1.0 + np.exp(-h)) if data["output"] == "sigmoid" else np.clip(h, 0.0, 1.0)
    return h.reshape(len(h), *data["image"])
