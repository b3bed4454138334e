"""dvc.yaml's deps tell the truth: every project module a stage imports (directly or not) is a
dependency of that stage, and no stage lists a module it does not import."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "accidents"
STAGE_COMMAND = re.compile(r"python -m (accidents(?:\.\w+)+)")


def module_file(module: str) -> Path:
    """accidents.model.registry -> src/accidents/model/registry.py (a package has no module file here)."""
    return PACKAGE.joinpath(*module.split(".")[1:]).with_suffix(".py")


def direct_imports(module: str) -> set[str]:
    """Project modules `module` imports, at any place in the file (lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(module_file(module).read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "accidents":
            found.add(node.module)
            # from accidents.model import registry: the name may be a module of that package
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("accidents.")}
    return {name for name in found if module_file(name).is_file()}


def imported_closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(direct_imports(current))
    return seen


def dependency_problems(stages: dict) -> dict[str, dict[str, list[str]]]:
    """Per stage: source files it imports but does not list, and listed source files it does not import."""
    problems = {}
    for name, stage in stages.items():
        match = STAGE_COMMAND.search(stage["cmd"])
        assert match, f"stage {name} does not run a module of the accidents package: {stage['cmd']}"
        expected = {str(module_file(m).relative_to(REPO)) for m in imported_closure(match[1])}
        listed = {dep for dep in stage.get("deps", []) if dep.startswith("src/")}
        missing, extra = sorted(expected - listed), sorted(listed - expected)
        if missing or extra:
            problems[name] = {"missing": missing, "not imported": extra}
    return problems


@pytest.fixture(scope="module")
def stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def test_every_imported_module_is_a_dependency_of_its_stage(stages):
    assert dependency_problems(stages) == {}


def test_the_check_catches_a_missing_module(stages):
    """The guard itself can fail: drop one imported module from train's deps."""
    broken = {name: {**stage, "deps": list(stage.get("deps", []))} for name, stage in stages.items()}
    broken["train"]["deps"].remove("src/accidents/model/model_store.py")
    assert dependency_problems(broken) == {
        "train": {"missing": ["src/accidents/model/model_store.py"], "not imported": []}
    }


def test_the_closure_follows_indirect_imports():
    """evaluate -> model_store -> compiled_trees: an edit to compiled_trees.py reruns evaluate."""
    assert {"accidents.model.model_store", "accidents.model.compiled_trees", "accidents.features"} <= imported_closure(
        "accidents.pipeline.evaluate"
    )
