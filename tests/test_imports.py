"""The package's import graph: no cycles, and no part importing the meta-architecture above it.

Every import counts, lazy ones inside functions included: a cycle hidden in a function body is still two modules
that cannot be understood (or moved) one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "zoo"
# Slots and their support: none of them may import what assembles or runs them.
PARTS = ("bridges", "connectors", "decoders", "encoders", "heads", "kernels", "language", "losses", "metrics")
PARTS += ("projectors", "data", "callbacks")
ABOVE_PARTS = {"zoo.model", "zoo.module", "zoo.cli", "zoo.__main__", "zoo.runs", "zoo.curriculum", "zoo.grid"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """zoo module -> the zoo modules it names in an import statement (a package's own `__init__` when it names
    the package, the submodule when `from package import submodule`)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in files else base)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_reports_a_cycle_and_accepts_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    graph.pop("zoo")  # the root `__init__` imports every slot to register it; no module imports the root
    assert not any("zoo" in targets for targets in graph.values()), "a module imports the root package"
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("part", PARTS)
def test_parts_do_not_import_the_meta_architecture(part: str) -> None:
    graph = import_graph()
    upward = {
        f"{name} -> {target}"
        for name, targets in graph.items()
        if name == f"zoo.{part}" or name.startswith(f"zoo.{part}.")
        for target in targets & ABOVE_PARTS
    }
    assert not upward, sorted(upward)
