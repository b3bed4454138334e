"""The project's import graph, read from the source with ast (nothing is imported): which project
module imports which, at module level or inside functions. Used by the layout tests."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# where each top-level package's sources live
PACKAGES = {
    "accidents": REPO / "src" / "accidents",
    "api": REPO / "api",
    "bench": REPO / "bench",
    "tests": REPO / "tests",
}


def module_name(path: Path, package_dir: Path) -> str:
    parts = (package_dir.name, *path.relative_to(package_dir).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(packages: dict[str, Path] = PACKAGES) -> dict[str, Path]:
    return {module_name(path, root): path for root in packages.values() for path in sorted(root.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every known module this file imports (`from a.b import c` names a.b, and a.b.c if it is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def import_graph(packages: dict[str, Path] = PACKAGES) -> dict[str, set[str]]:
    files = project_modules(packages)
    known = set(files)
    # A package's own __init__ (run before its submodules) is no edge: a package importing its
    # submodules is the normal layout, not a cycle.
    return {name: imports_of(path, known) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(graph[node]):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return None
