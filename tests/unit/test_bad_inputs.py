"""Bad inputs across uvbook's public functions.

Every case must raise a ValueError (an OSError for an unwritable folder) whose message
names both what was expected and what was given, and must leave nothing behind: the test
runs in a sandbox folder (the working directory and ``UVBOOK_CACHE_DIR``) whose content,
sizes and modification times are compared before and after. Nothing here trains beyond
building a tiny model.
"""


import keras
import numpy as np
import pytest

from uvbook import callbacks as cb
from uvbook import data, evaluate, plots, recipes, train
from uvbook.models.autoencoder import Autoencoder, corrupt
from uvbook.models.contrastive import build_simclr
from uvbook.models.gan import GAN, build_dcgan_discriminator, build_dcgan_generator, sample_noise
from uvbook.models.semisup import FixMatch, fixmatch_loss, semisup_pipeline
from uvbook.models.vae import binarize, build_vae
from uvbook.recipes import chapter3_model, train_fashion_dcgan, train_few_label_classifier, train_gan

GOOD = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
LABELS = np.array([0, 0, 1, 1, 2])


def _gan():
    return GAN(build_dcgan_generator(4, filters=(4, 4)), build_dcgan_discriminator(filters=(4, 4)), 4)


def _never(*_):
    raise AssertionError("must not be called: the input should have been refused first")


def _train_or_load(tmp, **kwargs):
    args = {"name": "tiny", "build": _never, "train": _never, "key": {"k": 1}, "folder": tmp / "cache",
            "verbose": False, **kwargs}
    return train.train_or_load(**args)


def _train_gan(tmp, images=GOOD, epochs=1, batch_size=2, **kwargs):
    return train_gan("gan", _never, images, epochs, batch_size, {"k": 1}, folder=tmp / "cache",
                     verbose=False, **kwargs)


def _with(value, index, x=GOOD):
    out = x.copy()
    out.flat[index] = value
    return out


