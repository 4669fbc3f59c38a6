"""The published site read as a reader sees it: every page of _toc.yml in headless Chromium.

The site that test_site.py built (the `built_site` fixture, once per session) is served on
127.0.0.1 and read with Playwright driving Debian's Chromium (`playwright install` cannot
download browsers on the CI machine; `make test` installs the `chromium` package with
apt-get when it is missing and we are root). Each page is visited once; the tests below
check what that visit saw: no console error, page error or failed request; no request to
another host; every equation typeset by MathJax; every image loaded; every internal link
and anchor present. The search page must find a term of chapter 5, and three pages are
photographed into _build/screenshots/ (at the repository root).

Without a Chromium these tests FAIL (they do not skip): see `chromium_executable`.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from bs4 import BeautifulSoup

from site_helpers import ROOT, SRC, toc_files

SCREENSHOTS = ROOT / "_build" / "screenshots"
SEARCH = ("book/05_vaes", "reparameterisation")  # (page that must be found, query)

# Console messages that cannot be fixed from our side, matched exactly: {text: why}.
# Empty: the causes found so far were fixed in _config.yml and book/_ext/uvbook_site.py
# ("Got invalid theme mode: ." -> html_context.default_mode; the /favicon.ico 404 ->
# html.favicon; "Identifier 'THEBE_JS_URL' has already been declared" -> uvbook_site).
ALLOWED_CONSOLE_ERRORS: dict[str, str] = {}


NO_CHROMIUM = (
    "No Chromium for the browser test. On Debian/Ubuntu, `make test` run as root installs it "
    "(apt-get install chromium); otherwise install Debian's `chromium` package, or run "
    "`.venv/bin/playwright install chromium`, or point UVBOOK_CHROMIUM at a Chromium/Chrome binary."
)


def chromium_executable() -> str | None:
    """$UVBOOK_CHROMIUM, else Debian's /usr/bin/chromium (or chromium-browser), else None
    (then Playwright's own Chromium, from `.venv/bin/playwright install chromium`, is tried)."""
    wanted = os.environ.get("UVBOOK_CHROMIUM")
    if wanted:
        if not (Path(wanted).is_file() and os.access(wanted, os.X_OK)):
            pytest.fail(f"UVBOOK_CHROMIUM={wanted} is not an executable file. {NO_CHROMIUM}")
        return wanted
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the Python package `playwright` is missing: `make setup` installs requirements.txt")
    executable = chromium_executable()
    with sync_playwright() as p:
        failure = None
        try:
            # Every host but 127.0.0.1 fails to resolve, at once: a request that leaves the
            # site is recorded (test_no_request_leaves_the_site) but goes nowhere. (Playwright's
            # request interception would do the same, but it stops Chromium fetching the icon.)
            browser = p.chromium.launch(executable_path=executable, headless=True,
                                        args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        except PlaywrightError as exc:
            failure = str(exc).splitlines()[0]
        if failure:
            pytest.fail(f"{NO_CHROMIUM}\n(launching {executable or 'Playwright’s Chromium'} failed: {failure})")
        yield browser
        browser.close()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site; remembers every request, with the status it answered."""

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def log_request(self, code="-", size="-"):
        try:
            self.server.served.append((int(code), self.path))
        except (TypeError, ValueError):
            pass


@pytest.fixture(scope="module")
def site_url(built_site):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_Handler, directory=str(built_site)))
    server.served = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", server
    server.shutdown()
    server.server_close()


def _is_local(url: str, base: str) -> bool:
    return url.startswith(base) or url.startswith(("data:", "blob:", "about:"))


# What a page visit reads from the DOM once the page has settled (see _SETTLED), after the
# images of the article have loaded or failed (lazy ones are told to load now).
_INSPECT = """async () => {
  const imgs = Array.from(document.querySelectorAll("main img"));
  imgs.forEach(i => { i.loading = "eager"; });
  await Promise.race([
    Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; }))),
    new Promise(r => setTimeout(r, 10000)),
  ]);
  const maths = Array.from(document.querySelectorAll("main .math"));
  const skip = "pre, code, script, style, textarea, mjx-container, .cell_input, .highlight";
  const walker = document.createTreeWalker(document.querySelector("main") || document.body, NodeFilter.SHOW_TEXT);
  const raw = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const t = n.textContent;
    if (!/\\$\\$|\\\\\\(|\\\\\\[/.test(t)) continue;
    if (n.parentElement && n.parentElement.closest(skip)) continue;
    raw.push(t.trim().slice(0, 120));
  }
  return {
    maths: maths.length,
    unrendered: maths.filter(m => !m.querySelector("mjx-container")).map(m => m.textContent.trim().slice(0, 80)),
    mjx: document.querySelectorAll("mjx-container").length,
    merrors: Array.from(document.querySelectorAll("mjx-merror")).map(e => e.textContent.slice(0, 80)),
    raw_tex: raw,
    images: imgs.map(i => ({src: i.currentSrc || i.src, complete: i.complete, width: i.naturalWidth,
                            output: !!i.closest(".cell_output, .output")})),
    links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
  };
}"""

# Settled: MathJax has typeset the page and the fonts it (and the theme) asked for are in.
# (Playwright's "networkidle" proved flaky here: it sometimes never came.)
_SETTLED = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  await document.fonts.ready;
  return true;
}"""


