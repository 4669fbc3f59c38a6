"""tools/publish.py (`make publish`) and the GitHub workflow.

The push goes to a bare repository in a temporary folder standing in for GitHub; the site
is a small fake one here (tests/site/test_publish_site.py pushes the real quick-mode site).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "publish.py"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))

sys.path.insert(0, str(SCRIPT.parent))
sys.path.insert(0, str(ROOT / "tests"))
import publish  # noqa: E402
from publish_project import EXAMPLE_URL, gh_pages_files, make_project, sh  # noqa: E402


def run_publish(proj: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(proj), "--make", "make"],
                          capture_output=True, text=True, timeout=300)


def test_publish_builds_when_needed_then_pushes_the_site_with_nojekyll(tmp_path):
    proj, bare = make_project(tmp_path)
    proc = run_publish(proj)
    assert proc.returncode == 0, proc.stderr
    assert "Building the site" in proc.stdout  # no status yet: it ran `make book` first
    files = gh_pages_files(bare)
    assert files is not None and sorted(files) == [".nojekyll", "_static/site.css", "ch1.html", "index.html"]
    head = sh(proj, "git", "rev-parse", "HEAD").strip()
    assert sh(bare, "git", "log", "-1", "--format=%s", "gh-pages").strip() == f"Site built from {head}"


def test_publish_does_not_rebuild_a_site_built_from_this_commit(tmp_path):
    proj, bare = make_project(tmp_path)
    assert subprocess.run(["make", "book"], cwd=proj, capture_output=True).returncode == 0
    (proj / "_build" / "html" / "marker.html").write_text("built once")  # a rebuild would delete nothing, but the
    # message would say "Building": the status says this commit was built with a clean tree
    proc = run_publish(proj)
    assert proc.returncode == 0, proc.stderr
    assert "Building the site" not in proc.stdout
    assert "marker.html" in gh_pages_files(bare)


def test_publish_rebuilds_after_a_new_commit(tmp_path):
    proj, bare = make_project(tmp_path)
    assert subprocess.run(["make", "book"], cwd=proj, capture_output=True).returncode == 0
    (proj / "notes.txt").write_text("a change")
    sh(proj, "git", "add", "notes.txt")
    sh(proj, "git", "commit", "-q", "-m", "second")
    proc = run_publish(proj)
    assert proc.returncode == 0, proc.stderr
    assert "Building the site" in proc.stdout
    head = sh(proj, "git", "rev-parse", "HEAD").strip()
    assert publish.last_build(proj)["commit"] == head


@pytest.mark.parametrize("case, message", [
    ("empty_url", "repository.url in _config.yml is empty"),
    ("dirty_tree", "the working tree has changes"),
    ("failed_book", "the last `make book` failed"),
    ("interrupted_book", "the last `make book` did not finish"),
    ("build_fails_now", "the last `make book` failed"),
    ("no_origin", "no remote 'origin'"),
])
def test_publish_refuses_with_its_reason_and_pushes_nothing(tmp_path, case, message):
    failing = f"\t{sys.executable} {SCRIPT} --root . record started\n\tfalse || {{ {sys.executable} {SCRIPT} --root . record failed; exit 1; }}\n"
    proj, bare = make_project(tmp_path, url="" if case == "empty_url" else EXAMPLE_URL,
                              book_recipe=failing if case == "build_fails_now" else None)
    if case == "dirty_tree":
        (proj / "draft.md").write_text("not committed")
    if case in ("failed_book", "interrupted_book"):
        assert subprocess.run(["make", "book"], cwd=proj, capture_output=True).returncode == 0
        publish.record(proj, "failed" if case == "failed_book" else "started")
    if case == "no_origin":
        sh(proj, "git", "remote", "remove", "origin")
    proc = run_publish(proj)
    assert proc.returncode == 1
    assert message in proc.stderr, proc.stderr
    assert "nothing was pushed" in proc.stderr or case in ("empty_url", "dirty_tree", "no_origin")
    assert gh_pages_files(bare) is None


def test_record_writes_the_outcome_commit_and_tree_state(tmp_path):
    proj, _ = make_project(tmp_path)
    status = publish.record(proj, "ok")
    assert status == {"outcome": "ok", "commit": sh(proj, "git", "rev-parse", "HEAD").strip(), "clean_tree": True}
    (proj / "draft.md").write_text("x")
    assert publish.record(proj, "ok")["clean_tree"] is False
    assert publish.needs_build(proj, status["commit"]) is True  # built from a dirty tree: rebuild
    with pytest.raises(ValueError, match=r"outcome must be one of .*got 'done'"):
        publish.record(proj, "done")


def test_make_book_records_its_outcome_and_publish_calls_the_script():
    text = (ROOT / "Makefile").read_text()
    book = text.split("\nbook:", 1)[1].split("\n\n", 1)[0]
    assert "tools/publish.py record started" in book and "record failed; exit 1" in book
    assert book.rstrip().splitlines()[-2].strip().startswith("@$(PY) tools/publish.py record ok")
    dry = subprocess.run(["make", "-n", "publish"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0 and "tools/publish.py" in dry.stdout and "ghp-import" not in dry.stdout


@pytest.mark.skipif(not WORKFLOWS, reason="no workflow files")
def test_workflows_validate_against_githubs_schema(tmp_path):
    checker = Path(sys.executable).with_name("check-jsonschema")
    cmd = [str(checker), "--builtin-schema", "vendor.github-workflows"]
    proc = subprocess.run(cmd + [str(p) for p in WORKFLOWS], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the check can fail: a job without runs-on is refused
    broken = yaml.safe_load(WORKFLOWS[0].read_text())
    del broken["jobs"]["test"]["runs-on"]
    bad = tmp_path / "broken.yml"
    bad.write_text(yaml.safe_dump(broken))
    assert subprocess.run(cmd + [str(bad)], capture_output=True).returncode != 0


def test_workflow_tests_everything_and_deploys_only_main():
    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    on = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert "push" in on and "pull_request" in on
    steps = {name: [s.get("run") or s.get("uses") for s in job.get("steps", [])] for name, job in flow["jobs"].items()}
    assert "make test" in steps["test"] and "make book" in steps["book"]
    assert "main" in flow["jobs"]["book"]["if"] and flow["jobs"]["deploy"]["needs"] == "book"
    cached = [s["with"]["path"] for s in flow["jobs"]["book"]["steps"] if "actions/cache" in str(s.get("uses"))]
    assert cached and "~/.cache/uvbook" in cached[0] and "_build/.jupyter_cache" in cached[0]
    uses = [u for job in steps.values() for u in job if u and "@" in u]
    assert uses and all(u.split("@")[1][:1] == "v" and u.split("@")[1].count(".") == 2 for u in uses), uses
