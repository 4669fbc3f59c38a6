"""`make publish` pushes the real site: every page of _toc.yml reaches the gh-pages branch.

The site is the quick-mode one that `built_site` builds; the push goes to a bare
repository in a temporary folder (tests/publish_project.py), never to the real origin.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from site_helpers import ROOT, SRC, toc_files

sys.path.insert(0, str(ROOT / "tests"))
from publish_project import SCRIPT, gh_pages_files, make_project, sh  # noqa: E402


def test_make_publish_pushes_every_page_of_the_toc(built_site: Path, tmp_path: Path):
    proj, bare = make_project(tmp_path, book_recipe="\tfalse\n")  # must not build: the site is there
    shutil.copytree(built_site, proj / "_build" / "html")
    subprocess.run([sys.executable, str(SCRIPT), "--root", str(proj), "record", "ok"], check=True)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--root", str(proj)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Building the site" not in proc.stdout
    files = set(gh_pages_files(bare) or [])
    pages = [f"{doc}.html" for doc in toc_files(SRC / "_toc.yml")]
    assert {"index.html", ".nojekyll"} <= files
    assert [p for p in pages if p not in files] == []
    # the underscore folders GitHub Pages would hide without .nojekyll are there too
    assert any(f.startswith("_static/") for f in files) and any(f.startswith("_images/") for f in files)
    assert len(files) >= len(list(built_site.rglob("*.*"))) - 5  # the whole site, not a part of it
    head = sh(proj, "git", "rev-parse", "HEAD").strip()
    assert sh(bare, "git", "log", "-1", "--format=%s", "gh-pages").strip() == f"Site built from {head}"
