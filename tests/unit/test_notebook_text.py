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


# The chapters and the appendices that teach (not the results table) end with exercises.
EXERCISE_RE = re.compile(r"^`{3,}\{exercise\}[^\n]*\n:label: (\S+)", re.M)
SOLUTION_RE = re.compile(r"^`{3,}\{solution(?:-start)?\} (\S+)\n((?::[a-z]+:[^\n]*\n)*)", re.M)
WITH_EXERCISES = [p for p in NOTEBOOKS if p.stem[:2].isdigit() or p.stem in ("appendix_errata", "appendix_distribute")]


def exercises(path: Path) -> tuple[list[str], dict[str, str], list[list[dict]]]:
    """The exercise labels, each solved label's options, and the cells inside each gated solution."""
    labels, solutions, gated, inside = [], {}, [], None
    for cell in cells(path):
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            labels += EXERCISE_RE.findall(text)
            solutions.update(SOLUTION_RE.findall(text))
            if "{solution-start}" in text:
                inside = []
            if "{solution-end}" in text and inside is not None:
                gated.append(inside)
                inside = None
        elif inside is not None:
            inside.append(cell)
    return labels, solutions, gated


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.name)
def test_each_chapter_ends_with_four_exercises_with_hidden_solutions_one_runnable(path):
    labels, solutions, gated = exercises(path)
    assert len(labels) >= 4, f"{path.name} has {len(labels)} exercises, wants at least 4"
    assert len(set(labels)) == len(labels), f"{path.name}: an exercise label is used twice"
    assert sorted(solutions) == sorted(labels), f"{path.name}: exercises {labels}, solutions {sorted(solutions)}"
    hidden = {label for label, options in solutions.items() if re.search(r":class:[^\n]*\bdropdown\b", options)}
    assert hidden == set(labels), f"{path.name}: solutions not hidden in a dropdown: {sorted(set(labels) - hidden)}"
    runnable = ["".join("".join(c["source"]) for c in g if c["cell_type"] == "code") for g in gated]
    assert any(code.strip() for code in runnable), (
        f"{path.name}: no solution runs code in the build (a code cell between solution-start and solution-end)")
    assert all("assert " in code for code in runnable if code.strip()), (
        f"{path.name}: a runnable solution checks nothing (it needs an assert a wrong solution would fail)")


def test_exercise_labels_are_unique_across_the_book():
    labels = [label for path in WITH_EXERCISES for label in exercises(path)[0]]
    assert len(set(labels)) == len(labels), sorted(label for label in labels if labels.count(label) > 1)


def test_the_exercise_parser(tmp_path):
    sample = tmp_path / "sample.ipynb"
    sample.write_text(json.dumps({"cells": [
        {"cell_type": "markdown", "source": ["```{exercise} A\n:label: ex-a\nText\n```\n\n"
                                             "```{solution} ex-a\n:class: dropdown\nDone.\n```\n"
                                             "```{exercise}\n:label: ex-b\nRun\n```\n"]},
        {"cell_type": "markdown", "source": ["````{solution-start} ex-b\n:class: dropdown\n````\n"]},
        {"cell_type": "code", "source": ["print(1)"]},
        {"cell_type": "markdown", "source": ["````{solution-end}\n````"]}]}))
    labels, solutions, gated = exercises(sample)
    assert labels == ["ex-a", "ex-b"] and set(solutions) == {"ex-a", "ex-b"}
    assert [[c["source"] for c in g] for g in gated] == [[["print(1)"]]]


GRAPHVIZ_RE = re.compile(r"^`{3,}\{graphviz\}[^\n]*\n((?::[a-z]+:[^\n]*\n)*)", re.M)


