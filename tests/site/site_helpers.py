"""Helpers shared by the site tests (tests/site/conftest.py and the test modules)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tools") not in sys.path:
    sys.path.insert(0, str(ROOT / "tools"))
from sync_notebooks import toc_files as _toc_files  # noqa: E402  (one reader of _toc.yml)

# The copy of the book that `make test` executes with nbmake and the site tests build.
SRC = Path(os.environ.get("UVBOOK_SITE_SRC", ROOT / "_quick"))
HTML = SRC / "_build" / "html"


def toc_files(toc_path: Path) -> list[str]:
    """Every document named in a jb-book _toc.yml, root first (tools/sync_notebooks.py reads it)."""
    return _toc_files(toc_path.parent)


def notebook_docs(src: Path) -> list[str]:
    """The documents of src's _toc.yml whose source is a notebook."""
    return [doc for doc in toc_files(src / "_toc.yml") if (src / f"{doc}.ipynb").is_file()]


def repository_config(src: Path) -> dict:
    config = yaml.safe_load((src / "_config.yml").read_text(encoding="utf-8"))
    return config.get("repository") or {}


def external(url: str | None) -> bool:
    """True for a URL that points to another host (http(s) or protocol-relative)."""
    if not url:
        return False
    url = url.strip()
    return urlparse(url).scheme in ("http", "https") or url.startswith("//")


def expected_launch_links(repo_url: str, branch: str, doc: str) -> dict[str, str]:
    """The Colab, Binder and repository links sphinx-book-theme builds for a notebook page."""
    org, repo = repo_url.rstrip("/").split("/")[-2:]
    return {
        "colab": f"https://colab.research.google.com/github/{org}/{repo}/blob/{branch}/{doc}.ipynb",
        "binder": f"https://mybinder.org/v2/gh/{org}/{repo}/{branch}?urlpath=tree/{doc}.ipynb",
        "repository": repo_url.rstrip("/"),
    }