CASES = [
    # ---- images: rank, channels, dtype, range, NaN, empty ---------------------------------
    pytest.param(lambda t: binarize(np.zeros((4, 28, 28, 3), np.float32)), ValueError,
                 r"grey-scale images shaped \(N, height, width, 1\)", r"shape \(4, 28, 28, 3\)", id="rgb-binarize"),
    pytest.param(lambda t: Autoencoder.dense(2, hidden=(8,)).encode(GOOD[None]), ValueError,
                 r"images shaped \(N, 28, 28, 1\)", r"shape \(1, 4, 28, 28, 1\)", id="rank5-ae-encode"),
    pytest.param(lambda t: plots.image_grid((GOOD * 255).astype(np.uint8)), ValueError,
                 r"floating-point pixels in \[0, 1\] \(divide uint8 pixels by 255\)", "dtype uint8", id="uint8-image-grid"),
    pytest.param(lambda t: build_simclr(filters=(4, 4), head_hidden=4,
                                        projection_dim=2).encode((GOOD * 255).astype(np.uint8)), ValueError,
                 r"floating-point pixels in \[0, 1\]", "dtype uint8", id="uint8-simclr-encode"),
    pytest.param(lambda t: _train_gan(t, images=np.full((4, 28, 28, 1), 2.0, np.float32)), ValueError,
                 r"must lie in \[0, 1\]", "values from 2 to 2", id="range-train-gan"),
    pytest.param(lambda t: _gan().discriminate(np.full((2, 28, 28, 1), -1.0, np.float32)), ValueError,
                 r"must lie in \[0, 1\]", "values from -1 to -1", id="range-discriminate"),
    pytest.param(lambda t: _train_gan(t, images=_with(np.nan, 5)), ValueError,
                 "must be finite", "1 NaN/inf values", id="nan-train-gan"),
    pytest.param(lambda t: build_vae(2, "dense", hidden=(8,)).decode(np.array([[0.0, np.nan]])), ValueError,
                 "z must be finite", "NaN", id="nan-vae-decode"),
    pytest.param(lambda t: _train_gan(t, images=np.zeros((0, 28, 28, 1), np.float32)), ValueError,
                 "at least one image", r"empty array \(0, 28, 28, 1\)", id="empty-train-gan"),
    pytest.param(lambda t: evaluate.frechet_distance(np.zeros((0, 3)), np.zeros((4, 3))), ValueError,
                 r"non-empty \(examples, features\) matrix", r"shape \(0, 3\)", id="empty-frechet"),
    pytest.param(lambda t: evaluate.reconstruction_mse(np.zeros((2, 4)), np.zeros((2, 5))), ValueError,
                 r"x_hat must have the shape of x \(2, 4\)", r"got \(2, 5\)", id="shape-mismatch-mse"),
    # ---- labels: wrong length, k too large --------------------------------------------------
    pytest.param(lambda t: evaluate.nmi([0, 1, 2], [0, 1]), ValueError,
                 r"one label per example \(3\)", "got 2", id="labels-length-nmi"),
    pytest.param(lambda t: evaluate.linear_probe(np.zeros((6, 2)), LABELS, np.zeros((2, 2)), [0, 1], 1),
                 ValueError, "train_x must have 5 rows", "got 6", id="labels-length-probe"),
    pytest.param(lambda t: plots.scatter_by_class(np.zeros((4, 2)), [0, 1, 2]), ValueError,
                 "points must have 3 rows", "got 4", id="labels-length-scatter"),
    pytest.param(lambda t: evaluate.linear_probe(np.random.rand(5, 2), LABELS, np.zeros((2, 2)), [0, 1], 2),
                 ValueError, r"at most the size of the smallest class \(1, class 2\)", "got 2",
                 id="k-above-class-size-probe"),
    pytest.param(lambda t: evaluate.retrieval_precision_at_k(np.zeros((3, 2)), [0, 1, 1], k=5,
                                                             query_features=np.zeros((1, 2)), query_labels=[0]),
                 ValueError, r"k must be at most the number of items \(3\)", "got 5", id="k-above-items-retrieval"),
    pytest.param(lambda t: data.few_labels(LABELS, -2), ValueError,
                 "per_class must be a positive integer", "got -2", id="negative-per-class"),
    # ---- names --------------------------------------------------------------------------------
    pytest.param(lambda t: data.class_names("cifar10"), ValueError,
                 "known datasets: fashion_mnist, mnist, mnist_5k", "'cifar10'", id="unknown-dataset"),
    pytest.param(lambda t: chapter3_model("resnet"), ValueError,
                 r"one of \('conv_ae_32', 'denoising_ae_32'\)", "got 'resnet'", id="unknown-model"),
    pytest.param(lambda t: corrupt(GOOD, "poisson"), ValueError,
                 r"noise must be one of \('gaussian', 'masking', 'salt_pepper'\)", "got 'poisson'",
                 id="unknown-noise"),
    pytest.param(lambda t: _train_or_load(t, name="../evil"), ValueError,
                 "file-name-safe string", r"got '\.\./evil'", id="unsafe-cache-name"),
    # ---- counts and settings ----------------------------------------------------------------
    pytest.param(lambda t: _train_gan(t, epochs=-1), ValueError,
                 "epochs must be a positive integer", "got -1", id="negative-epochs-train-gan"),
    pytest.param(lambda t: recipes.domain_classifier(epochs=-3, folder=t / "cache", verbose=False), ValueError,
                 "epochs must be a positive integer", "got -3", id="negative-epochs-classifier"),
    pytest.param(lambda t: train_fashion_dcgan(epochs=-1, folder=t / "cache", verbose=False), ValueError,
                 "epochs must be a positive integer", "got -1", id="negative-epochs-dcgan"),
    pytest.param(lambda t: _train_gan(t, batch_size=0), ValueError,
                 "batch_size must be a positive integer", "got 0", id="zero-batch-size"),
    pytest.param(lambda t: _gan().generate(0), ValueError, "n must be a positive integer", "got 0",
                 id="zero-samples"),
    pytest.param(lambda t: sample_noise(3, -1), ValueError, "latent_dim must be a positive integer", "got -1",
                 id="negative-latent-dim"),
    pytest.param(lambda t: corrupt(GOOD, "masking", level=1.5), ValueError,
                 r"level must be in \[0, 1\]", "got 1.5", id="masking-level"),
    pytest.param(lambda t: _train_or_load(t, key=[1, 2]), ValueError,
                 "non-empty mapping", r"got \[1, 2\]", id="key-not-a-mapping"),
    pytest.param(lambda t: _train_or_load(t, build="model"), ValueError,
                 "build must be a callable", "got str", id="build-not-callable"),
    pytest.param(lambda t: cb.resumable(42), ValueError, r"path \(str or os.PathLike\)", "got 42",
                 id="backup-folder-not-a-path"),
    pytest.param(lambda t: cb.EpochCheckpoint(t / "backup", data=5), ValueError,
                 "tf.data.Dataset given to fit", "got int", id="checkpoint-data-not-a-dataset"),
    pytest.param(lambda t: cb.CollapseGuard(threshold=1.5), ValueError,
                 r"probability in \(0, 1\)", "got 1.5", id="collapse-threshold"),
    pytest.param(lambda t: _train_gan(t, collapse_patience=0), ValueError,
                 "collapse_patience must be a positive integer", "got 0", id="collapse-patience"),
    # ---- semi-supervised learning (Chapter 7) -----------------------------------------------
    pytest.param(lambda t: semisup_pipeline(GOOD, np.array([0, 1, 2, 10]), GOOD, n_classes=10), ValueError,
                 r"classes in 0\.\.9", "values from 0 to 10", id="semisup-label-out-of-range"),
    pytest.param(lambda t: semisup_pipeline(GOOD, np.array([0, 2, 2, 0]), GOOD), ValueError,
                 r"every class 0\.\.2", r"none of \[1\]", id="semisup-class-missing"),
    pytest.param(lambda t: semisup_pipeline(GOOD, np.array([0, 1, 0, 1]), np.zeros((4, 32, 32, 1), np.float32)),
                 ValueError, "must have one shape", r"\(28, 28, 1\) and \(32, 32, 1\)", id="semisup-shapes"),
    pytest.param(lambda t: fixmatch_loss(np.zeros((2, 3)), np.zeros((2, 3)), threshold=1.0), ValueError,
                 r"in \(0, 1\)", "got 1.0", id="fixmatch-threshold"),
    pytest.param(lambda t: FixMatch(keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                                      keras.layers.Dense(2)]), threshold=0.0), ValueError,
                 r"in \(0, 1\)", "got 0.0", id="fixmatch-model-threshold"),
    pytest.param(lambda t: train_few_label_classifier("supervised", 100000, 0, verbose=False), ValueError,
                 "per_class must be at most the size of the smallest class", "got 100000",
                 id="semisup-recipe-too-many-labels"),
    pytest.param(lambda t: train_few_label_classifier("finetune", 10, 0, verbose=False, steps=100), ValueError,
                 "steps can be set for method 'fixmatch' only", "got steps=100 for 'finetune'",
                 id="semisup-recipe-steps-method"),
    pytest.param(lambda t: train_few_label_classifier("fixmatch", 10, 0, verbose=False, steps=125), ValueError,
                 "steps must be a multiple of 10", "got 125", id="semisup-recipe-steps-multiple"),
    pytest.param(lambda t: train_few_label_classifier("fixmatch", 10, 0, verbose=False, steps=0), ValueError,
                 "steps must be a positive integer", "got 0", id="semisup-recipe-steps-positive"),
    # ---- unwritable cache folders (a path under a regular file: refused even for root) -----------
    pytest.param(lambda t: _train_or_load(t, folder=t / "file" / "sub"), OSError,
                 r"to a writable folder", r"cache folder \S*/file/sub cannot be created",
                 id="unwritable-train-or-load"),
    pytest.param(lambda t: train_gan("gan", _never, GOOD, 1, 2, {"k": 1}, folder=t / "file" / "sub", verbose=False),
                 OSError, r"to a writable folder", r"cache folder \S*/file/sub cannot be created",
                 id="unwritable-train-gan"),
    pytest.param(lambda t: chapter3_model("conv_ae_32", verbose=False), OSError,
                 r"to a writable folder", r"cache folder \S*/file/env-cache cannot be created",
                 id="unwritable-env-cache"),
]


