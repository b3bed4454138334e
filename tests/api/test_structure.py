"""Layout rules a newcomer relies on: no import cycle inside `api/`, services read only through
`api.deps` (the lifespan in `api.main` is the one writer of `app.state`), settings import nothing
from the app."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "api"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _api_imports(path: Path, known: set[str]) -> set[str]:
    """Every `api.*` module this file imports, at module level or inside functions."""
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


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    known = set(files)
    # A package's own __init__ (run before its submodules) is no edge: a package importing its
    # submodules is the normal layout, not a cycle.
    return {name: _api_imports(path, known) - {name} for name, path in files.items()}


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


def test_find_cycle_detects_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_api():
    graph = import_graph()
    assert "api.core.security" in graph["api.db.crud"]  # the graph sees real edges
    assert find_cycle(graph) is None


def test_settings_import_nothing_from_the_app():
    assert import_graph()["api.core.config"] <= {"api", "api.core"}


def test_app_state_is_touched_only_by_the_lifespan_and_deps():
    users = sorted(
        str(path.relative_to(REPO)) for path in PACKAGE.rglob("*.py") if "app.state" in path.read_text(encoding="utf-8")
    )
    assert users == ["api/deps.py", "api/main.py"]
    main = (PACKAGE / "main.py").read_text(encoding="utf-8")
    assert main.count("app.state") == 1 and "app.state.services = services" in main
