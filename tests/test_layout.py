"""The repository's layout rules (docs/development.md): no import cycle anywhere, imports run one
way (tests and bench -> api -> accidents, never back), `src/accidents` is a few shared modules plus
one subpackage per concern, and "monitoring" names exactly two packages, one per side (the jobs in
accidents/monitoring, the API's logging and reads in api/monitoring), mirrored by the tests."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

from tests.support.imports import PACKAGES, REPO, find_cycle, import_graph

ACCIDENTS = PACKAGES["accidents"]
SUBPACKAGES = {"data", "model", "pipeline", "monitoring", "store", "stack", "report_time"}
SHARED_MODULES = {"__init__.py", "config.py", "features.py", "stage.py", "cli.py"}


def test_find_cycle_detects_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_anywhere():
    graph = import_graph()
    assert "api.core.security" in graph["api.db.crud"]  # the graph sees real edges
    assert "accidents.store.prediction_log" in graph["accidents.monitoring.drift"]
    assert "bench.common" in graph["bench.run"]
    assert find_cycle(graph) is None


def test_imports_run_one_way():
    """The pipeline package never imports the service (the API imports it), and neither imports the
    benchmarks or the tests."""
    graph = import_graph()

    def wrong(importer: str, forbidden: tuple[str, ...]) -> dict[str, set[str]]:
        found = {name: {target for target in targets if target.startswith(forbidden)} for name, targets in graph.items()
                 if name.startswith(importer)}  # fmt: skip
        return {name: targets for name, targets in found.items() if targets}

    assert wrong("accidents.", ("api.", "bench.", "tests.")) == {}
    assert wrong("api.", ("bench.", "tests.")) == {}


def test_accidents_is_a_few_shared_modules_and_one_subpackage_per_concern():
    modules = {path.name for path in ACCIDENTS.glob("*.py")}
    packages = {path.parent.name for path in ACCIDENTS.glob("*/__init__.py")}
    assert modules == SHARED_MODULES and len(modules) <= 8
    assert packages == SUBPACKAGES


def test_subpackage_inits_hold_only_their_docstring():
    """Importing accidents.model.registry runs accidents/model/__init__.py: with no code in it, a
    DVC stage's dependencies are exactly the modules it imports (tests/pipeline/test_dvc_deps.py)."""
    for name in SUBPACKAGES:
        body = ast.parse((ACCIDENTS / name / "__init__.py").read_text(encoding="utf-8")).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), name


def tracked_folders() -> set[Path]:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return {parent for file in files for parent in Path(file).parents if parent != Path(".")}


def test_monitoring_names_one_package_per_side_and_its_tests():
    named = {folder.as_posix() for folder in tracked_folders() if folder.name == "monitoring"}
    assert named == {"src/accidents/monitoring", "api/monitoring", "tests/monitoring", "tests/api/monitoring"}
