"""The book's results record: every headline number, one key per number (appendix "Results").

Each chapter ends by writing the numbers it measured into a JSON file, one file per
mode, so that later chapters (Chapter 6 reads Chapters 1 and 2) and the results
appendix can show them without anyone typing a measured number by hand::

    from uvbook import results
    results.record("ch3.conv_ae.code32.test_mse", conv_mse, "10,000 test images")
    results.record_run("ch3", seconds=time.perf_counter() - start)

Keys are dotted lowercase identifiers, chapter first (``ch1.kmeans.pixels.acc``,
``ch6.probe10.simclr.mean``); values are finite floats. :data:`PUBLISHED` holds the
published numbers the book compares itself with, under the key of the measurement
they compare with (or under ``published.*`` when the book measures nothing alike).

Where the record lives (:func:`results_path`):

1. ``$UVBOOK_RESULTS_DIR/<mode>.json`` when that variable is set;
2. else ``_build/results/<mode>.json`` under the nearest folder, from the current
   working directory upwards, that holds a ``_config.yml`` (notebooks run in their own
   folder: ``book/`` for ``make book``, ``_quick/book/`` for ``make test``, whose
   ``_quick/`` has its own ``_config.yml``);
3. else ``~/.cache/uvbook/results/<mode>.json``.

``<mode>`` is ``quick`` or ``full`` (:func:`uvbook.modes.mode_name`): quick-mode numbers
never mix with the book's. Writes are atomic (a temporary file renamed over the old
one) and merge with what is there, under a lock where the platform has ``fcntl``, so
notebooks may record in any order. ``python -m uvbook results`` prints the table.

File format: a JSON object whose keys are the record keys with float values, plus one
``"_meta"`` entry holding ``"runs"`` (per chapter: when it ran, its run time and the
hardware, from :func:`record_run`) and ``"notes"`` (per key: the ``reference`` text
given to :func:`record`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import numbers
import os
import platform
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from uvbook._io import atomic_write
from uvbook.modes import mode_name

MODES = ("quick", "full")
RESULTS_DIR_ENV = "UVBOOK_RESULTS_DIR"
META_KEY = "_meta"

_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_CHAPTER_RE = re.compile(r"^[a-z][a-z0-9_]*$")

_DEC_KERAS = ("XifengGuo/DEC-keras README, Table 1 (mean of 10 runs on all 70,000 Fashion-MNIST "
              "images; the DEC paper, Xie et al. 2016, has no Fashion-MNIST row)")
_SCAN = ("SCAN on CIFAR-10 (10 classes, clustered on the 10,000 test images), a ResNet-18 pretrained by "
         "SimCLR on the 50,000 training images and fine-tuned by SCAN: Van Gansbeke et al. 2020, best model "
         "in the authors' repository README")
_DEC_KERAS_MNIST = "XifengGuo/DEC-keras README, Table 1 (mean of 10 runs on all 70,000 MNIST digits)"

#: Published reference numbers, as record key -> (value, source). Keys that the book also
#: measures put the two side by side in :func:`table`; ``published.*`` keys have no
#: measured counterpart (the book does not run DEC, and runs N2D's recipe on its own representations).
PUBLISHED: dict[str, tuple[float, str]] = {
    "ch1.kmeans.pixels.acc": (0.47, "k-means on raw pixels: " + _DEC_KERAS),
    "ch1.kmeans.pixels.nmi": (0.51, "k-means on raw pixels: " + _DEC_KERAS),
    "ch1.mnist.kmeans.pixels.acc": (0.53, "k-means on raw pixels: " + _DEC_KERAS_MNIST),
    "ch1.mnist.kmeans.pixels.nmi": (0.50, "k-means on raw pixels: " + _DEC_KERAS_MNIST),
    "ch2.cnn.test_acc": (0.92, "small CNNs (two or three convolutional layers, no augmentation) in the "
                               "benchmark table of the zalandoresearch/fashion-mnist README (Xiao et al. "
                               "2017): most at about 0.91-0.93 test accuracy (all from 0.88 to 0.93); "
                               "0.92 is the middle of the usual range"),
    "ch5.mnist.vae.iwae_k5000_nats": (-86.76, "one-stochastic-layer VAE (784-200-200-50), dynamically "
                                              "binarised MNIST, k = 5000: Burda et al. 2016, Table 1"),
    "published.ae_kmeans.acc": (0.61, "autoencoder (784-500-500-2000-10) + k-means: " + _DEC_KERAS),
    "published.ae_kmeans.nmi": (0.64, "autoencoder (784-500-500-2000-10) + k-means: " + _DEC_KERAS),
    "published.dec.acc": (0.62, "DEC (Xie et al. 2016) as reimplemented in " + _DEC_KERAS),
    "published.dec.nmi": (0.65, "DEC (Xie et al. 2016) as reimplemented in " + _DEC_KERAS),
    "published.n2d.acc": (0.672, "N2D: autoencoder + UMAP + Gaussian mixture, all 70,000 Fashion-MNIST "
                                 "images: McConville et al. 2021 (ICPR 2020)"),
    "published.m2.mnist100.error": (0.0333, "semi-supervised VAE M1+M2, MNIST with 100 labels: Kingma et al. "
                                            "2014, Table 1 (3.33% test error)"),
    "published.sgan.mnist100.error": (0.0093, "GAN with feature matching and a K+1-class discriminator, MNIST "
                                              "with 100 labels: Salimans et al. 2016, Table 1 (93 errors in 10,000)"),
    "published.sgan.cifar4000.error": (0.1863, "the same on CIFAR-10 with 4,000 labels: Salimans et al. 2016, "
                                               "Table 2 (18.63% test error)"),
    "published.fixmatch.cifar40.acc": (0.8861, "FixMatch (CTAugment), CIFAR-10 with 40 labels, Wide ResNet-28-2: "
                                               "Sohn et al. 2020 (11.39% error)"),
    "published.fixmatch.cifar250.acc": (0.9493, "FixMatch (CTAugment), CIFAR-10 with 250 labels, Wide "
                                                "ResNet-28-2: Sohn et al. 2020 (5.07% error)"),
    "published.scan.cifar10.acc": (0.816, _SCAN + ": the clustering step alone, ACC"),
    "published.scan.cifar10.nmi": (0.715, _SCAN + ": the clustering step alone, NMI"),
    "published.scan_selflabel.cifar10.acc": (0.883, _SCAN + ", then self-labelling (the encoder fine-tuned "
                                                    "on its own confident clusters), ACC"),
    "published.n2d.nmi": (0.684, "N2D: autoencoder + UMAP + Gaussian mixture, all 70,000 Fashion-MNIST "
                                 "images: McConville et al. 2021 (ICPR 2020)"),
}


# --------------------------------------------------------------------------- checks

def check_key(key: str) -> str:
    """``key`` if it is a dotted lowercase identifier with at least two parts.

    Raises:
        ValueError: naming the expected form (``ch3.conv_ae.code32.test_mse``) and what was given.
    """
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError("key must be a dotted lowercase identifier with at least two parts, each "
                         "starting with a letter (letters, digits and _), e.g. "
                         f"'ch3.conv_ae.code32.test_mse'; got {key!r}")
    return key


def check_value(value: Any, name: str = "value") -> float:
    """``value`` as a float if it is a finite real number (not a bool).

    Raises:
        ValueError: naming what was expected and what was given.
    """
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()  # a NumPy scalar or 0-d array
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite real number; got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number; got {value!r}")
    return value


def check_mode(mode: str | None) -> str:
    """``mode``, or the current mode when None; must be ``"quick"`` or ``"full"``."""
    if mode is None:
        return mode_name()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} (or None for the current mode); got {mode!r}")
    return mode


# --------------------------------------------------------------------------- location

def find_book_root(start: str | os.PathLike | None = None) -> Path | None:
    """The nearest folder, from ``start`` (default: the working directory) upwards, holding ``_config.yml``."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").is_file():
            return folder
    return None


