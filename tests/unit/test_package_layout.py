"""The package's shape: imports run downward through named layers, no cycle, no Keras internals.

Read from the source with `ast` (nothing is imported), so a new module or import that breaks
the layering fails here with the offending file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "uvbook"

#: Bottom to top. A module may import modules of its own layer or below, never above.
LAYERS: list[set[str]] = [
    {"uvbook", "uvbook.modes", "uvbook.validate", "uvbook._io"},
    {"uvbook.data", "uvbook.layers", "uvbook.plots"},
    {"uvbook.models", "uvbook.models.classifier", "uvbook.models.autoencoder", "uvbook.models.vae",
     "uvbook.models.gan", "uvbook.models.contrastive", "uvbook.models.semisup",
     "uvbook.models.semigen", "uvbook.models.diffusion", "uvbook.models.masked", "uvbook.models.scan"},
    {"uvbook.evaluate"},                 # metrics and the evaluation protocol
    {"uvbook.callbacks"},                # resume, guards, monitors (monitors use evaluate)
    {"uvbook.train"},                    # train_or_load
    {"uvbook.recipes"},                  # every model the book trains
    {"uvbook.represent", "uvbook.results", "uvbook.explorer"},
    {"uvbook.__main__"},
]

#: Private attributes of objects uvbook does not own, each with the reason it is still used.
PRIVATE_ALLOWED = {
    ("uvbook/callbacks.py", "_initial_epoch"):
        "EpochCheckpoint resumes at an epoch the way keras.callbacks.BackupAndRestore does "
        "(fit's public initial_epoch= is out of a callback's reach); BackupAndRestore itself "
        "does not restore a SeedGenerator's state (test_reliability.py)",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> list[tuple[str, int, bool, str]]:
    """``(imported uvbook module, line, inside a function?, the line's text)`` for every import."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    known = set(modules())
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            targets = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                # `from uvbook import layers` imports the module uvbook.layers
                targets = [f"{child.module}.{a.name}" if f"{child.module}.{a.name}" in known else child.module
                           for a in child.names]
            for target in targets:
                if target.split(".")[0] in ("uvbook", "benchmarks"):
                    found.append((target, child.lineno, in_function, lines[child.end_lineno - 1]))
            visit(child, inner)

    visit(ast.parse(source), False)
    return found


def graph() -> dict[str, set[str]]:
    return {name: {t for t, *_ in imports_of(path) if t != name} for name, path in modules().items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None and (cycle := dfs(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if state.get(node) is None and (cycle := dfs(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_every_module_has_a_layer():
    layered = set().union(*LAYERS)
    assert sorted(set(modules()) - layered) == [], "add the new module to LAYERS"
    assert sorted(layered - set(modules())) == []


def test_no_import_cycle():
    assert find_cycle(graph()) is None


def test_imports_run_downward_and_never_into_benchmarks():
    level = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    upward = []
    for name, path in modules().items():
        for target, line, _, _ in imports_of(path):
            if target.split(".")[0] == "benchmarks":
                upward.append(f"{path.name}:{line} imports {target}")
            elif target in level and level[target] > level[name]:
                upward.append(f"{path.name}:{line} ({name}, layer {level[name]}) imports {target} (layer {level[target]})")
    assert upward == []


def test_function_level_imports_of_uvbook_say_why():
    silent = [f"{path.name}:{line}: {text.strip()}" for path in modules().values()
              for target, line, inside, text in imports_of(path) if inside and "#" not in text]
    assert silent == [], "import at the top of the module, or say in a comment on the line why not"


def private_accesses(path: Path) -> set[str]:
    """Attribute names starting with one underscore read or written on objects other than self/cls,
    that no uvbook module defines (so they belong to Keras, TensorFlow or another library)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            found.add(node.attr)
        # getattr(obj, "_name", ...) and hasattr(obj, "_name") read a private attribute too
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str) and node.args[1].value.startswith("_") \
                and not node.args[1].value.startswith("__"):
            found.add(node.args[1].value)
    return found


def defined_private_names() -> set[str]:
    names = set()
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "self" and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return {n for n in names if n.startswith("_")}


def test_no_private_attribute_of_keras_or_tensorflow_outside_the_allow_list():
    ours = defined_private_names()
    foreign = {(str(path.relative_to(PACKAGE.parent)), attr)
               for path in modules().values() for attr in private_accesses(path) - ours}
    assert sorted(foreign - set(PRIVATE_ALLOWED)) == []
    assert sorted(set(PRIVATE_ALLOWED) - foreign) == [], "an allowed use is gone: drop it from PRIVATE_ALLOWED"


@pytest.mark.parametrize("name", sorted(modules()))
def test_each_module_opens_with_a_docstring(name):
    tree = ast.parse(modules()[name].read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree)
    assert doc and len(doc.split("\n\n")[0]) < 400, f"{name}: one short opening paragraph"