def _tree(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A folder holding one regular file (the blocker for the unwritable cases); also cwd and cache."""
    (tmp_path / "file").write_text("a regular file, not a folder")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UVBOOK_CACHE_DIR", str(tmp_path / "file" / "env-cache"))
    return tmp_path


#: The cases whose function writes when its input is good (into the model cache, the sandbox's
#: cache or backup folder, or the cache of UVBOOK_CACHE_DIR): for them, a refusal must leave no
#: file behind. The other cases are pure functions, for which the check would hold trivially.
WRITERS = {"range-train-gan", "nan-train-gan", "empty-train-gan", "unknown-model", "unsafe-cache-name",
           "negative-epochs-train-gan", "negative-epochs-classifier", "negative-epochs-dcgan", "zero-batch-size",
           "key-not-a-mapping", "build-not-callable", "checkpoint-data-not-a-dataset", "collapse-patience",
           "semisup-recipe-too-many-labels", "unwritable-train-or-load", "unwritable-train-gan",
           "unwritable-env-cache"}


@pytest.mark.parametrize("call, error, expected, given", CASES)
def test_bad_input_is_refused_naming_expected_and_given(sandbox, call, error, expected, given, request):
    before = _tree(sandbox)
    with pytest.raises(error, match=expected) as err:
        call(sandbox)
    err.match(given)
    if request.node.callspec.id in WRITERS:
        assert _tree(sandbox) == before, "nothing may be written or half-written"


def test_every_writer_is_a_case():
    assert WRITERS <= {c.id for c in CASES}


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)


def test_a_valid_call_after_the_refusals_still_works(sandbox):
    """The checks are not over-eager: the same functions accept good input."""
    assert binarize(GOOD).shape == GOOD.shape
    assert evaluate.nmi([0, 1, 2], [2, 0, 1]) == pytest.approx(1.0)
    assert len(data.few_labels(LABELS, 1)) == 3
    assert isinstance(cb.resumable(sandbox / "backup")[1], cb.EpochCheckpoint)
    assert keras.ops.convert_to_numpy(corrupt(GOOD, "masking", level=1.0)).max() == 0.0