def results_dir() -> Path:
    """The folder of the record files (see the module docstring for the order of the rules)."""
    env = os.environ.get(RESULTS_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    root = find_book_root()
    if root is not None:
        return root / "_build" / "results"
    return Path.home() / ".cache" / "uvbook" / "results"


def results_path(mode: str | None = None) -> Path:
    """``<results_dir()>/<mode>.json`` for ``mode`` (default: the current mode)."""
    return results_dir() / f"{check_mode(mode)}.json"


# --------------------------------------------------------------------------- reading

def _read(path: Path) -> dict[str, Any]:
    """The record file's content; an empty record when the file does not exist.

    Raises:
        ValueError: the file exists but is not a results record (never silently overwritten).
    """
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable results record ({err}); expected a JSON object of "
                         "key -> number. Delete it to start a new record.") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of key -> number; got {type(data).__name__}")
    return data


def load(mode: str | None = None) -> dict[str, float]:
    """Every recorded number of ``mode`` (default: the current mode), as ``{key: value}``.

    An empty dict when nothing has been recorded yet. Chapter 6 reads Chapters 1 and 2
    this way: ``results.load().get("ch1.kmeans.pixels.acc")``.
    """
    data = _read(results_path(mode))
    return {k: float(v) for k, v in sorted(data.items())
            if k != META_KEY and isinstance(v, (int, float)) and not isinstance(v, bool)}


