"""The site built from the quick-mode notebooks: builds clean and loads nothing from elsewhere.

`make test` executes every notebook with nbmake (quick mode) in a copy of the book under
_quick/ and runs these tests afterwards, in a second pytest run; the `built_site` fixture
(tests/site/conftest.py, once per session) builds that copy with execution switched off,
so the site shows exactly the outputs nbmake produced. test_browser.py reads the same
build in a browser.
"""

from __future__ import annotations

import re
from pathlib import Path

from bs4 import BeautifulSoup

from site_helpers import ROOT, SRC, expected_launch_links, external, notebook_docs, repository_config, toc_files

# sphinx-thebe writes this inline configuration into every page, whether or not thebe is
# enabled. It is a string, not a loaded resource: sphinx-thebe.js fetches it only when a
# reader presses a thebe launch button, and thebe is off in _config.yml (launch_buttons).
# test_browser.py checks that no page requests anything from another host.
THEBE_INLINE = 'const THEBE_JS_URL = "https://unpkg.com/thebe@'

# <link rel=...> values that make a browser fetch or connect to the href.
FETCHING_RELS = ("stylesheet", "preload", "prefetch", "modulepreload", "icon", "manifest",
                 "preconnect", "dns-prefetch", "prerender")


def test_every_toc_page_is_built(built_site):
    for doc in toc_files(ROOT / "_toc.yml"):
        assert (built_site / f"{doc}.html").is_file(), f"{doc}.html missing from the site"


def test_site_loads_nothing_from_another_host(built_site):
    offenders = []
    for page in sorted(built_site.rglob("*.html")):
        name = page.relative_to(built_site)
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        for tag, attr in (("script", "src"), ("img", "src"), ("iframe", "src"), ("source", "src"),
                          ("embed", "src"), ("object", "data"), ("video", "poster"), ("audio", "src"),
                          ("track", "src"), ("input", "src")):
            offenders += [f"{name}: <{tag} {attr}={t[attr]}>" for t in soup.find_all(tag, **{attr: True})
                          if external(t[attr])]
        for t in soup.find_all(srcset=True):
            offenders += [f"{name}: <{t.name} srcset={u}>" for u in re.split(r"\s*,\s*", t["srcset"])
                          if external(u.split()[0] if u.split() else "")]
        for link in soup.find_all("link", href=True):
            rels = [r.lower() for r in link.get("rel", [])]
            if any(r in FETCHING_RELS for r in rels) and external(link["href"]):
                offenders.append(f"{name}: <link rel={' '.join(rels)} href={link['href']}>")
        css_texts = [s.text for s in soup.find_all("style")] + [t["style"] for t in soup.find_all(style=True)]
        for css in css_texts:
            offenders += [f"{name}: CSS url({u})" for u in re.findall(r"(?:url\(|@import\s+)['\"]?([^'\")\s;]+)", css)
                          if external(u)]
        for script in soup.find_all("script", src=False):
            body = script.string or ""
            urls = re.findall(r"https?://[^\s\"'`)]+", body)
            if urls and not (body.lstrip().startswith(THEBE_INLINE) and len(urls) == 1):
                if script.get("type") in ("text/x-thebe-config", "application/json"):
                    continue  # data, not code (thebe's Binder settings, widget state)
                offenders += [f"{name}: inline <script> mentions {u}" for u in urls]
    # Every stylesheet of the site, @font-face rules (the theme's fonts) included.
    for css in built_site.rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{css.relative_to(built_site)}: @import/url {u}"
                      for u in re.findall(r"(?:url\(|@import\s+)['\"]?([^'\")\s;]+)", text) if external(u)]
    assert not offenders, "external resources:\n" + "\n".join(sorted(set(offenders))[:50])


def test_theme_fonts_are_in_the_site(built_site):
    """Every @font-face source the site's stylesheets name is a file of the site."""
    missing, faces = [], 0
    for css in built_site.rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        for face in re.findall(r"@font-face\s*{[^}]*}", text):
            faces += 1
            for url in re.findall(r"url\(['\"]?([^'\")]+)", face):
                if url.startswith("data:"):
                    continue
                if not (css.parent / url.split("?")[0].split("#")[0]).resolve().is_file():
                    missing.append(f"{css.relative_to(built_site)}: {url}")
    assert faces, "no @font-face rule found: has the theme changed?"
    assert not missing, "fonts the stylesheets name but the site lacks:\n" + "\n".join(missing)


def test_mathjax_is_served_from_the_site(built_site):
    page = built_site / "book" / "02_core_concepts.html"
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    srcs = [s["src"] for s in soup.find_all("script", src=True) if "mathjax" in s["src"].lower()]
    assert srcs, "no MathJax script on a page with equations"
    for src in srcs:
        assert not external(src)
        assert (page.parent / src.split("?")[0]).resolve().is_file(), f"{src} is not in the site"
    assert soup.select("div.math"), "the page holds no display equation"


def _header_links(page: Path) -> list[tuple[str, str]]:
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    return [(a.get_text(" ", strip=True), a["href"]) for a in soup.select(".article-header-buttons a[href]")]


def test_every_notebook_page_offers_the_ipynb_download(built_site):
    docs = notebook_docs(SRC)
    assert docs, "no notebook in the table of contents"
    for doc in docs:
        page = built_site / f"{doc}.html"
        hrefs = [href for text, href in _header_links(page) if text == ".ipynb"]
        assert hrefs, f"{doc}.html has no .ipynb download button"
        for href in hrefs:
            assert not external(href)
            assert (page.parent / href).resolve().is_file(), f"{doc}.html: {href} is not in the site"


def test_header_buttons_follow_repository_url(built_site):
    """With repository.url empty (the default) no launch or repository button is shown and
    every header link stays in the site; with it set, Colab/Binder/repository point at it.
    (tests/site/test_launch_buttons.py builds a small book in both states.)"""
    repo = repository_config(SRC)
    url, branch = (repo.get("url") or "").strip(), repo.get("branch") or "main"
    for doc in toc_files(SRC / "_toc.yml"):
        page = built_site / f"{doc}.html"
        links = _header_links(page)
        outside = [href for _, href in links if external(href)]
        if not url:
            assert not outside, f"{doc}.html: header buttons leave the site: {outside}"
            assert "dropdown-launch-buttons" not in page.read_text(encoding="utf-8")
        else:
            want = expected_launch_links(url, branch, doc)
            assert want["repository"] in outside, f"{doc}.html: no repository button"
            if (SRC / f"{doc}.ipynb").is_file():
                assert want["colab"] in outside and want["binder"] in outside, (
                    f"{doc}.html: launch buttons {outside}, expected {want}")
        for _, href in links:
            if not external(href):
                assert (page.parent / href.split("#")[0]).resolve().exists(), f"{doc}.html: broken button {href}"


def test_runtimes_file_is_not_a_page(built_site):
    """book/_runtimes.json feeds tools/sync_notebooks.py; Sphinx must not publish it."""
    assert not list(built_site.rglob("_runtimes*"))
    assert "_runtimes" not in (built_site / "searchindex.js").read_text(encoding="utf-8")
