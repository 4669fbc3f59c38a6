# The two commands of the README. Both set everything up themselves on a fresh
# machine with Python 3.11: a virtual environment in .venv, the pinned packages,
# and a verified copy of Fashion-MNIST.
#
#   make book   execute every notebook in full mode and build the site into _build/html
#   make test   unit tests, every notebook in quick mode (nbmake), the site built
#               from those quick-mode outputs with warnings as errors, offline checks
#   make publish  push the site of `make book` to the gh-pages branch of origin
#               (builds first if needed; see tools/publish.py and the README)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
QUICK  := _quick

.PHONY: book test publish setup data browser graphviz clean clean-cache

# _build/book-status.json says whether the last build finished, at which commit and with a
# clean tree: `make publish` reads it.
# tools/execute_book.py first executes every notebook whose code changed (full mode), two at a
# time in dependency order, into Jupyter Book's execution cache; the build then reads them from it.
book: setup data graphviz
	@$(PY) tools/publish.py record started
	$(PY) tools/execute_book.py || { $(PY) tools/publish.py record failed; exit 1; }
	$(VENV)/bin/jupyter-book build . -W -n --keep-going || { $(PY) tools/publish.py record failed; exit 1; }
	@$(PY) tools/publish.py record ok
	@echo "The site is in _build/html (open _build/html/index.html)."

publish: setup
	$(PY) tools/publish.py

# Two pytest runs. The notebooks are executed (quick mode) in a copy of the book under
# $(QUICK) (not under _build: nbmake skips any path with a _build part), so that their
# outputs never touch book/ and the site tests build from them without executing anything
# again; quick-mode outputs never enter full mode's execution cache. The first run shares
# the unit tests and the chapters between two workers (pytest-xdist), in the two ordered
# lanes of tests/schedule.py; the second runs what reads every chapter's output: the
# results appendix and the site tests. --durations lists the slowest items, to rebalance the lanes.
NBMAKE := --nbmake --overwrite --nbmake-timeout=900
test: setup data browser graphviz
	rm -rf $(QUICK) && mkdir -p $(QUICK)
	cp -r book _config.yml _toc.yml $(QUICK)/
	UVBOOK_QUICK=1 $(PY) -m pytest -p no:cacheprovider -p tests.schedule -n 2 --dist loadgroup --durations=15 \
	    tests/unit $(NBMAKE) $(QUICK)/book --ignore $(QUICK)/book/appendix_results.ipynb
	UVBOOK_QUICK=1 $(PY) -m pytest -p no:cacheprovider $(NBMAKE) $(QUICK)/book/appendix_results.ipynb tests/site

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

# Fashion-MNIST: a verified local copy, else Debian's package when we are root with
# apt-get, else nothing here (the loader downloads it through Keras on first use).
data: setup
	@if $(PY) -m uvbook.data --check-local; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's dataset-fashion-mnist"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist \
	    && $(PY) -m uvbook.data --check-local; \
	else echo "No local Fashion-MNIST: the notebooks will download it through Keras."; fi

# A Chromium for tests/site/test_browser.py, which drives it with Playwright (Playwright's
# own browser download is not reachable from CI): Debian's chromium when we are root with
# apt-get; else Playwright's Chromium (`playwright install`, needs internet). Failing
# both, the make goes on and the browser test fails, saying what to install.
browser: setup
	@if [ -n "$$UVBOOK_CHROMIUM" ] || [ -x /usr/bin/chromium ] || [ -x /usr/bin/chromium-browser ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's chromium for the browser test"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	    || echo "Could not install chromium: tests/site/test_browser.py will fail."; \
	else echo "No /usr/bin/chromium and not root with apt-get: trying Playwright's Chromium"; \
	    $(VENV)/bin/playwright install chromium \
	    || echo "No Chromium: tests/site/test_browser.py will fail (install Debian's chromium, or set UVBOOK_CHROMIUM)."; fi

# Graphviz's `dot` draws the chapters' diagrams when the site is built (sphinx.ext.graphviz):
# Debian's graphviz when we are root with apt-get; else stop and say what to install.
graphviz:
	@if command -v dot >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's graphviz for the diagrams"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz; \
	else echo "No Graphviz: install it (apt-get install graphviz, brew install graphviz) for the diagrams"; exit 1; fi

clean:
	rm -rf _build $(QUICK)

# The execution cache keys on cell code only: after changing uvbook, clear it to retrain.
clean-cache:
	rm -rf _build/.jupyter_cache