def load_meta(mode: str | None = None) -> dict[str, Any]:
    """The ``"_meta"`` entry of ``mode``'s record: ``{"runs": {...}, "notes": {...}}`` (empty if none)."""
    meta = _read(results_path(mode)).get(META_KEY) or {}
    return {"runs": dict(meta.get("runs") or {}), "notes": dict(meta.get("notes") or {})}


def table(mode: str | None = None):
    """The record of ``mode`` beside the published numbers, as a ``pandas.DataFrame``.

    One row per key that is recorded or published, sorted by key, with columns
    ``key``, ``value`` (measured; NaN if not), ``published`` (NaN if none), ``source``
    (of the published number) and ``note`` (the ``reference`` given to :func:`record`).
    """
    import pandas as pd

    values = load(mode)
    notes = load_meta(mode)["notes"]
    rows = []
    for key in sorted(set(values) | set(PUBLISHED)):
        published, source = PUBLISHED.get(key, (math.nan, ""))
        rows.append({"key": key, "value": values.get(key, math.nan), "published": published,
                     "source": source, "note": notes.get(key, "")})
    return pd.DataFrame(rows, columns=["key", "value", "published", "source", "note"])


# --------------------------------------------------------------------------- writing

@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<path>.lock`` while the record is read, merged and replaced."""
    try:
        import fcntl
    except ImportError:  # Windows: atomic replacement only
        yield
        return
    with open(path.with_name(f".{path.name}.lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _update(mode: str | None, values: Mapping[str, float], notes: Mapping[str, str | None] | None = None,
            runs: Mapping[str, Any] | None = None) -> Path:
    """Merge ``values`` (and ``_meta`` notes and runs) into the record, atomically."""
    path = results_path(mode)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(f"the results folder {path.parent} cannot be created: {err}; set "
                      f"{RESULTS_DIR_ENV} to a writable folder") from err
    with _locked(path):
        data = _read(path)
        data.update(values)
        meta = dict(data.get(META_KEY) or {})
        if notes:
            merged = {**(meta.get("notes") or {}), **notes}
            meta["notes"] = {k: v for k, v in sorted(merged.items()) if v}  # None: the note is dropped
        if runs:
            meta["runs"] = {**(meta.get("runs") or {}), **runs}
        data[META_KEY] = meta
        ordered = {k: data[k] for k in sorted(data) if k != META_KEY}
        ordered[META_KEY] = data[META_KEY]

        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(ordered, f, indent=1)
                f.write("\n")

        atomic_write(path, write, suffix=".tmp")
    return path


def record(key: str, value: float, reference: str | None = None, mode: str | None = None) -> Path:
    """Write one number into the record of ``mode`` (default: the current mode) under ``key``; returns the file's path.

    Args:
        key: a dotted lowercase identifier, chapter first, e.g. ``"ch3.conv_ae.code32.test_mse"``.
        value: a finite real number (a Python or NumPy scalar).
        reference: an optional short note on what the number is measured on, kept in
            ``_meta["notes"]`` and shown by :func:`table`, e.g. ``"10,000 test images"``.
        mode: ``"quick"`` or ``"full"``; None records into the current mode's file.

    A key recorded again is overwritten; every other key is kept.

    Raises:
        ValueError: a malformed key, a value that is not a finite real number, a
            ``reference`` that is not a string, or an unknown ``mode``.
    """
    mode = check_mode(mode)
    key = check_key(key)
    value = check_value(value)
    if reference is not None and not isinstance(reference, str):
        raise ValueError(f"reference must be a string or None; got {type(reference).__name__}")
    # A value recorded again without a reference loses the old note, which described the old value.
    return _update(mode, {key: value}, notes={key: reference or None})


def record_numbers(numbers: Mapping[str, tuple[float, str | None]], mode: str | None = None,
                   show: bool = True) -> Path:
    """Write a chapter's numbers at once, each ``key: (value, reference)`` as :func:`record` takes
    them, and print them one a line when ``show``; returns the file's path.

    Raises:
        ValueError: ``numbers`` not a mapping of ``(value, reference)`` pairs, or anything
            :func:`record` refuses; nothing is written then.
    """
    mode = check_mode(mode)
    if not isinstance(numbers, Mapping):
        raise ValueError(f"numbers must be a mapping of key to (value, reference); got {type(numbers).__name__}")
    values, notes = {}, {}
    for key, pair in numbers.items():
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError(f"numbers[{key!r}] must be a pair (value, reference); got {pair!r}")
        value, reference = pair
        if reference is not None and not isinstance(reference, str):
            raise ValueError(f"the reference of {key!r} must be a string or None; got {type(reference).__name__}")
        values[check_key(key)] = check_value(value, key)
        notes[key] = reference or None
    path = _update(mode, values, notes=notes)
    if show:
        width = max((len(k) for k in values), default=0)
        for key, value in values.items():
            print(f"{key:{width}s} {value:.4f}")
        print(f"({len(values)} numbers recorded in the {mode} record)")
    return path


_GLUE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


def glue(name: str, value: float) -> None:
    """Make a measured number available to the page's prose (as a float, or an int).

    The Markdown of the same notebook pastes it with MyST-NB's role, e.g.
    ``{glue:text}`ch2_cnn_acc:.3f``` or ``{glue:text}`n_images:,d```, so the text always
    shows the number this build measured instead of a hand-typed one. Outside a Jupyter
    Book build (no ``myst_nb``, e.g. in Colab) it only checks the value. It returns nothing,
    so that a cell ending with a ``glue`` call shows no stray number on the page.

    Raises:
        ValueError: a name that is not an identifier-like string, or a value that is not a
            finite real number.
    """
    if not isinstance(name, str) or not _GLUE_NAME_RE.match(name):
        raise ValueError(f"name must be letters, digits, '_', '.', '-', starting with a letter; got {name!r}")
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)
    else:
        value = check_value(value, name)
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    myst_glue(name, value, display=False)


def glue_words(name: str, text: str) -> None:
    """Make a computed phrase (a winner's name, "above" or "below") available to the prose.

    The Markdown pastes it with ``{glue:md}`name```, so that a ranking the text states is
    the one this build computed. Outside a Jupyter Book build it only checks ``text``; like
    :func:`glue`, it returns nothing.

    Raises:
        ValueError: a name that is not identifier-like, or a ``text`` that is not a
            non-empty one-line string.
    """
    if not isinstance(name, str) or not _GLUE_NAME_RE.match(name):
        raise ValueError(f"name must be letters, digits, '_', '.', '-', starting with a letter; got {name!r}")
    if not isinstance(text, str) or not text.strip() or "\n" in text:
        raise ValueError(f"text must be a non-empty string on one line; got {text!r}")
    try:
        from IPython.display import Markdown
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    myst_glue(name, Markdown(text), display=False)


def hardware() -> dict[str, Any]:
    """What the numbers were measured on: CPU model, core count, GPUs, TensorFlow, Python, OS.

    GPUs and the TensorFlow version are read only if TensorFlow is already imported
    (importing it here would cost seconds); otherwise they are ``None``.
    """
    info: dict[str, Any] = {"cpu": _cpu_model(), "cores": os.cpu_count(), "gpus": None,
                            "tensorflow": None, "python": platform.python_version(),
                            "platform": platform.platform()}
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        try:
            info["tensorflow"] = str(tf.__version__)
            info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
        except Exception:  # noqa: BLE001 - a half-initialised TensorFlow: leave the fields unknown
            pass
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def record_run(chapter: str, seconds: float, cpu_seconds: float | None = None) -> Path:
    """Record a notebook's run time and the hardware it ran on; returns the file's path.

    Writes ``<chapter>.runtime_s`` (wall-clock seconds), ``<chapter>.cpu_s`` when
    ``cpu_seconds`` is given, and ``_meta["runs"][chapter]``: the time of the run, the mode
    and :func:`hardware`.

    Args:
        chapter: a lowercase identifier such as ``"ch3"`` or ``"appendix_distribute"``.
        seconds: the notebook's wall-clock run time, a finite number >= 0.
        cpu_seconds: optionally its CPU time (``time.process_time()`` of the kernel).

    Raises:
        ValueError: a malformed chapter name or a negative or non-finite time.
    """
    if not isinstance(chapter, str) or not _CHAPTER_RE.fullmatch(chapter):
        raise ValueError(f"chapter must be a lowercase identifier such as 'ch3'; got {chapter!r}")
    values = {}
    for suffix, name, v in (("runtime_s", "seconds", seconds), ("cpu_s", "cpu_seconds", cpu_seconds)):
        if v is None and name == "cpu_seconds":
            continue
        v = check_value(v, name)
        if v < 0:
            raise ValueError(f"{name} must be a number of seconds >= 0; got {v!r}")
        values[f"{chapter}.{suffix}"] = v

    run = {"when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "mode": mode_name(), **{k.split(".", 1)[1]: v for k, v in values.items()}, **hardware()}
    return _update(None, values, runs={chapter: run})


# --------------------------------------------------------------------------- command line

def format_table(mode: str | None = None) -> str:
    """:func:`table` as plain text, numbers to 4 significant digits, for the terminal."""
    df = table(mode)

    def number(v):
        return "" if isinstance(v, float) and math.isnan(v) else f"{v:.4g}"

    shown = df.assign(value=df["value"].map(number), published=df["published"].map(number))
    return shown.to_string(index=False, max_colwidth=70)


def main(argv: list[str] | None = None) -> int:
    """``python -m uvbook results [--mode quick|full]``: print the record with the published numbers.

    Returns 0 after printing the table, 1 when the mode has no record yet (saying where
    it was looked for and how to make one).
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m uvbook results",
                                     description="Print the book's results record beside the published numbers.")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="which record (default: the current mode, from UVBOOK_QUICK)")
    args = parser.parse_args(argv)
    mode = check_mode(args.mode)
    path = results_path(mode)
    if not path.is_file():
        print(f"No results record for {mode} mode yet: {path} does not exist. Run the notebooks "
              f"({'make test' if mode == 'quick' else 'make book'}) to make one.")
        return 1
    print(f"Results record, {mode} mode: {path}")
    print(format_table(mode))
    runs = load_meta(mode)["runs"]
    for chapter, run in sorted(runs.items()):
        gpus = ", ".join(run.get("gpus") or []) or "no GPU"
        print(f"{chapter}: {run.get('runtime_s', float('nan')):.0f} s on {run.get('cpu')} "
              f"({run.get('cores')} cores, {gpus}), TensorFlow {run.get('tensorflow')}, {run.get('when')}")
    return 0
