"""A rerun reproduces the results record: the book's numbers do not depend on the run.

`make test` has executed every notebook (quick mode) in _quick/book before this module
runs, and each chapter wrote its headline numbers into _quick/_build/results/quick.json.
Here chapter 1 (seeded k-means, few-label probes and k-NN: the protocol every chapter's
numbers go through) runs a second time, in a fresh kernel, into a separate record, and
every number it records must be identical, bit for bit. Run times differ and are skipped.
Chapter 1 is the cheapest chapter (about 20 s of CPU time); that retraining a model
reproduces its weights exactly is tested in tests/unit/test_reliability.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from site_helpers import SRC

CHAPTER, PREFIX = "01_background", "ch1."
TIMING_SUFFIXES = (".runtime_s", ".cpu_s")


def _numbers(record: Path) -> dict[str, float]:
    data = json.loads(record.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items()
            if k.startswith(PREFIX) and not k.endswith(TIMING_SUFFIXES)}


def test_a_rerun_of_chapter_1_records_identical_numbers(tmp_path: Path) -> None:
    first_record = SRC / "_build" / "results" / "quick.json"
    if not first_record.is_file():
        pytest.fail(f"{first_record} does not exist: run `make test`, whose nbmake run of the "
                    "notebooks writes it before this test")
    first = _numbers(first_record)
    assert len(first) >= 5, f"chapter 1 recorded too few numbers to compare: {sorted(first)}"

    env = {**os.environ, "UVBOOK_QUICK": "1", "UVBOOK_RESULTS_DIR": str(tmp_path / "results")}
    jupyter = Path(sys.executable).with_name("jupyter")
    proc = subprocess.run(
        [str(jupyter), "nbconvert", "--to", "notebook", "--execute", f"{CHAPTER}.ipynb",
         "--output", str(tmp_path / "rerun.ipynb"), "--ExecutePreprocessor.timeout=600"],
        cwd=SRC / "book", env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"the rerun of {CHAPTER} failed:\n{proc.stderr[-3000:]}"
    second = _numbers(tmp_path / "results" / "quick.json")

    assert sorted(second) == sorted(first)
    different = {k: (first[k], second[k]) for k in first if first[k] != second[k]}
    assert not different, f"numbers that changed between two runs (first, second): {different}"
