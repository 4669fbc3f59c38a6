"""A throwaway project for testing `make publish`: a git repository with `_config.yml`, a
Makefile whose `book` target builds a small site, and a bare repository as its `origin`
(standing in for GitHub). Used by tests/unit/test_publish.py and tests/site/test_publish_site.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "publish.py"
EXAMPLE_URL = "https://github.com/example-org/uvbook"  # test value only


def sh(cwd: Path, *cmd: str) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def gh_pages_files(bare: Path) -> list[str] | None:
    """Files on the bare repository's gh-pages branch, or None when it has no such branch."""
    refs = sh(bare, "git", "for-each-ref", "--format=%(refname)", "refs/heads/gh-pages")
    if not refs.strip():
        return None
    return sh(bare, "git", "ls-tree", "-r", "--name-only", "gh-pages").split()


def make_project(tmp_path: Path, url: str = EXAMPLE_URL, book_recipe: str | None = None) -> tuple[Path, Path]:
    """A git repository with a `_config.yml`, an `origin` (a bare repository) and a Makefile
    whose `book` target builds a two-page site and records it as `make book` does."""
    bare, proj = tmp_path / "origin.git", tmp_path / "proj"
    sh(tmp_path, "git", "init", "-q", "--bare", str(bare))
    proj.mkdir()
    sh(proj, "git", "init", "-q", "-b", "main")
    sh(proj, "git", "config", "user.email", "test@example.org")
    sh(proj, "git", "config", "user.name", "test")
    sh(proj, "git", "config", "commit.gpgsign", "false")
    (proj / "_config.yml").write_text(yaml.safe_dump({"title": "A book", "repository": {"url": url}}))
    (proj / ".gitignore").write_text("_build/\n")
    recipe = book_recipe or (
        "\tmkdir -p _build/html/_static\n"
        "\techo '<html>home</html>' > _build/html/index.html\n"
        "\techo '<html>ch1</html>' > _build/html/ch1.html\n"
        "\techo 'body{}' > _build/html/_static/site.css\n"
        f"\t{sys.executable} {SCRIPT} --root . record ok\n")
    (proj / "Makefile").write_text("book:\n" + recipe)
    sh(proj, "git", "add", "-A")
    sh(proj, "git", "commit", "-q", "-m", "init")
    sh(proj, "git", "remote", "add", "origin", str(bare))
    return proj, bare