def test_the_book_has_its_diagrams_each_with_alt_text():
    """At least 7 Graphviz diagrams (the models' data flows), each with `:alt:` for readers who cannot see it."""
    found = {path.name: GRAPHVIZ_RE.findall("\n".join("".join(c["source"]) for c in cells(path) if c["cell_type"] == "markdown"))
             for path in NOTEBOOKS}
    count = sum(map(len, found.values()))
    assert count >= 7, f"{count} diagrams: {found}"
    missing = [name for name, options in found.items() for o in options if not re.search(r"^:alt: \S", o, re.M)]
    assert not missing, f"diagrams without alt text in {missing}"


# Claims guarded. The rule, kept simple: in a notebook's Markdown (outside exercises and
# their solutions), a sentence that states a ranking (one of RANKING's phrases) must paste a
# glued value ({glue...}: the word or number this run computed), or be listed in
# RANKING_ALLOWED with the reason it needs none (a general statement, a published result,
# or a ranking that a sanity-check cell asserts, named by the cell's id). Text about the
# book's own aims is never a ranking claim: "set for this chapter" is refused outright.
RANKING = re.compile(r"\b(beats?|outperforms?|overtakes?|better than|worse than|wins?|ties with|"
                     r"pulls? ahead|prefers?|"
                     # superlatives stated of something: "X is the best", "are the strongest"
                     r"(is|are|was|were|remains?|comes? out) (the )?(best|worst|strongest|weakest|"
                     r"most accurate|least accurate|largest|smallest)(?! possible))\b", re.I)
RANKING_ALLOWED: dict[str, str] = {
    "has to beat to earn its place": "the book's aim, not a result",
    "The baselines every later chapter must beat": "a heading stating the aim",
    "cannot beat them, the deep model": "a conditional: what failing to beat them would mean",
    "the clearest win this book can show": "what would count as a result, not a result",
    "the baseline every method must beat": "the aim (Chapters 2 and 8)",
    "the floor every method must beat": "the aim (Chapter 6)",
    "held-out accuracy wins": "the definition of the cross-validation rule",
    "when the discriminator wins": "theory: the condition under which the minimax loss saturates",
    "beats PCA with the same 8 numbers": "asserted in full mode by Chapter 3's sanity check (cell 4ee833f4)",
    "must beat that model's exact log-likelihood": "asserted by Chapter 5's sanity check (cell da2c6c13)",
    "something better than the frozen encoder, or merely fit": "the question the row answers, with numbers",
    "have done better than both on image quality": "a published result, cited",
    "prefers independent factors": "theory: what the beta-VAE's objective favours",
    "does better than a rule that knows nothing about images": "how to read the table that follows",
    "is the best-documented example": "a statement about the literature, not a result",
    "is the best *linear* compression": "theory: the Eckart-Young theorem, derived in the chapter",
    "is largest at $D = a / (a + b)$": "theory: the optimal discriminator, derived in the chapter",
    "Diffusion models are the strongest image generators": "a published result, cited in its section",
    "are the smallest changes that make the article's code run": "what the appendix set out to do",
}


def ranking_sentences(path: Path) -> list[str]:
    out = []
    for cell in cells(path):
        text = "".join(cell["source"])
        if cell["cell_type"] != "markdown" or "{exercise}" in text or "{solution" in text:
            continue
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            if RANKING.search(sentence) and "{glue" not in sentence:
                out.append(" ".join(sentence.split()))
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_ranking_in_the_prose_is_computed_or_explained(path):
    text = "".join("".join(c["source"]) for c in cells(path) if c["cell_type"] == "markdown")
    assert "set for this chapter" not in text, f"{path.name} talks of a target set for this chapter"
    unguarded = [s for s in ranking_sentences(path) if not any(a in s for a in RANKING_ALLOWED)]
    assert not unguarded, f"{path.name}: rankings neither glued nor allowed:\n" + "\n".join(unguarded)


def test_every_allowed_ranking_is_still_there():
    sentences = [s for path in NOTEBOOKS for s in ranking_sentences(path)]
    stale = [a for a in RANKING_ALLOWED if not any(a in s for s in sentences)]
    assert not stale, f"RANKING_ALLOWED entries no sentence needs any more: {stale}"
