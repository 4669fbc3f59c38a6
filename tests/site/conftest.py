"""The site is built once per pytest session and shared by test_site.py and test_browser.py.

`make test` executes every notebook with nbmake (quick mode, `--overwrite`) in a copy of
the book under _quick/ and runs tests/site afterwards, in a second pytest run; `built_site`
builds that copy with execution switched off, so the site shows exactly the outputs
nbmake produced. UVBOOK_SITE_SRC points the tests at another copy (for experiments).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from site_helpers import HTML, SRC, toc_files


@pytest.fixture(scope="session")
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