def _screenshot_targets(docs: list[str]) -> dict[str, tuple[str, str]]:
    """doc -> (file name, CSS selector to scroll to) for the three photographed pages."""
    results = next((d for d in ("book/appendix_results", "book/06_recognition") if d in docs), "book/index")
    return {
        "book/05_vaes": ("equations-05_vaes.png", "main div.math"),
        "book/03_autoencoders": ("figures-03_autoencoders.png", "main .cell_output img"),
        results: (f"results-table-{results.split('/')[-1]}.png", "main table"),
    }


@pytest.fixture(scope="module")
def visits(browser, site_url):
    """Visit every page of the table of contents, and the search page, once."""
    base, server = site_url
    docs = toc_files(SRC / "_toc.yml")
    shots = _screenshot_targets(docs)
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    foreign: list[str] = []
    context.on("request", lambda r: None if _is_local(r.url, base) else foreign.append(r.url))
    started = time.monotonic()
    out = {}
    pages = [(doc, f"{doc}.html") for doc in docs] + [("search", f"search.html?q={SEARCH[1]}")]
    for name, path in pages:
        page_started = time.monotonic()
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda m, p=problems: p.append(f"console.{m.type}: {m.text} ({m.location.get('url')})")
                if m.type == "error" and m.text not in ALLOWED_CONSOLE_ERRORS else None)
        page.on("pageerror", lambda e, p=problems: p.append(f"page error: {e}"))
        page.on("requestfailed", lambda r, p=problems: p.append(f"request failed: {r.url} ({r.failure})")
                if _is_local(r.url, base) else None)
        page.on("response", lambda r, p=problems: p.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
        page.goto(base + path, wait_until="load")
        page.evaluate(_SETTLED)
        if name == docs[0]:
            # Chromium asks for the site's icon a moment after the page has loaded (once per
            # site, outside Playwright's request events): wait for it, so that a missing
            # icon (the /favicon.ico 404) shows up as a console error and a server error.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not any("favicon" in p for _, p in server.served):
                page.wait_for_timeout(100)
            page.wait_for_timeout(200)
        report = page.evaluate(_INSPECT)
        if name == "search":
            page.wait_for_selector("#search-results .search-summary", timeout=20000)
            report["search_summary"] = page.inner_text("#search-results .search-summary")
            report["search_hits"] = page.eval_on_selector_all("#search-results ul.search li a",
                                                              "as => as.map(a => a.href)")
        if name in shots:
            file, selector = shots[name]
            target = page.locator(selector).first
            if target.count():
                target.evaluate("e => e.scrollIntoView({block: 'center'})")
            page.evaluate(_SETTLED)  # fonts the scrolled-to part may have asked for
            page.screenshot(path=str(SCREENSHOTS / file))
            report["screenshot"] = (file, bool(target.count()))
        report["problems"] = problems
        page.close()
        report["seconds"] = time.monotonic() - page_started
        out[name] = report
    context.close()
    elapsed = time.monotonic() - started
    slowest = sorted(out.items(), key=lambda kv: -kv[1]["seconds"])[:3]
    print(f"\nbrowser test: {len(pages)} pages read in {elapsed:.1f} s (slowest: "
          + ", ".join(f"{name} {r['seconds']:.1f} s" for name, r in slowest)
          + f"); screenshots in {SCREENSHOTS}: " + ", ".join(f for f, _ in shots.values()))
    return {"base": base, "pages": out, "foreign": foreign, "served": list(server.served),
            "elapsed": elapsed, "shots": shots}


def test_pages_load_without_console_errors_or_failed_requests(visits):
    bad = {name: r["problems"] for name, r in visits["pages"].items() if r["problems"]}
    bad_lines = [f"{name}: {p}" for name, ps in bad.items() for p in ps]
    bad_lines += [f"the server answered {status} to {path}" for status, path in visits["served"] if status >= 400]
    assert not bad_lines, "\n".join(bad_lines)


def test_no_request_leaves_the_site(visits):
    assert not visits["foreign"], "requests to other hosts:\n" + "\n".join(sorted(set(visits["foreign"])))


def test_every_equation_is_typeset(visits):
    for name, r in visits["pages"].items():
        if name == "search":
            continue  # Sphinx's result snippets are plain-text extracts of the source, TeX included
        assert not r["unrendered"], f"{name}: equations MathJax did not typeset: {r['unrendered'][:5]}"
        assert not r["merrors"], f"{name}: MathJax errors: {r['merrors'][:5]}"
        assert not r["raw_tex"], f"{name}: raw TeX left in the text: {r['raw_tex'][:5]}"
        if r["maths"]:
            assert r["mjx"] >= r["maths"], f"{name}: {r['maths']} equations, {r['mjx']} typeset"
    assert visits["pages"]["book/05_vaes"]["mjx"] > 0, "chapter 5 shows no typeset equation"


def test_every_image_has_loaded(visits):
    outputs = 0
    for name, r in visits["pages"].items():
        broken = [i["src"] for i in r["images"] if not (i["complete"] and i["width"] > 0)]
        assert not broken, f"{name}: images that did not load: {broken}"
        outputs += sum(i["output"] for i in r["images"])
    assert outputs, "no notebook output shows an image: were the notebooks executed?"


def test_every_internal_link_resolves(visits, built_site):
    base = visits["base"]
    ids: dict[Path, set[str]] = {}

    def anchors(path: Path) -> set[str]:
        if path not in ids:
            soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
            ids[path] = {t["id"] for t in soup.find_all(id=True)} | {t["name"] for t in soup.find_all("a", attrs={"name": True})}
        return ids[path]

    broken, checked = [], 0
    for name, r in visits["pages"].items():
        for href in sorted(set(r["links"])):
            if not href.startswith(base):
                continue  # another host (not fetched: no internet in CI), mailto:, javascript:
            url = urlparse(href)
            rel = unquote(url.path)[1:]
            target = built_site / rel
            if rel == "" or rel.endswith("/"):
                target = target / "index.html"
            checked += 1
            if not target.is_file():
                broken.append(f"{name}: {href} (no file {target.relative_to(built_site)})")
            elif url.fragment and target.suffix == ".html" and unquote(url.fragment) not in anchors(target):
                broken.append(f"{name}: {href} (no id {unquote(url.fragment)!r} in {rel})")
    assert checked, "no internal link found"
    assert not broken, "broken internal links:\n" + "\n".join(broken)


def test_search_finds_chapter_5(visits):
    doc, query = SEARCH
    r = visits["pages"]["search"]
    assert r["search_hits"], f"searching {query!r} found nothing: {r.get('search_summary')}"
    assert any(urlparse(h).path.endswith(f"/{doc}.html") for h in r["search_hits"]), (
        f"searching {query!r} does not find {doc}: {r['search_hits']}")


def test_screenshots(visits):
    for doc, (file, selector) in visits["shots"].items():
        assert doc in visits["pages"], f"{doc} is not in _toc.yml: no screenshot {file}"
        path = SCREENSHOTS / file
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"no screenshot {path}"
        shot_file, found = visits["pages"][doc]["screenshot"]
        assert found or doc == "book/index", f"{doc}: nothing matches {selector!r} to photograph"



def test_a_solution_stays_hidden_until_the_reader_opens_it(browser, site_url, built_site):
    """Exercises' solutions (sphinx-exercise, `:class: dropdown`) are hidden on arrival and
    shown by their toggle; at least one solution holds the output of code the build ran."""
    base, _ = site_url
    pages = [doc for doc in toc_files(SRC / "_toc.yml")
             if "solution dropdown" in (built_site / f"{doc}.html").read_text(encoding="utf-8")]
    assert pages, "no page has a solution in a dropdown"
    ran = [doc for doc in pages
           if BeautifulSoup((built_site / f"{doc}.html").read_text(encoding="utf-8"), "html.parser")
           .select("div.solution .cell_output")]
    assert ran, "no solution shows the output of code executed in the build"
    page = browser.new_page()
    try:
        page.goto(base + f"{ran[0]}.html", wait_until="load")
        solution = page.locator("div.solution.dropdown:has(.cell_output)").first
        body = solution.locator(".cell_output").first
        assert not body.is_visible(), f"{ran[0]}: a solution is shown before the reader asks"
        solution.locator("button.toggle-button").first.click()
        body.wait_for(state="visible", timeout=5000)
        assert body.is_visible()
    finally:
        page.close()


def test_every_diagram_is_drawn(browser, site_url, built_site):
    """The diagrams (sphinx.ext.graphviz, SVG in an <object>) load as SVG, each with its alt text."""
    base, _ = site_url
    pages = {doc: BeautifulSoup((built_site / f"{doc}.html").read_text(encoding="utf-8"), "html.parser")
             .select("object.graphviz") for doc in toc_files(SRC / "_toc.yml")}
    pages = {doc: objects for doc, objects in pages.items() if objects}
    assert sum(map(len, pages.values())) >= 7, f"only {sum(map(len, pages.values()))} diagrams: {list(pages)}"
    for doc, objects in pages.items():
        assert all(o.get_text(strip=True) for o in objects), f"{doc}: a diagram without alt text"
    page = browser.new_page()
    try:
        for doc, objects in pages.items():
            page.goto(base + f"{doc}.html", wait_until="load")
            drawn = page.eval_on_selector_all(
                "object.graphviz", "os => os.map(o => !!(o.contentDocument && o.contentDocument.querySelector('svg g.node')))")
            assert drawn == [True] * len(objects), f"{doc}: diagrams not drawn: {drawn}"
    finally:
        page.close()


# Chapter 5's latent explorer: what the page script draws must be what the Keras decoder gives.
EXPLORER_PAGE = "book/05_vaes"
_READ_STRIP = """c => Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data)"""

_READ_EXPLORER = """() => {
  const c = document.querySelector("canvas.uvbook-explorer-image");
  const d = c.getContext("2d").getImageData(0, 0, 28, 28).data;
  const v = [];
  for (let i = 0; i < 784; i++) v.push(1 - d[4 * i] / 255);   // drawn dark on white: 1 - grey
  return {z: [parseFloat(c.dataset.z1), parseFloat(c.dataset.z2)], v: v};
}"""


def check_explorer(browser, base: str, site: Path) -> float:
    """Open Chapter 5, click the pad at the reference pixels that uvbook.explorer.export_explorer
    decoded with the Keras model when the chapter ran, and compare the canvas with those
    images; compare the interpolation strip's ends with the exported decoder's images of its
    default ends. Returns the largest pixel difference; fails on a console error, a request to
    another host, or files over 2 MB."""
    import base64
    import json

    import numpy as np

    from uvbook.explorer import decode_export, read_export

    reference = json.loads((site / "_static" / "explorer" / "reference.json").read_text(encoding="utf-8"))
    size = sum((site / "_static" / name).stat().st_size
               for name in ("explorer/vae2d.js", "explorer/reference.json", "explorer.js", "explorer.css"))
    assert size < 2_000_000, f"the explorer's files weigh {size / 1e6:.2f} MB"
    page = browser.new_page()
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    worst = 0.0
    try:
        page.goto(base + f"{EXPLORER_PAGE}.html", wait_until="load")
        page.wait_for_selector("#uvbook-latent-explorer[data-ready='true']", timeout=10_000)
        pad = page.locator("canvas.uvbook-explorer-pad")
        pad.scroll_into_view_if_needed()
        pixels = page.evaluate("() => window.UVBOOK_VAE2D.pad.pixels")
        scale = pad.evaluate("c => c.clientWidth") / pixels     # CSS pixels per pad pixel
        for (col, row), z, expected in zip(reference["pixels"], reference["points"], reference["images"]):
            # Playwright's position is from the padding edge, as the script's offsetX is
            pad.click(position={"x": (col + 0.5) * scale, "y": (row + 0.5) * scale})
            got = page.evaluate(_READ_EXPLORER)
            assert np.allclose(got["z"], z, atol=1e-3), (col, row, got["z"], z)
            gap = float(np.max(np.abs(np.asarray(got["v"]) - np.asarray(expected).ravel())))
            assert gap <= 0.02, f"pixel ({col}, {row}) -> z = {z}: the page's image is {gap:.3f} off"
            worst = max(worst, gap)
        # the strip's first and last frames are the decoded codes of the default ends A and B,
        # the test images nearest (-1.5, 0) and (1.5, 0)
        strip = np.asarray(page.eval_on_selector("canvas.uvbook-explorer-strip", _READ_STRIP))
        frames = 1.0 - strip.reshape(28, -1, 28, 4)[..., 0].transpose(1, 0, 2) / 255.0   # (frames, 28, 28)
        assert strip.reshape(-1, 4)[:, 3].min() == 255, "the interpolation strip is not fully drawn"
        data = read_export(site / "_static" / "explorer" / "vae2d.js")
        codes = np.frombuffer(base64.b64decode(data["points"]), "<f2").astype(np.float32).reshape(-1, 2)
        ends = [codes[np.argmin(((codes - np.array(t, np.float32)) ** 2).sum(axis=1))] for t in ((-1.5, 0), (1.5, 0))]
        expected = decode_export(data, np.stack(ends))
        gap = float(np.abs(frames[[0, -1]] - expected).max())
        assert gap <= 0.02, f"the strip's ends are {gap:.3f} off the decoded test codes A and B"
        worst = max(worst, gap)
    finally:
        page.close()
    assert not errors, f"console errors on {EXPLORER_PAGE}: {errors}"
    outside = [u for u in requests if not _is_local(u, base)]
    assert not outside, f"{EXPLORER_PAGE} asked other hosts for {outside}"
    return worst


def test_the_latent_explorer_decodes_in_the_browser(browser, site_url, built_site):
    """Three clicks on the pad decode in the browser what the Python decoder decodes there."""
    base, _ = site_url
    assert check_explorer(browser, base, built_site) <= 0.02


def test_the_latent_explorer_degrades_to_a_sentence_without_javascript(browser, site_url):
    base, _ = site_url
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(base + f"{EXPLORER_PAGE}.html", wait_until="load")
        assert "needs JavaScript" in page.inner_text("#uvbook-latent-explorer")
        assert page.locator("canvas.uvbook-explorer-pad").count() == 0
        # the sentence points to the decoded grid above it: that figure is there and loads
        grid = page.locator("#uvbook-latent-explorer").locator("xpath=preceding::img[1]")
        assert grid.count() == 1 and grid.evaluate("i => i.complete && i.naturalWidth > 0"), \
            "the static figure the fallback sentence points to is missing"
    finally:
        context.close()
