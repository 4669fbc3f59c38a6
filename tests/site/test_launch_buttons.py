"""Launch (Colab, Binder), repository and download buttons, in both states of repository.url.

A tiny book (one page, one notebook) is built with the project's own _config.yml and
book/_ext, once with repository.url empty (the default) and once with an example URL.
The example URL is a TEST VALUE ONLY: it names no real repository of this project.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bs4 import BeautifulSoup

from site_helpers import ROOT, expected_launch_links, external

EXAMPLE_URL = "https://github.com/example-org/uvbook"  # test value only, not the project's URL

TINY_NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "id": "title", "metadata": {}, "source": ["# A tiny chapter\n"]},
        {"cell_type": "code", "execution_count": 1, "id": "code", "metadata": {},
         "outputs": [{"name": "stdout", "output_type": "stream", "text": ["2\n"]}],
         "source": ["print(1 + 1)"]},
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                 "language_info": {"name": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def _build_tiny_book(where: Path, repo_url: str) -> Path:
    book = where / "book"
    book.mkdir(parents=True)
    for sub in ("_ext", "_static"):
        shutil.copytree(ROOT / "book" / sub, book / sub, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "book" / "references.bib", book / "references.bib")
    (book / "index.md").write_text("# A tiny book\n\nOne page and {doc}`tiny`.\n", encoding="utf-8")
    (book / "tiny.ipynb").write_text(json.dumps(TINY_NOTEBOOK, indent=1), encoding="utf-8")
    (where / "_toc.yml").write_text("format: jb-book\nroot: book/index\nchapters:\n  - file: book/tiny\n",
                                    encoding="utf-8")
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    config["execute"]["execute_notebooks"] = "off"
    config.setdefault("repository", {})["url"] = repo_url
    (where / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", str(where), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"the tiny book (repository.url={repo_url!r}) failed or warned:\n" + (
        proc.stdout + proc.stderr)[-6000:]
    return where / "_build" / "html"


@pytest.fixture(scope="module", params=["", EXAMPLE_URL], ids=["url-empty", "url-example"])
def tiny_site(request, tmp_path_factory):
    return request.param, _build_tiny_book(tmp_path_factory.mktemp("tinybook"), request.param)


def _buttons(page: Path) -> dict[str, str]:
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    return {a.get_text(" ", strip=True) or " ".join(a.get("class", [])): a["href"]
            for a in soup.select(".article-header-buttons a[href]")}


def test_buttons(tiny_site):
    repo_url, html = tiny_site
    branch = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["branch"]
    nb_page, md_page = html / "book" / "tiny.html", html / "book" / "index.html"
    nb_buttons, md_buttons = _buttons(nb_page), _buttons(md_page)

    # The download buttons, whatever the URL: the notebook page offers its .ipynb.
    assert (nb_page.parent / nb_buttons[".ipynb"]).resolve().is_file()
    assert (md_page.parent / md_buttons[".md"]).resolve().is_file()

    if not repo_url:  # the default: no launch or repository button, nothing broken
        for buttons in (nb_buttons, md_buttons):
            assert not [href for href in buttons.values() if external(href)], buttons
        assert "dropdown-launch-buttons" not in nb_page.read_text(encoding="utf-8")
        return

    want = expected_launch_links(repo_url, branch, "book/tiny")
    assert nb_buttons["Colab"] == want["colab"]
    assert nb_buttons["Binder"] == want["binder"]
    repo_links = [href for text, href in nb_buttons.items() if "source-repository" in text]
    assert repo_links == [want["repository"]], nb_buttons
    # A Markdown page has no notebook to launch, but the repository button.
    assert "Colab" not in md_buttons and "Binder" not in md_buttons
    assert want["repository"] in md_buttons.values()
