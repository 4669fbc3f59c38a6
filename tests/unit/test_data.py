"""uvbook.data: verification, sources, subsets, shapes and errors."""

import gzip
import shutil

import numpy as np
import pytest

from uvbook import data
from uvbook.data import DEBIAN_FASHION_DIR, FASHION_MNIST_FILES

LABELS_STEM, LABELS_SHA = FASHION_MNIST_FILES[("test", "labels")]


@pytest.fixture(scope="module")
def real_labels_gz():
    """The smallest real Fashion-MNIST file, from whichever verified source `make` set up."""
    files = data.fashion_mnist_files(download=False)
    return files[("test", "labels")]


def test_verify_accepts_recompressed_copy(tmp_path, real_labels_gz):
    raw = gzip.decompress(real_labels_gz.read_bytes())
    recompressed = tmp_path / f"{LABELS_STEM}.gz"
    recompressed.write_bytes(gzip.compress(raw, compresslevel=1))
    plain = tmp_path / LABELS_STEM
    plain.write_bytes(raw)
    assert recompressed.read_bytes() != real_labels_gz.read_bytes()
    assert data.verify_file(recompressed, LABELS_SHA) == recompressed
    assert data.verify_file(plain, LABELS_SHA) == plain


def test_verify_refuses_tampered_and_truncated(tmp_path, real_labels_gz):
    raw = bytearray(gzip.decompress(real_labels_gz.read_bytes()))
    raw[100] ^= 1  # one label changed
    tampered = tmp_path / "tampered.gz"
    tampered.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(data.VerificationError, match=LABELS_SHA) as err:
        data.verify_file(tampered, LABELS_SHA)
    assert str(tampered) in str(err.value)
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(real_labels_gz.read_bytes()[:2000])
    with pytest.raises(data.VerificationError, match="cannot be read to the end"):
        data.verify_file(truncated, LABELS_SHA)


def test_sources_skip_a_tampered_copy_for_a_verified_one(tmp_path, real_labels_gz):
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    (bad_dir / f"{LABELS_STEM}.gz").write_bytes(gzip.compress(b"\x00" * 100))
    good_dir = real_labels_gz.parent
    with pytest.warns(UserWarning, match="refusing"):
        found = data.fashion_mnist_files(dirs=[bad_dir, good_dir], download=False)
    assert found[("test", "labels")].parent == good_dir


def test_no_verified_source_says_how_to_get_one(tmp_path):
    (tmp_path / f"{LABELS_STEM}.gz").write_bytes(gzip.compress(b"not labels"))
    with pytest.warns(UserWarning), pytest.raises(data.DatasetUnavailable) as err:
        data.fashion_mnist_files(dirs=[tmp_path], download=False)
    message = str(err.value)
    for way in ("apt-get install dataset-fashion-mnist", "load_data()", "UVBOOK_DATA_DIR"):
        assert way in message


def test_data_dir_env_is_searched_first(tmp_path, monkeypatch, real_labels_gz):
    src = real_labels_gz.parent
    for stem, _ in FASHION_MNIST_FILES.values():
        for candidate in (src / f"{stem}.gz", src / stem):
            if candidate.exists():
                shutil.copy(candidate, tmp_path / candidate.name)
    monkeypatch.setenv("UVBOOK_DATA_DIR", str(tmp_path))
    assert data.fashion_mnist_dirs()[0] == tmp_path
    found = data.fashion_mnist_files(download=False)
    assert all(p.parent == tmp_path for p in found.values())


def test_load_fashion_mnist_shapes_and_range():
    x, y = data.load_dataset("fashion_mnist", "test")
    assert x.shape == (10_000, 28, 28, 1) and x.dtype == np.float32
    assert y.shape == (10_000,) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() == 1.0
    assert np.all(np.bincount(y) == 1000)
    assert len(data.class_names("fashion_mnist")) == 10


def test_mnist_5k_is_500_a_class_split_400_100():
    xtr, ytr = data.load_dataset("mnist_5k", "train")
    xte, yte = data.load_dataset("mnist_5k", "test")
    assert xtr.shape == (4000, 28, 28, 1) and xte.shape == (1000, 28, 28, 1)
    assert np.all(np.bincount(ytr) == 400) and np.all(np.bincount(yte) == 100)
    assert xte.max() <= 1.0 and xte.min() >= 0.0
    # train and test hold different images
    assert not np.any(np.all(xtr[:200, None] == xte[None, :200], axis=(2, 3, 4)))


