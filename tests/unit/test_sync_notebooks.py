"""tools/sync_notebooks.py: the Colab install cell and the cost note of every notebook."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "sync_notebooks.py"
EXAMPLE_URL = "https://github.com/example-org/uvbook"  # test value only, not the project's URL

sys.path.insert(0, str(SCRIPT.parent))
import sync_notebooks  # noqa: E402


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(root), *args],
                          capture_output=True, text=True, timeout=120)


def notebook(*cells: tuple[str, str]) -> dict:
    out = []
    for i, (kind, text) in enumerate(cells):
        cell = {"cell_type": kind, "id": f"c{i}", "metadata": {}, "source": text.splitlines(keepends=True)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    return {"cells": out, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                      "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def write_config(root: Path, url: str, branch: str = "main") -> None:
    (root / "_config.yml").write_text(
        'title: "A book"\n'
        "# a comment\n"
        "repository:\n"
        f'  url: "{url}"   # the one line a fork sets\n'
        '  path_to_book: ""\n'
        f"  branch: {branch}\n"
        "launch_buttons:\n"
        "  colab_url: https://colab.research.google.com\n", encoding="utf-8")


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """A small book: a Markdown page, two notebooks in the toc, one notebook outside it."""
    write_config(tmp_path, EXAMPLE_URL)
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/index\nparts:\n  - caption: P\n    chapters:\n"
        "      - file: book/a\n      - file: book/b\n        sections:\n          - file: book/notes\n",
        encoding="utf-8")
    b = tmp_path / "book"
    b.mkdir()
    (b / "index.md").write_text("# Index\n", encoding="utf-8")
    (b / "notes.md").write_text("# Notes\n", encoding="utf-8")
    for name in ("a", "b", "outside"):
        nb = notebook(("markdown", f"# Chapter {name}\n\nIntro."), ("markdown", "## Set-up"),
                      ("code", "import math\nprint(math.pi)"), ("markdown", "Text with $x$."))
        (b / f"{name}.ipynb").write_text(sync_notebooks.dumps(nb), encoding="utf-8")
    (b / "_runtimes.json").write_text(json.dumps({
        "_about": "test values",
        "a.ipynb": {"quick_s": 84, "full_s": [78, 180], "quick_cpu_s": [40, 50], "full_cpu_s": 660,
                    "measured": "2026-01-01 on a test machine", "caveat": "Only a test"},
    }), encoding="utf-8")
    return tmp_path


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def test_check_then_sync_then_idempotent(book):
    before = {p.name: p.read_bytes() for p in (book / "book").glob("*.ipynb")}
    proc = run(book, "--check")
    assert proc.returncode == 1 and "book/a.ipynb" in proc.stderr and "book/b.ipynb" in proc.stderr
    assert {p.name: p.read_bytes() for p in (book / "book").glob("*.ipynb")} == before, "--check wrote"

    assert run(book).returncode == 0
    assert run(book, "--check").returncode == 0
    after = {p.name: p.read_bytes() for p in (book / "book").glob("*.ipynb")}
    assert after["outside.ipynb"] == before["outside.ipynb"], "a notebook outside the toc was changed"
    assert run(book).returncode == 0
    assert {p.name: p.read_bytes() for p in (book / "book").glob("*.ipynb")} == after, "not idempotent"


def test_generated_cells(book):
    run(book)
    a, b = cells(book / "book" / "a.ipynb"), cells(book / "book" / "b.ipynb")
    original = notebook(("markdown", "# Chapter a\n\nIntro."), ("markdown", "## Set-up"),
                        ("code", "import math\nprint(math.pi)"), ("markdown", "Text with $x$."))["cells"]
    assert [a[0]] + a[3:] == original, "the other cells must be left as they were"

    note, install = a[1], a[2]
    assert note["cell_type"] == "markdown" and note["metadata"]["tags"] == ["cost-note"]
    text = "".join(note["source"])
    assert "about 84 s in quick mode" in text and "about 1.3 to 3 min in full mode" in text
    assert "\n" not in text.strip() and "<cost-notes>" in text, "one line, linked to the preface"
    assert "not measured yet" in "".join(b[1]["source"])

    assert install["cell_type"] == "code"
    assert install["metadata"]["tags"] == ["colab-install", "remove-cell"]
    assert install["outputs"] == [] and install["execution_count"] is None
    code = "".join(install["source"])
    assert f'%pip install -q "uvbook @ git+{EXAMPLE_URL}@main"' in code
    assert 'if "google.colab" in sys.modules:' in code
    first_code = next(c for c in a if c["cell_type"] == "code")
    assert first_code is install


def _run_cell(code: str, in_colab: bool) -> tuple[list, str]:
    """Execute a cell's code as IPython would, with or without a google.colab module."""
    from IPython.core.inputtransformer2 import TransformerManager

    magics = []

    class FakeShell:
        def run_line_magic(self, name, line):
            magics.append((name, line))

    saved = sys.modules.get("google.colab")
    if in_colab:
        sys.modules["google.colab"] = type(sys)("google.colab")
    else:
        sys.modules.pop("google.colab", None)
    import contextlib
    import io

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(TransformerManager().transform_cell(code), {"get_ipython": lambda: FakeShell()})
    finally:
        sys.modules.pop("google.colab", None)
        if saved is not None:
            sys.modules["google.colab"] = saved
    return magics, out.getvalue()


