"""Execute the book's notebooks two at a time, into Jupyter Book's execution cache.

`make book` runs this before ``jupyter-book build``. Jupyter Book executes the notebooks one
after the other, and one notebook keeps about one and a half of two cores busy; run two at a
time, the machine is used fully. This script executes every notebook whose code cells changed
since its last run (or that never ran) with the same executor as Jupyter Book, in the
notebook's folder, and stores it in the cache that Jupyter Book reads
(``_build/.jupyter_cache``), so the build that follows executes nothing; a notebook that is
already cached is left alone.

A notebook starts only when every notebook it loads from (:data:`NEEDS`: a model from the model
cache or a number from the results record) has finished, so that none of them trains another
chapter's model a second time. Among the notebooks ready to start, the one at the head of the
longest chain of work still to do goes first (times from ``book/_runtimes.json``). A notebook
that asks to be executed on every build (metadata ``mystnb.execution_mode: force``: the results
appendix, which reads what every chapter recorded) is left to the build, which runs it after
the chapters.

    python tools/execute_book.py [--workers 2] [--book book]

Exit status 0 when every notebook ran (or was cached), 1 when one failed: its error is printed,
and the notebooks that need it are not run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "_build" / ".jupyter_cache"       # where Jupyter Book 1 keeps it (MyST-NB's default)

#: What each notebook loads from the notebooks before it: models from the model cache (Chapter 4
#: loads Chapter 2's classifier and Chapter 3's autoencoder; Chapter 6 those, Chapter 4's DCGAN
#: and Chapter 5's VAE; Chapter 7 Chapter 5's VAE and Chapter 6's encoder; Chapter 8 the
#: encoder) or numbers from the results record (Chapter 6 quotes Chapter 1, Chapter 7 Chapter 6).
NEEDS: dict[str, tuple[str, ...]] = {
    "04_gans": ("02_core_concepts", "03_autoencoders"),
    "04b_training_gans": ("02_core_concepts", "04_gans"),
    "06_recognition": ("01_background", "02_core_concepts", "03_autoencoders", "04_gans", "05_vaes"),
    "07_semisupervised": ("05_vaes", "06_recognition"),
    "08_trends": ("06_recognition",),
}


def needs(notebooks: Iterable[str]) -> dict[str, set[str]]:
    """The dependencies (:data:`NEEDS`) of ``notebooks`` among themselves."""
    names = list(notebooks)
    return {name: {n for n in NEEDS.get(name, ()) if n in names} for name in names}


def forced(path: Path) -> bool:
    """Whether the notebook asks to be executed on every build (MyST-NB's ``execution_mode: force``)."""
    metadata = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    return metadata.get("mystnb", {}).get("execution_mode") == "force"


def chain_lengths(graph: Mapping[str, set[str]], seconds: Mapping[str, float]) -> dict[str, float]:
    """For each notebook, its own time plus the longest chain of notebooks that wait for it."""
    waiting = {name: {n for n, deps in graph.items() if name in deps} for name in graph}
    lengths: dict[str, float] = {}

    def length(name: str, seen: tuple[str, ...] = ()) -> float:
        if name in seen:
            raise ValueError(f"the notebooks' dependencies have a cycle: {' -> '.join((*seen, name))}")
        if name not in lengths:
            lengths[name] = seconds.get(name, 0.0) + max(
                (length(n, (*seen, name)) for n in waiting[name]), default=0.0)
        return lengths[name]

    for name in graph:
        length(name)
    return lengths


def run(graph: Mapping[str, set[str]], execute: Callable[[str], bool], workers: int = 2,
        priority: Mapping[str, float] | None = None) -> dict[str, str]:
    """Run ``execute(name)`` for every notebook of ``graph``, at most ``workers`` at a time, each
    after all of its dependencies succeeded, the ready notebook with the highest ``priority``
    first (ties: by name). Returns each notebook's outcome: ``"ok"``, ``"failed"`` (``execute``
    returned False or raised) or ``"skipped"`` (a dependency did not succeed).

    Raises:
        ValueError: ``workers`` below 1, or a dependency that is not in ``graph``.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1; got {workers!r}")
    for name, deps in graph.items():
        unknown = set(deps) - set(graph)
        if unknown:
            raise ValueError(f"{name} needs {sorted(unknown)}, which are not among the notebooks {sorted(graph)}")
    priority = priority or {}
    outcome: dict[str, str] = {}
    running: set[str] = set()
    changed = threading.Condition()

    def work(name: str) -> None:
        try:
            ok = execute(name)
        except Exception as error:  # noqa: BLE001 - reported, and the rest goes on
            print(f"{name}: {type(error).__name__}: {error}", flush=True)
            ok = False
        with changed:
            running.discard(name)
            outcome[name] = "ok" if ok else "failed"
            changed.notify_all()

    with changed:
        while len(outcome) < len(graph):
            for name in graph:   # a notebook whose dependency failed or was skipped is skipped
                if name not in outcome and name not in running and any(
                        outcome.get(d) in ("failed", "skipped") for d in graph[name]):
                    outcome[name] = "skipped"
            ready = sorted((n for n in graph if n not in outcome and n not in running
                            and all(outcome.get(d) == "ok" for d in graph[n])),
                           key=lambda n: (-priority.get(n, 0.0), n))
            if ready and len(running) < workers:
                running.add(ready[0])
                threading.Thread(target=work, args=(ready[0],), daemon=True).start()
                continue
            if not running and len(outcome) < len(graph):
                raise ValueError(f"the notebooks {sorted(set(graph) - set(outcome))} wait for each other")
            if len(outcome) < len(graph):
                changed.wait()
    return outcome


def expected_seconds(book: Path) -> dict[str, float]:
    """Each notebook's full-mode time in ``book/_runtimes.json`` (the middle of a range)."""
    runtimes = json.loads((book / "_runtimes.json").read_text(encoding="utf-8"))
    seconds = {}
    for name, entry in runtimes.items():
        if isinstance(entry, dict) and "full_s" in entry:
            value = entry["full_s"]
            seconds[Path(name).stem] = sum(value) / 2 if isinstance(value, list) else float(value)
    return seconds


def execute_one(path: Path, cache_path: Path) -> bool:
    """Execute one notebook into the cache as Jupyter Book 1 would (MyST-NB's ``cache`` mode):
    in its own folder, no timeout, errors not allowed; nothing when its code is cached already.
    Returns whether it is now cached."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from jupyter_cache.executors.utils import single_nb_execution

    notebook = nbformat.read(path, as_version=4)
    cache = get_cache(str(cache_path))
    try:
        record = cache.match_cache_notebook(notebook)
    except KeyError:
        record = None
    if record is not None:
        print(f"{path.name}: cached (ID={record.pk})", flush=True)
        return True
    stage = cache.add_nb_to_project(str(path))
    result = single_nb_execution(notebook, cwd=str(path.parent), allow_errors=False, timeout=None,
                                 meta_override=True)
    if result.err is not None:
        print(f"{path.name} failed after {result.time:.0f} s:\n{result.exc_string}", flush=True)
        return False
    cache.cache_notebook_bundle(CacheBundleIn(notebook, stage.uri, data={"execution_seconds": result.time}),
                                check_validity=False, overwrite=True)
    print(f"{path.name}: executed in {result.time:.0f} s", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--book", type=Path, default=ROOT / "book")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)   # a worker: one notebook, then exit
    args = parser.parse_args(argv)
    if args.one is not None:
        return 0 if execute_one(args.one, args.cache) else 1

    paths = {p.stem: p for p in sorted(args.book.glob("*.ipynb")) if not forced(p)}
    graph = needs(paths)
    priority = chain_lengths(graph, expected_seconds(args.book))
    started = time.perf_counter()

    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            print(line, flush=True)

    def execute(name: str) -> bool:
        t0 = time.perf_counter()
        say(f"[{t0 - started:6.0f} s] {name}: start")
        # A process of its own for each notebook: two executions never share an event loop.
        command = [sys.executable, __file__, "--one", str(paths[name]), "--cache", str(args.cache)]
        ok = subprocess.run(command).returncode == 0
        t1 = time.perf_counter()
        say(f"[{t1 - started:6.0f} s] {name}: {'done' if ok else 'FAILED'} ({t1 - t0:.0f} s)")
        return ok

    outcome = run(graph, execute, workers=args.workers, priority=priority)
    print(f"Executed the book in {time.perf_counter() - started:.0f} s with {args.workers} at a time.")
    bad = {name: state for name, state in outcome.items() if state != "ok"}
    for name, state in sorted(bad.items()):
        print(f"  {name}: {state}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
