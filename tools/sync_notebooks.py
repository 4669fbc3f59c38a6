#!/usr/bin/env python3
"""Keep two generated cells of every notebook in _toc.yml in sync with the repository.

1. A Markdown cell tagged `cost-note`, right after the title cell: one line saying how long
   the notebook takes in quick and full mode, read from book/_runtimes.json (or, for a
   notebook with no entry there, that the time has not been measured yet), linked to the
   preface's paragraph on how the times were measured.
2. A code cell tagged `colab-install` (and `remove-cell`, so the site does not show it),
   right after the cost note and so the first code cell: in Google Colab, and only there,
   it installs the companion package uvbook from `repository.url` (and `branch`) of
   _config.yml. With the URL empty it prints how to install uvbook instead.

Every other cell is left exactly as it is; the generated cells carry no outputs; running
the script twice changes nothing the second time.

    python tools/sync_notebooks.py            # update the notebooks
    python tools/sync_notebooks.py --check    # exit 1 if any notebook is out of sync
    python tools/sync_notebooks.py --times-from _build/results/full.json _quick/_build/results/quick.json
        # first copy the run times of a build's results record into book/_runtimes.json

book/_runtimes.json maps a notebook's file name (relative to book/) to
{"quick_s": ..., "full_s": ..., "measured": "<date, machine>"}, each time in seconds as a
number or a [low, high] range, with optional "quick_cpu_s", "full_cpu_s" (CPU time),
"detail" (what the time goes into) and "caveat". Keys starting with "_" are comments.
`--times-from` takes the times from results records (uvbook.results: each notebook's
`record_run(name, ...)` stores its wall-clock and CPU time under `_meta.runs.<name>`;
"chN" is the notebook book/0N_*.ipynb, "chNb" book/0Nb_*.ipynb, any other name book/<name>.ipynb) and
leaves every other key, and the entries of notebooks the records do not cover, as they are.

Standard library only; PyYAML is used when it is importable (it is, in .venv), else a
small reader of the few keys needed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

COST_TAG, COLAB_TAG = "cost-note", "colab-install"
COLAB_TAGS = [COLAB_TAG, "remove-cell"]
RUNTIMES = Path("book") / "_runtimes.json"


# --- configuration ---------------------------------------------------------------------

def _load_yaml(path: Path) -> dict | None:
    try:
        import yaml
    except ImportError:
        return None
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _unquote(value: str) -> str:
    value = re.sub(r"\s+#.*$", "", value.strip())
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return value


def repository(root: Path) -> tuple[str, str]:
    """(url, branch) of _config.yml's `repository:` section ('' when unset)."""
    path = root / "_config.yml"
    config = _load_yaml(path)
    if config is not None:
        repo = config.get("repository") or {}
        return str(repo.get("url") or "").strip(), str(repo.get("branch") or "").strip()
    found, section = {}, False
    for line in path.read_text(encoding="utf-8").splitlines():
        if re.match(r"^\S", line):
            section = line.startswith("repository:")
        elif section and (m := re.match(r"^\s+(url|branch)\s*:(.*)$", line)):
            found[m.group(1)] = _unquote(m.group(2))
    return found.get("url", ""), found.get("branch", "")


def toc_files(root: Path) -> list[str]:
    """Every document named in root's jb-book _toc.yml, root first, as written there."""
    path = root / "_toc.yml"
    toc = _load_yaml(path)
    if toc is None:
        files = re.findall(r"^\s*(?:-\s*)?(?:root|file)\s*:\s*(\S+)", path.read_text(encoding="utf-8"), re.M)
        return [_unquote(f) for f in files]
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts") or []:
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def toc_notebooks(root: Path) -> list[Path]:
    """The notebooks named in _toc.yml (root first), as paths relative to root."""
    out = []
    for f in toc_files(root):
        nb = Path(f if f.endswith(".ipynb") else f + ".ipynb")
        if (root / nb).is_file() and nb not in out:
            out.append(nb)
    return out