@pytest.mark.parametrize("url", [EXAMPLE_URL, ""])
def test_install_cell_acts_only_in_colab(book, url):
    write_config(book, url)
    run(book)
    code = "".join(cells(book / "book" / "a.ipynb")[2]["source"])
    assert _run_cell(code, in_colab=False) == ([], "")
    magics, printed = _run_cell(code, in_colab=True)
    if url:
        assert magics == [("pip", f'install -q "uvbook @ git+{url}@main"')] and printed == ""
    else:
        assert magics == [] and "%pip install" in printed and "repository.url is not set" in printed


def test_changing_the_url_updates_the_cell_in_place(book):
    run(book)
    write_config(book, "https://github.com/example-org/other", branch="dev")
    assert run(book, "--check").returncode == 1
    run(book)
    a = cells(book / "book" / "a.ipynb")
    assert sum("colab-install" in c["metadata"].get("tags", []) for c in a) == 1
    assert sum("cost-note" in c["metadata"].get("tags", []) for c in a) == 1
    assert "git+https://github.com/example-org/other@dev" in "".join(a[2]["source"])


def test_reads_the_config_without_pyyaml(book):
    assert sync_notebooks.repository(book) == (EXAMPLE_URL, "main")
    saved = sys.modules.get("yaml")
    sys.modules["yaml"] = None  # makes `import yaml` raise ImportError
    try:
        assert sync_notebooks.repository(book) == (EXAMPLE_URL, "main")
        assert [p.as_posix() for p in sync_notebooks.toc_notebooks(book)] == ["book/a.ipynb", "book/b.ipynb"]
    finally:
        if saved is None:
            del sys.modules["yaml"]
        else:
            sys.modules["yaml"] = saved


def test_on_a_copy_of_this_book(tmp_path):
    """The real notebooks: a sync touches only the two generated cells, then --check passes."""
    shutil.copy(ROOT / "_config.yml", tmp_path)
    shutil.copy(ROOT / "_toc.yml", tmp_path)
    shutil.copytree(ROOT / "book", tmp_path / "book", ignore=shutil.ignore_patterns("_build", "__pycache__"))
    assert run(tmp_path).returncode == 0
    assert run(tmp_path, "--check").returncode == 0
    for rel in sync_notebooks.toc_notebooks(tmp_path):
        ours = [c for c in cells(ROOT / rel)
                if not {"colab-install", "cost-note"} & set(c["metadata"].get("tags", []))]
        theirs = [c for c in cells(tmp_path / rel)
                  if not {"colab-install", "cost-note"} & set(c["metadata"].get("tags", []))]
        assert ours == theirs, f"{rel}: cells other than the generated ones changed"
        assert not any(c.get("outputs") for c in cells(tmp_path / rel)
                       if "colab-install" in c["metadata"].get("tags", []))


def test_this_repository_is_in_sync():
    """Guard, active once the notebooks have been synced: they must stay in sync with
    _config.yml and book/_runtimes.json (after changing either, run the script)."""
    nbs = sync_notebooks.toc_notebooks(ROOT)
    if not any("colab-install" in c["metadata"].get("tags", []) for nb in nbs for c in cells(ROOT / nb)):
        pytest.skip("no notebook carries the generated cells yet: run `python tools/sync_notebooks.py`")
    proc = run(ROOT, "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_times_from_records_update_runtimes_and_cost_notes(book):
    b = book / "book"
    shutil.copy(b / "a.ipynb", b / "01_first.ipynb")
    shutil.copy(b / "b.ipynb", b / "appendix_extra.ipynb")
    shutil.copy(b / "b.ipynb", b / "01b_second.ipynb")    # a section of chapter 1: run "ch1b", not "ch1"
    (book / "_toc.yml").write_text("format: jb-book\nroot: book/index\nchapters:\n  - file: book/a\n"
                                   "  - file: book/01_first\n  - file: book/01b_second\n  - file: book/appendix_extra\n",
                                   encoding="utf-8")

    def record(path, mode, runs):
        path.write_text(json.dumps({"x.y": 1.0, "_meta": {"runs": {
            name: {"mode": mode, "runtime_s": wall, "cpu_s": cpu} for name, (wall, cpu) in runs.items()}}}))
        return path

    full = record(book / "full.json", "full", {"ch1": (612.4, 900.6), "appendix_extra": (30.2, 20.0), "ch9": (1, 1),
                                                 "ch1b": (99.6, 80.2)})
    quick = record(book / "quick.json", "quick", {"ch1": (41.5, 38.0)})
    proc = run(book, "--times-from", str(full), str(quick))
    assert proc.returncode == 0, proc.stderr
    assert "'ch9' matches 0 notebooks" in proc.stderr
    times = json.loads((b / "_runtimes.json").read_text())
    assert times["01_first.ipynb"] == {"full_s": 612, "full_cpu_s": 901, "quick_s": 42, "quick_cpu_s": 38}
    assert times["appendix_extra.ipynb"] == {"full_s": 30, "full_cpu_s": 20}
    assert times["01b_second.ipynb"] == {"full_s": 100, "full_cpu_s": 80}
    assert times["a.ipynb"]["full_cpu_s"] == 660 and times["_about"] == "test values"  # untouched
    note = "".join(cells(b / "01_first.ipynb")[1]["source"])
    assert "about 42 s in quick mode" in note and "about 10.2 min in full mode" in note
    assert run(book, "--check", "--times-from", str(full)).returncode == 2
    assert "no such results record" in run(book, "--times-from", str(book / "nope.json")).stderr
