"""The notebooks as files: outputs stripped, cells with ids, and every number the prose
pastes with MyST-NB's glue role glued by the same notebook's code (a missing key would
only fail the site build, minutes later)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[2] / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
# {glue:text}`key`, {glue:text}`key:.3f`, {glue}`key`; a key with "::" lives in another notebook
PASTE_RE = re.compile(r"\{glue(:[a-z]+)?\}`([^`]+)`")
GLUE_CALL_RE = re.compile(r"""\bglue(?:_words)?\(\s*["']([^"']+)["']""")


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def pasted_keys(path: Path) -> set[str]:
    keys = set()
    for cell in cells(path):
        if cell["cell_type"] == "markdown":
            for role, ref in PASTE_RE.findall("".join(cell["source"])):
                # as MyST-NB reads {glue:text}: the text after the last ":" is a format spec
                key = ref.rsplit(":", 1)[0] if role == ":text" and ":" in ref else ref
                keys.add(key)
    return keys


def glued_keys(path: Path) -> set[str]:
    return {key for cell in cells(path) if cell["cell_type"] == "code"
            for key in GLUE_CALL_RE.findall("".join(cell["source"]))}


def test_every_notebook_is_in_the_table_of_contents_and_every_chapter_is_a_notebook():
    import yaml

    def files(entries):
        for entry in entries or ():
            if "file" in entry:
                yield entry["file"]
            yield from files(entry.get("sections"))
            yield from files(entry.get("chapters"))  # a part's chapters

    toc = yaml.safe_load((BOOK.parent / "_toc.yml").read_text(encoding="utf-8"))
    listed = {toc["root"], *files(toc.get("chapters")), *files(toc.get("parts"))}
    notebooks = {f"book/{p.stem}" for p in NOTEBOOKS}
    assert sorted(notebooks - listed) == [], "a notebook the site would not show"
    chapters = {f for f in listed if f.split("/")[-1][:2].isdigit()}
    assert len(chapters) >= 9 and all((BOOK.parent / f"{c}.ipynb").is_file() or (BOOK.parent / f"{c}.md").is_file()
                                      for c in listed)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_stripped_and_cells_have_ids(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert (nb["nbformat"], nb["nbformat_minor"]) >= (4, 5)
    ids = [cell.get("id") for cell in nb["cells"]]
    assert all(ids) and len(set(ids)) == len(ids), "every cell needs a unique id"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None, f"outputs in cell {cell['id']}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_pasted_number_is_glued(path):
    local = {key for key in pasted_keys(path) if "::" not in key}
    missing = local - glued_keys(path)
    assert not missing, f"{path.name} pastes keys no code cell glues: {sorted(missing)}"
    for key in pasted_keys(path) - local:
        doc, other_key = key.split("::", 1)
        other = (path.parent / doc).with_suffix(".ipynb")
        assert other.is_file() and other_key in glued_keys(other), f"{path.name}: {key} not found"


def test_the_key_parser(tmp_path):
    sample = tmp_path / "sample.ipynb"
    sample.write_text(json.dumps({"cells": [
        {"cell_type": "markdown", "source": ["a {glue:text}`acc:.3f`, b {glue:text}`n:,d`, "
                                             "c {glue}`fig`, d {glue:text}`02_x::k:.2f`"]},
        {"cell_type": "code", "source": ['results.glue("acc", 0.5)\nglue("n", 3)']}]}))
    assert pasted_keys(sample) == {"acc", "n", "fig", "02_x::k"}
    assert glued_keys(sample) == {"acc", "n"}