def runtimes(root: Path) -> dict:
    path = root / RUNTIMES
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def times_from_records(root: Path, records: list[Path]) -> tuple[dict, list[str]]:
    """{notebook key: {"<mode>_s": wall, "<mode>_cpu_s": cpu}} from results records, and warnings."""
    book_dir = (root / RUNTIMES).parent
    found, warnings = {}, []
    for record in records:
        data = json.loads(record.read_text(encoding="utf-8"))
        runs = (data.get("_meta") or {}).get("runs") or {}
        if not runs:
            warnings.append(f"{record}: no run times (no _meta.runs)")
        for name, run in runs.items():
            mode = run.get("mode")
            if mode not in ("quick", "full"):
                warnings.append(f"{record}: run {name!r} has mode {mode!r}, expected quick or full")
                continue
            m = re.fullmatch(r"ch(\d+)([a-z]?)", name)  # "ch4" is 04_*.ipynb, "ch4b" 04b_*.ipynb
            pattern = f"{int(m.group(1)):02d}{m.group(2)}_*.ipynb" if m else f"{name}.ipynb"
            matches = sorted(book_dir.glob(pattern))
            if len(matches) != 1:
                warnings.append(f"{record}: run {name!r} matches {len(matches)} notebooks ({pattern})")
                continue
            entry = found.setdefault(matches[0].relative_to(book_dir).as_posix(), {})
            entry[f"{mode}_s"] = round(float(run["runtime_s"]))
            if run.get("cpu_s") is not None:
                entry[f"{mode}_cpu_s"] = round(float(run["cpu_s"]))
    return found, warnings


def update_runtimes(root: Path, records: list[Path]) -> None:
    """Write the records' run times into book/_runtimes.json (see the module docstring)."""
    path = root / RUNTIMES
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    found, warnings = times_from_records(root, records)
    for warning in warnings:
        print("warning:", warning, file=sys.stderr)
    for key, times in found.items():
        data.setdefault(key, {}).update(times)
        print(f"{key}: " + ", ".join(f"{k} {v}" for k, v in times.items()))
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# --- the generated cells ---------------------------------------------------------------

def _unit(seconds: float) -> str:
    """Seconds below 100 s (but 60 s is '1 min'), else minutes, as the README's table reads."""
    return "s" if seconds < 100 and seconds % 60 else "min"


def _amount(seconds: float, unit: str) -> str:
    return f"{round(seconds):d}" if unit == "s" else f"{round(seconds / 60, 1):g}"


def duration(value) -> str:
    """84 -> '84 s'; 138 -> '2.3 min'; [40, 50] -> '40 to 50 s'; [78, 180] -> '1.3 to 3 min'."""
    if isinstance(value, (list, tuple)):
        lo, hi = value
        unit = _unit(hi)
        return f"{_amount(lo, unit)} to {_amount(hi, unit)} {unit}"
    unit = _unit(value)
    return f"{_amount(value, unit)} {unit}"


def cost_note(entry: dict | None) -> str:
    """One line: the notebook's wall-clock time in quick and in full mode, linked to the
    preface's paragraph on how the times were measured (the `cost-notes` label of index.md)."""
    link = "({ref}`how these times were measured <cost-notes>`)"
    quick, full = (entry or {}).get("quick_s"), (entry or {}).get("full_s")
    if quick is None and full is None:
        return f"**Expected cost** on a 2-core CPU: not measured yet {link}."
    parts = [f"about {duration(t)} in {mode} mode" if t is not None else f"not measured yet in {mode} mode"
             for t, mode in ((quick, "quick"), (full, "full"))]
    return f"**Expected cost** on a 2-core CPU: {parts[0]} (`UVBOOK_QUICK=1`), {parts[1]} {link}."


