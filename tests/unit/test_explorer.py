"""uvbook.explorer: the decoder Chapter 5's web page runs is the one the chapter trained."""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from uvbook.explorer import (PAD_PIXELS, REFERENCE_PIXELS, decode_export, dense_layers,  # noqa: E402
                             export_explorer, pad_point, read_export)
from uvbook.models.vae import build_vae  # noqa: E402
from uvbook.modes import set_seed  # noqa: E402

NAMES = [f"class {c}" for c in range(10)]


@pytest.fixture(scope="module")
def vae2d():
    set_seed(0)
    return build_vae(latent_dim=2, architecture="dense", hidden=(16, 8), seed=0)


def test_pad_pixels_map_to_the_centres_of_their_latent_cells():
    assert pad_point(0, 0, 3.0, pixels=6) == (-2.5, 2.5)          # top left: z1 smallest, z2 largest
    assert pad_point(5, 5, 3.0, pixels=6) == (2.5, -2.5)
    assert pad_point(2.7, 3.2, 3.0, pixels=6) == (-0.5, -0.5)     # a fraction of a pixel is that pixel
    assert pad_point(5.9, 0, 3.0, pixels=6) == (2.5, 2.5)            # up to the pad's far edge
    with pytest.raises(ValueError, match="row"):
        pad_point(0, PAD_PIXELS, 3.0)


def test_the_exported_decoder_draws_what_keras_draws(vae2d, tmp_path):
    codes = np.random.default_rng(0).normal(size=(50, 2)).astype("float32")
    paths = export_explorer(vae2d, codes, np.arange(50) % 10, NAMES, tmp_path)
    data = read_export(paths["data"])
    assert [(l["inputs"], l["units"], l["activation"]) for l in data["layers"]] == \
        [(2, 8, "relu"), (8, 16, "relu"), (16, 784, "linear")]
    z = np.array([[0.0, 0.0], [1.5, -2.0], [-3.0, 3.0]], "float32")
    assert np.abs(decode_export(data, z) - vae2d.decode(z)[..., 0]).max() < 0.005
    reference = json.loads(paths["reference"].read_text())
    assert [tuple(p) for p in reference["pixels"]] == list(REFERENCE_PIXELS)
    again = vae2d.decode(np.asarray(reference["points"], "float32"))[..., 0]
    assert np.allclose(np.asarray(reference["images"]), again, atol=1e-5)


def test_export_refuses_what_the_page_cannot_run(vae2d, tmp_path):
    codes = np.zeros((4, 2), "float32")
    with pytest.raises(ValueError, match="2-D code; got a VAE with latent_dim=3"):
        export_explorer(build_vae(latent_dim=3, architecture="dense", hidden=(8,)), np.zeros((4, 3)), [0] * 4,
                        NAMES, tmp_path)
    with pytest.raises(ValueError, match=r"codes must be a finite \(N, 2\) array; got shape \(4, 3\)"):
        export_explorer(vae2d, np.zeros((4, 3)), [0] * 4, NAMES, tmp_path)
    with pytest.raises(ValueError, match="one label per example"):
        export_explorer(vae2d, codes, [0] * 3, NAMES, tmp_path)
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.9"):
        export_explorer(vae2d, codes, [0, 1, 2, 10], NAMES, tmp_path)
    nan_codes = codes.copy()
    nan_codes[1, 0] = np.nan
    with pytest.raises(ValueError, match="codes must be finite; got 1 values that are not"):
        export_explorer(vae2d, nan_codes, [0] * 4, NAMES, tmp_path)
    with pytest.raises(ValueError, match="class_names must be 1 to 256 strings"):
        export_explorer(vae2d, codes, [0] * 4, "abc", tmp_path)
    huge = build_vae(latent_dim=2, architecture="dense", hidden=(8,), seed=0)
    kernel = huge.decoder.layers[1].kernel
    kernel.assign(np.full(kernel.shape, 1e5, "float32"))
    with pytest.raises(ValueError, match=r"fit half precision \(\|w\| <= 65504"):
        export_explorer(huge, codes, [0] * 4, NAMES, tmp_path)
    conv = build_vae(latent_dim=2, architecture="conv", filters=(4, 8), dense_units=8)
    with pytest.raises(ValueError, match="dense decoders only"):
        dense_layers(conv.decoder)
    assert not list(tmp_path.iterdir())                            # nothing written on refusal
