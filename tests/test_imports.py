"""The package layering: every module's imports (also those inside functions) form no cycle, and
each package imports only downward: networks <- datasets <- offline <- launch <- scripts."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: a package may import from the packages listed after it, never from those before it
LAYERS = ("algorithms.launch", "algorithms.offline", "algorithms.datasets", "algorithms.networks")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules a file imports anywhere in its body (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found.update(name for name in names if name in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in (ROOT / "algorithms").rglob("*.py")}
    return {name: project_imports(path, set(paths)) - {name} for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_sees_a_cycle_and_a_clean_graph() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle() -> None:
    graph = import_graph()
    assert "algorithms.datasets.training_data" in graph  # the walk found the packages
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_packages_import_only_downward() -> None:
    for module, imported in import_graph().items():
        layer = next((i for i, p in enumerate(LAYERS) if module.startswith(p)), None)
        if layer is None:
            continue
        for name in imported:
            above = [p for p in LAYERS[:layer] if name.startswith(p)]
            assert not above, f"{module} imports {name}, a package above it"
