"""tests/schedule.py, the plugin that shares `make test`'s first run between two workers."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("schedule", ROOT / "tests" / "schedule.py")
schedule = importlib.util.module_from_spec(spec)
spec.loader.exec_module(schedule)
sys.path.insert(0, str(ROOT / "tools"))
import execute_book  # noqa: E402  (the one list of what each chapter loads from another)


def test_every_notebook_of_the_book_is_run_exactly_once():
    """A chapter missing from the lanes would stop `make test`; one listed twice would run twice."""
    listed = [name for lane in schedule.LANES.values() for name in lane if name != schedule.UNIT_TESTS]
    listed += list(schedule.LATER)
    book = sorted(p.stem for p in (ROOT / "book").glob("*.ipynb"))
    assert sorted(listed) == book
    assert sum(schedule.UNIT_TESTS in lane for lane in schedule.LANES.values()) == 1


# What a chapter loads from an earlier one: models from the cache or numbers from the record.
NEEDS = [(earlier, later) for later, earlier_ones in execute_book.NEEDS.items() for earlier in earlier_ones]
UNIT_TESTS_S = 300  # the unit tests' wall-clock time in their lane, seconds (beside the other lane: about 5 min on 2026-12-03 evening; 8.3 and 10.5 min on slower machines)


def lane_times() -> dict[str, tuple[str, float, float]]:
    """Each lane entry's (lane, start, end) in seconds, from book/_runtimes.json's quick times."""
    runtimes = json.loads((ROOT / "book" / "_runtimes.json").read_text(encoding="utf-8"))
    times = {}
    for lane, names in schedule.LANES.items():
        clock = 0.0
        for name in names:
            took = UNIT_TESTS_S if name == schedule.UNIT_TESTS else runtimes[f"{name}.ipynb"]["quick_s"]
            times[name] = (lane, clock, clock + took)
            clock += took
    return times


def test_a_chapter_starts_after_the_chapters_whose_models_it_loads_have_ended():
    """In one lane the order says so; across lanes, the expected times must (with no margin
    for a slower machine's different proportions: a miss only costs a retraining)."""
    times = lane_times()
    for earlier, later in NEEDS:
        (lane_e, _, end_e), (lane_l, start_l, _) = times[earlier], times[later]
        assert end_e <= start_l, f"{later} would start at {start_l:.0f} s, before {earlier} ends at {end_e:.0f} s"


def item(path: str) -> SimpleNamespace:
    return SimpleNamespace(path=Path(path))


def test_items_are_placed_in_their_lane_in_order():
    assert schedule._place(item("_quick/book/02_core_concepts.ipynb")) == ("lane-a", 0)
    unit = schedule.LANES["lane-b"].index(schedule.UNIT_TESTS)
    assert schedule._place(item("tests/unit/test_data.py")) == ("lane-b", unit)


@pytest.mark.parametrize("path, message", [
    ("_quick/book/09_new.ipynb", "no lane for the notebook 09_new.ipynb"),
    ("_quick/book/appendix_results.ipynb", "reads what every chapter recorded"),
])
def test_a_notebook_without_a_lane_stops_the_run_with_a_message(path, message):
    with pytest.raises(pytest.UsageError, match=message):
        schedule._place(item(path))


def test_one_lane_runs_on_one_worker():
    """The lanes hold under pytest-xdist: the unit tests, one lane, all run on one worker.

    pytest-xdist reads a test's ``xdist_group`` mark into its id in its own hook; the
    plugin must mark first, and pytest must keep the id xdist writes (9.2 does not), or
    the two workers take the lane's items one by one."""
    import subprocess
    import sys
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--noconftest", "-p", "tests.schedule", "-n", "2",
         "--dist", "loadgroup", "-v", "tests/unit/test_schedule.py", "-k", "not one_lane"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    workers = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("[gw")]
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert len(workers) >= 5 and len(set(workers)) == 1, workers