def test_subset_is_deterministic_and_stratified():
    y = np.repeat(np.arange(10), [100, 200, 300, 400, 500, 100, 200, 300, 400, 500])
    a = data.stratified_subset(y, 300, seed=3)
    b = data.stratified_subset(y, 300, seed=3)
    c = data.stratified_subset(y, 300, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(a) == 300 and len(np.unique(a)) == 300
    expected = np.bincount(y) * 300 / len(y)
    assert np.all(np.abs(np.bincount(y[a]) - expected) < 1)


def test_load_subset_matches_mode_size():
    x, y = data.load_dataset("fashion_mnist", "train", n=1000, seed=0)
    x2, y2 = data.load_dataset("fashion_mnist", "train", n=1000, seed=0)
    assert x.shape == (1000, 28, 28, 1) and np.all(np.bincount(y) == 100)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_few_labels_draws_k_per_class():
    y = np.repeat(np.arange(10), 50)
    idx = data.few_labels(y, 7, seed=1)
    assert np.all(np.bincount(y[idx]) == 7)
    with pytest.raises(ValueError, match="at most the size of the smallest class"):
        data.few_labels(y, 51)


def test_read_idx_rejects_a_non_idx_file(tmp_path):
    bad = tmp_path / "x.gz"
    bad.write_bytes(gzip.compress(b"hello world"))
    with pytest.raises(ValueError, match="IDX"):
        data.read_idx(bad)


@pytest.mark.parametrize("call, message", [
    (lambda: data.load_dataset("cifar10"), "known datasets: fashion_mnist, mnist, mnist_5k"),
    (lambda: data.load_dataset("fashion_mnist", "validation"), "split must be one of"),
    (lambda: data.load_dataset("fashion_mnist", "test", n=0), "positive integer"),
    (lambda: data.load_dataset("fashion_mnist", "test", n=10_001), "at most the number of examples"),
    (lambda: data.stratified_subset(np.zeros((3, 2), int), 1), "1-D array"),
    (lambda: data.stratified_subset(np.array([0.5, 1.5]), 1), "integer class labels"),
    (lambda: data.make_pipeline(np.zeros((4, 28, 28, 3), np.float32)), r"\(N, height, width, 1\)"),
    (lambda: data.make_pipeline(np.zeros((4, 28, 28, 1), np.uint8)), "floating-point pixels in \\[0, 1\\]"),
    (lambda: data.make_pipeline(np.full((4, 28, 28, 1), 2.0, np.float32)), "must lie in \\[0, 1\\]"),
    (lambda: data.make_pipeline(np.zeros((4, 28, 28, 1), np.float32), np.zeros(3, int)), "one label per example"),
])
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_sources_are_searched_in_the_documented_order(monkeypatch, tmp_path):
    # UVBOOK_DATA_DIR (and its fashion-mnist folder) first, then Keras' cache, then Debian's package
    monkeypatch.setenv("UVBOOK_DATA_DIR", str(tmp_path))
    dirs = data.fashion_mnist_dirs()
    assert dirs[:2] == [tmp_path, tmp_path / "fashion-mnist"]
    assert dirs[-1] == DEBIAN_FASHION_DIR and dirs[-2].name == "fashion-mnist" and dirs[-2] != DEBIAN_FASHION_DIR
    monkeypatch.delenv("UVBOOK_DATA_DIR")
    assert data.fashion_mnist_dirs() == dirs[2:]


def test_training_pipelines_prefetch_without_the_autotuner():
    """With tf.data's autotuner on, discarding an iterator waits for its sleeping thread: a fit
    could stand idle for as long as it ran. Every pipeline the recipes build switches it off."""
    from uvbook.models.semisup import semisup_batches
    x = np.zeros((20, 28, 28, 1), "float32")
    y = np.arange(20) % 2
    pipelines = [data.make_pipeline(x, y, batch_size=4), semisup_batches(x, y, x, 2, 4, seed=0, n_classes=2)]
    for ds in pipelines:
        assert ds.options().autotune.enabled is False
    batches = list(data.make_pipeline(x, y, batch_size=8, shuffle=False))
    assert [len(b[0]) for b in batches] == [8, 8, 4]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    with pytest.raises(ValueError, match="buffer"):
        data.prefetched(pipelines[0], buffer=0)
