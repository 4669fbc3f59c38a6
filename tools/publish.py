"""`make publish`: push the built site to the `gh-pages` branch of `origin`.

Usage (the Makefile's targets call it; run it by hand only to see what it would do):

    python tools/publish.py record started|ok|failed   # `make book` notes how its build went
    python tools/publish.py                            # `make publish`

`make book` records in ``_build/book-status.json`` whether its build finished, at which
commit and with a clean working tree. `make publish` then:

1. refuses when ``repository.url`` in ``_config.yml`` is empty (there is nowhere to publish);
2. refuses when the working tree is dirty (the site would not match any commit);
3. refuses when the last `make book` failed or was interrupted (fix it, run `make book` again);
4. runs `make book` when the site was never built, or was built from another commit;
5. pushes ``_build/html`` to ``origin``'s ``gh-pages`` with ``ghp-import -n -p -f``: ``-n``
   adds ``.nojekyll``, without which GitHub Pages hides every file whose name starts with
   ``_`` (``_static/``, ``_images/``, ``_sources/``), ``-f`` replaces the branch's history
   by one commit, so the branch never grows with old sites.

A refusal prints why on stderr, exits with status 1 and pushes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

STATUS = Path("_build") / "book-status.json"
HTML = Path("_build") / "html"
OUTCOMES = ("started", "ok", "failed")


class Refusal(Exception):
    """A reason not to publish, said to the user."""


def git(root: Path, *args: str) -> str:
    """Run git in `root` and return its stdout, stripped; raise Refusal when git fails."""
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise Refusal(f"`git {' '.join(args)}` failed in {root}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def repository_url(root: Path) -> str:
    """``repository.url`` of ``root/_config.yml`` ('' when unset)."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")) or {}
    return str((config.get("repository") or {}).get("url") or "").strip()


def working_tree_changes(root: Path) -> list[str]:
    """`git status --porcelain` lines: tracked files changed and untracked files not ignored."""
    return [line for line in git(root, "status", "--porcelain").splitlines() if line.strip()]


def record(root: Path, outcome: str) -> dict:
    """Write how the build went (`outcome`), the commit and whether the tree was clean."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    try:
        commit, clean = git(root, "rev-parse", "HEAD"), not working_tree_changes(root)
    except Refusal:  # not a git checkout (a tarball): nothing to publish from anyway
        commit, clean = "", False
    status = {"outcome": outcome, "commit": commit, "clean_tree": clean}
    path = root / STATUS
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return status


def last_build(root: Path) -> dict | None:
    """The status `make book` recorded last, or None when it never ran here."""
    path = root / STATUS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def needs_build(root: Path, head: str) -> bool:
    """True when the site must be (re)built before publishing; Refusal when the last build failed."""
    status = last_build(root)
    if status is None:
        return True
    if status["outcome"] != "ok":
        what = "failed" if status["outcome"] == "failed" else "did not finish (interrupted?)"
        raise Refusal(f"the last `make book` {what} (at commit {status['commit'][:12] or '?'}): "
                      "fix what it reported and run `make book` again; nothing was pushed")
    return status["commit"] != head or not status["clean_tree"] or not (root / HTML / "index.html").is_file()


def publish(root: Path, make: list[str], remote: str = "origin", branch: str = "gh-pages") -> str:
    """Check, build if needed, push; return the commit that was published."""
    if not repository_url(root):
        raise Refusal("repository.url in _config.yml is empty: set it to your GitHub repository "
                      "(e.g. https://github.com/<you>/uvbook) and commit, then run `make publish`")
    changes = working_tree_changes(root)
    if changes:
        shown = "\n  ".join(changes[:10]) + ("\n  ..." if len(changes) > 10 else "")
        raise Refusal("the working tree has changes, so the site would match no commit: "
                      f"commit or stash them first:\n  {shown}")
    remotes = git(root, "remote").split()
    if remote not in remotes:
        raise Refusal(f"this repository has no remote {remote!r} (it has {remotes or 'none'}): "
                      f"add it with `git remote add {remote} <url>`")
    head = git(root, "rev-parse", "HEAD")
    if needs_build(root, head):
        print(f"Building the site for commit {head[:12]} first: {' '.join(make)}", flush=True)
        subprocess.run(make, cwd=root, check=False)
        if needs_build(root, head):  # raises when that build failed
            raise Refusal("`make book` did not leave a site built from this commit; nothing was pushed")
    ghp = Path(sys.executable).with_name("ghp-import")
    cmd = [str(ghp) if ghp.is_file() else "ghp-import", "-n", "-p", "-f", "-r", remote, "-b", branch,
           "-m", f"Site built from {head}", str(HTML)]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise Refusal(f"ghp-import failed:\n{proc.stdout}{proc.stderr}")
    return head


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the repository (default: this script's)")
    parser.add_argument("--remote", default="origin")
    parser.add_argument("--branch", default="gh-pages")
    parser.add_argument("--make", default=os.environ.get("MAKE", "make"),
                        help="the make program that builds the book (default: $MAKE or make)")
    parser.add_argument("action", nargs="*", help="`record <outcome>`, or nothing to publish")
    args = parser.parse_args(argv)
    if args.action:
        if len(args.action) != 2 or args.action[0] != "record" or args.action[1] not in OUTCOMES:
            parser.error(f"expected `record {'|'.join(OUTCOMES)}` or no action, got {' '.join(args.action)!r}")
        record(args.root, args.action[1])
        return 0
    try:
        head = publish(args.root, [args.make, "book"], args.remote, args.branch)
    except Refusal as why:
        print(f"make publish: not publishing: {why}", file=sys.stderr)
        return 1
    url = repository_url(args.root)
    print(f"Published the site of commit {head[:12]} to {args.remote}/{args.branch}. "
          f"On GitHub, set Settings > Pages > Source to the {args.branch} branch; the site of "
          f"{url} is then served at https://<owner>.github.io/<repository>/.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