def colab_code(url: str, branch: str) -> str:
    head = ("# Runs only in Google Colab: installs this book's companion package, uvbook.\n"
            "# Written by tools/sync_notebooks.py from repository.url in _config.yml.\n"
            "import sys\n\n"
            'if "google.colab" in sys.modules:\n')
    if url:
        spec = f"git+{url.rstrip('/')}" + (f"@{branch}" if branch else "")
        return head + f'    %pip install -q "uvbook @ {spec}"'
    return head + (
        '    print("To run this notebook in Colab, first install the book\'s companion package, uvbook:\\n"\n'
        '          "in a new cell run  %pip install \\"uvbook @ git+https://github.com/OWNER/REPOSITORY\\"\\n"\n'
        '          "with the GitHub repository that holds this book, then run this notebook again.\\n"\n'
        '          "(repository.url is not set in the book\'s _config.yml; see README.md, Publishing your fork.)")')


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _cell(kind: str, cell_id: str, tags: list[str], text: str, with_ids: bool) -> dict:
    cell = {"cell_type": kind, "metadata": {"tags": list(tags)}, "source": _lines(text)}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    if with_ids:
        cell["id"] = cell_id
    return cell


def _tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags") or [])


def synced(nb: dict, entry: dict | None, url: str, branch: str) -> dict:
    """The notebook with its cost note and Colab install cell (re)generated."""
    nb = json.loads(json.dumps(nb))  # a deep copy
    with_ids = (nb.get("nbformat", 4), nb.get("nbformat_minor", 0)) >= (4, 5)
    cells = [c for c in nb["cells"] if COST_TAG not in _tags(c) and COLAB_TAG not in _tags(c)]
    title = next((i for i, c in enumerate(cells)
                  if c["cell_type"] == "markdown" and "".join(c["source"]).lstrip().startswith("# ")), None)
    at = 0 if title is None else title + 1
    taken = {c.get("id") for c in cells}
    for cell_id in (COST_TAG, COLAB_TAG):
        if with_ids and cell_id in taken:
            raise SystemExit(f"a cell not generated by this script already has the id {cell_id!r}")
    cells[at:at] = [
        _cell("markdown", COST_TAG, [COST_TAG], cost_note(entry), with_ids),
        _cell("code", COLAB_TAG, COLAB_TAGS, colab_code(url, branch), with_ids),
    ]
    nb["cells"] = cells
    return nb


def dumps(nb: dict) -> str:
    """The notebook as nbformat writes it (sorted keys, one-space indent)."""
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


# --- command line ----------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is out of sync")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the book's root, holding _config.yml and _toc.yml (default: this repository)")
    parser.add_argument("--times-from", type=Path, nargs="+", metavar="RECORD",
                        help="first copy the run times in these results records into book/_runtimes.json")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if args.times_from:
        if args.check:
            parser.error("--times-from changes book/_runtimes.json; it cannot be combined with --check")
        missing = [str(p) for p in args.times_from if not p.is_file()]
        if missing:
            parser.error(f"no such results record: {', '.join(missing)}")
        update_runtimes(root, args.times_from)
    url, branch = repository(root)
    times = runtimes(root)
    book_dir = (root / RUNTIMES).parent
    stale = []
    for rel in toc_notebooks(root):
        path = root / rel
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
        key = (path.relative_to(book_dir).as_posix() if path.is_relative_to(book_dir) else rel.as_posix())
        want = synced(nb, times.get(key), url, branch)
        if want == nb:
            continue
        stale.append(rel.as_posix())
        if not args.check:
            path.write_text(dumps(want), encoding="utf-8")
            print(f"updated {rel.as_posix()}")
    unknown = sorted(set(times) - {(root / n).relative_to(book_dir).as_posix()
                                   for n in toc_notebooks(root) if (root / n).is_relative_to(book_dir)})
    if unknown:
        print(f"note: {RUNTIMES} has entries for notebooks not in _toc.yml: {', '.join(unknown)}")
    if args.check and stale:
        print("out of sync with _config.yml / book/_runtimes.json: " + ", ".join(stale)
              + "\nrun: python tools/sync_notebooks.py", file=sys.stderr)
        return 1
    if not stale:
        print(f"all {len(toc_notebooks(root))} notebooks in sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
