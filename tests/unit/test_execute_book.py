"""tools/execute_book.py: `make book` executes the notebooks two at a time, in dependency order."""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import execute_book  # noqa: E402


class Recorder:
    """An ``execute`` that sleeps, notes when each notebook started and ended, and fails on request."""

    def __init__(self, seconds: float = 0.05, fail: tuple[str, ...] = ()):
        self.seconds, self.fail = seconds, fail
        self.start: dict[str, float] = {}
        self.end: dict[str, float] = {}
        self.busy = self.most_busy = 0
        self.lock = threading.Lock()

    def __call__(self, name: str) -> bool:
        with self.lock:
            self.start[name] = time.perf_counter()
            self.busy += 1
            self.most_busy = max(self.most_busy, self.busy)
        time.sleep(self.seconds)
        with self.lock:
            self.busy -= 1
            self.end[name] = time.perf_counter()
        return name not in self.fail


def book_graph() -> dict[str, set[str]]:
    return execute_book.needs(p.stem for p in (ROOT / "book").glob("*.ipynb") if not execute_book.forced(p))


def test_every_notebook_starts_after_what_it_needs_and_two_run_at_once():
    graph = book_graph()
    rec = Recorder()
    outcome = execute_book.run(graph, rec, workers=2)
    assert outcome == {name: "ok" for name in graph}
    for name, deps in graph.items():
        for dep in deps:
            assert rec.end[dep] <= rec.start[name], f"{name} started before {dep} ended"
    assert rec.most_busy == 2


def test_the_results_appendix_is_left_to_the_build():
    """It reads every chapter's numbers and asks to run on every build: the build runs it last."""
    assert execute_book.forced(ROOT / "book" / "appendix_results.ipynb")
    assert not execute_book.forced(ROOT / "book" / "06_recognition.ipynb")


def test_every_dependency_names_a_notebook_of_the_book():
    notebooks = {p.stem for p in (ROOT / "book").glob("*.ipynb")}
    named = set(execute_book.NEEDS) | {d for deps in execute_book.NEEDS.values() for d in deps}
    assert named <= notebooks, sorted(named - notebooks)


def test_a_failure_skips_what_needs_it_and_nothing_else():
    graph = {"a": set(), "b": {"a"}, "c": {"b"}, "d": set()}
    outcome = execute_book.run(graph, Recorder(0.01, fail=("a",)), workers=2)
    assert outcome == {"a": "failed", "b": "skipped", "c": "skipped", "d": "ok"}


def test_an_exception_counts_as_a_failure():
    def boom(name):
        raise RuntimeError("kernel died")
    assert execute_book.run({"a": set()}, boom) == {"a": "failed"}


def test_the_ready_notebook_with_the_longest_chain_goes_first():
    graph = {"short": set(), "long": set(), "after_long": {"long"}}
    lengths = execute_book.chain_lengths(graph, {"short": 5.0, "long": 2.0, "after_long": 10.0})
    assert lengths == {"short": 5.0, "long": 12.0, "after_long": 10.0}
    rec = Recorder(0.01)
    execute_book.run(graph, rec, workers=1, priority=lengths)
    assert sorted(rec.start, key=rec.start.get) == ["long", "after_long", "short"]


def test_the_book_s_critical_chain_runs_through_chapters_3_4_and_6():
    lengths = execute_book.chain_lengths(book_graph(), execute_book.expected_seconds(ROOT / "book"))
    assert lengths["03_autoencoders"] > lengths["04_gans"] > lengths["06_recognition"] > lengths["08_trends"]


@pytest.mark.parametrize("graph, workers, message", [
    ({"a": set()}, 0, "workers must be an integer >= 1; got 0"),
    ({"a": {"b"}}, 1, "a needs ['b'], which are not among the notebooks ['a']"),
    ({"a": {"b"}, "b": {"a"}}, 2, "the notebooks ['a', 'b'] wait for each other"),
])
def test_bad_schedules_are_refused(graph, workers, message):
    with pytest.raises(ValueError) as error:
        execute_book.run(graph, Recorder(0.0), workers=workers)
    assert str(error.value) == message


def test_a_cycle_is_named_when_chains_are_measured():
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        execute_book.chain_lengths({"a": {"b"}, "b": {"a"}}, {})
