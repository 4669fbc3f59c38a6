"""The site built from the quick-mode notebooks: builds clean and loads nothing from elsewhere.

`make test` executes every notebook with nbmake (quick mode) in a copy of the book under
_quick/ and runs these tests last, in the same pytest run; they build that copy
with execution switched off, so the site shows exactly the outputs nbmake produced.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[2]
SRC = Path(os.environ.get("UVBOOK_SITE_SRC", ROOT / "_quick"))
HTML = SRC / "_build" / "html"


def toc_files(toc_path: Path) -> list[str]:
    """Every document named in a jb-book _toc.yml, root first."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


@pytest.fixture(scope="module")
def built_site() -> Path:
    if not (SRC / "_toc.yml").is_file():
        pytest.fail(f"{SRC} holds no copy of the book: run `make test`, which executes the "
                    "notebooks there with nbmake before these tests")
    for doc in toc_files(SRC / "_toc.yml"):
        nb = SRC / f"{doc}.ipynb"
        if nb.is_file():
            cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
            code = [c for c in cells if c["cell_type"] == "code"]
            assert all(c.get("outputs") is not None for c in code)
            assert any(c.get("outputs") for c in code), (
                f"{nb} has no outputs: nbmake must execute it (with --overwrite) before the site is built")
    config = yaml.safe_load((SRC / "_config.yml").read_text(encoding="utf-8"))
    config["execute"]["execute_notebooks"] = "off"  # nbmake already executed them
    (SRC / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", str(SRC), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, timeout=1200)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the site build failed or warned:\n{log[-6000:]}"
    return HTML


def test_every_toc_page_is_built(built_site):
    for doc in toc_files(ROOT / "_toc.yml"):
        assert (built_site / f"{doc}.html").is_file(), f"{doc}.html missing from the site"


def _external(url: str | None) -> bool:
    if not url:
        return False
    parsed = urlparse(url.strip())
    return bool(parsed.scheme in ("http", "https") or url.strip().startswith("//"))


def test_site_loads_nothing_from_another_host(built_site):
    offenders = []
    for page in sorted(built_site.rglob("*.html")):
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        for tag, attr in (("script", "src"), ("img", "src"), ("iframe", "src"), ("source", "src")):
            offenders += [f"{page.name}: <{tag} {attr}={t[attr]}>" for t in soup.find_all(tag, **{attr: True})
                          if _external(t[attr])]
        for link in soup.find_all("link", href=True):
            rel = " ".join(link.get("rel", []))
            if any(r in rel for r in ("stylesheet", "preload", "icon", "modulepreload")) and _external(link["href"]):
                offenders.append(f"{page.name}: <link rel={rel} href={link['href']}>")
        for style in soup.find_all("style"):
            offenders += [f"{page.name}: CSS url({u})" for u in re.findall(r"url\(['\"]?([^'\")]+)", style.text)
                          if _external(u)]
    for css in built_site.rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{css.name}: @import/url {u}" for u in re.findall(r"(?:url\(|@import\s+)['\"]?([^'\")\s;]+)", text)
                      if _external(u)]
    assert not offenders, "external resources:\n" + "\n".join(sorted(set(offenders))[:50])


def test_mathjax_is_served_from_the_site(built_site):
    page = built_site / "book" / "02_core_concepts.html"
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    srcs = [s["src"] for s in soup.find_all("script", src=True) if "mathjax" in s["src"].lower()]
    assert srcs, "no MathJax script on a page with equations"
    for src in srcs:
        assert not _external(src)
        assert (page.parent / src.split("?")[0]).resolve().is_file(), f"{src} is not in the site"
    assert soup.select("div.math"), "the page holds no display equation"
