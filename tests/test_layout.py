"""The package's layout: wings import one way, and no module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest_browserml

PACKAGE = Path(pytest_browserml.__file__).parent
WINGS = {"browser", "golden", "budget", "report"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Each module of the package -> the package modules it imports (at any depth in the file)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    found.add(candidate if candidate in modules else target)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {target for target in found if target in modules and target != name}
    return graph


def _unit(module: str) -> str:
    """A wing counts as one unit; a top-level module is its own."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_module_imports_itself_back_through_others():
    graph = _imports()
    state: dict[str, str] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_wings_import_one_way():
    """plugin -> runner -> {browser, golden, budget} -> results: no wing imports a module that imports it back,
    none imports the layers above it, and results (what every layer shares) imports no other module."""
    edges = {(_unit(source), _unit(target)) for source, targets in _imports().items() for target in targets}
    edges = {(source, target) for source, target in edges if source != target}
    above = {"plugin", "runner", "context", "options"}
    upwards = sorted((wing, top) for wing, top in edges if wing in WINGS and top in above)
    assert not upwards, f"wings importing the layers above them: {upwards}"
    both_ways = sorted((a, b) for a, b in edges if (b, a) in edges and a < b)
    assert not both_ways, f"units importing each other: {both_ways}"
    assert not [target for source, target in edges if source == "results"], "results imports other modules"
