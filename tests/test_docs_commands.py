"""The commands and settings the README and docs/*.md show exist, so the docs cannot drift from the
code: every `make TARGET` is a Makefile target; every `python -m MODULE` imports and every
`accidents COMMAND` is a command of the CLI; every file an example command names is in the
repository or is a pipeline output (dvc.yaml); the seed's three curl lines stand unchanged in the
README and every curl line's route is one the app serves; every variable `.env.example` documents
and every `NAME=value` the docs show is read by the code or the deployment files.

Found stale when written: `accidents.pipeline.predict test_features.json` (no such file), an
.env.example line about a variable the API no longer sets."""

from __future__ import annotations

import importlib.util
import itertools
import re
import shlex
from functools import cache

import pytest
import yaml

from accidents.cli import COMMANDS
from tests.api.conftest import app_factory, client  # noqa: F401 - fixtures (the app whose routes the curl lines call)
from tests.support.project import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# The seed's contract (DESIGN.md): these three lines, unchanged, in the README.
SEED_CURLS = (
    'curl -X POST localhost:8000/auth/token -d "username=admin&password=admin123"',
    'curl -X POST localhost:8000/predict -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" '
    '-d \'{"features": [10, 3, 1, 0.0, 2021, 60, 2, 1, 1, 3, 2, 1, 1, 50, 7, 12, 5, 77, 77317, 2, 1, 0, 6, 48.60, '
    "2.89, 17, 2, 1]}'",
    'curl -X POST localhost:8000/retrain -H "Authorization: Bearer $TOKEN"',
)
# Where a variable counts as read: the code, the scripts, the images and the deployments.
CODE_GLOBS = ("api/**/*.py", "src/**/*.py", "scripts/**/*", "airflow/**/*", "bench/**/*.py", "docker/**/*",
              "deploy/**/*", "docker-compose*.yml", "Dockerfile", "Makefile", "retraining_run.sh",
              ".ci/run")  # fmt: skip
# Variables of the tools themselves (the shell, Python, pip, MLflow's client...), not ours to define.
OUTSIDE = {
    "PATH",
    "HOME",
    "CI",
    "PYTHONPATH",
    "TOKEN",
    "ARGS",
    "USER",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MALLOC_ARENA_MAX",
}
OUTPUT_OPTIONS = {"-o", "--out", "--output", ">"}  # the file after one of these is written, not read
FILE_ARGUMENT = re.compile(r"^(\./)?[\w.-]+(/[\w.-]+)*\.(json|csv|py|sh|ya?ml|txt|toml|md|parquet|zip)$")


def code_blocks(text: str) -> list[str]:
    """The lines of the fenced code blocks and inline code spans of a Markdown page."""
    lines = [line for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S) for line in block.splitlines()]
    spans = re.findall(r"(?<!`)`([^`\n]+)`(?!`)", re.sub(r"```.*?```", "", text, flags=re.S))
    return lines + spans


def commands() -> list[tuple[str, str]]:
    """(page, command line) for every code line of every page, comments cut off."""
    found = []
    for page in PAGES:
        for line in code_blocks(page.read_text(encoding="utf-8")):
            command = re.split(r"\s#\s", line, maxsplit=1)[0].strip().removeprefix("$ ")
            if command:
                found.append((page.name, command))
    return found


def words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # an unbalanced quote in a prose span: plain words
        return command.split()


@cache
def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][a-z-]*):", text, re.M))


@cache
def code_text() -> str:
    files = {path for pattern in CODE_GLOBS for path in REPO.glob(pattern) if path.is_file()}
    return "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in sorted(files))


@cache
def pipeline_outputs() -> list[str]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    outs = []
    for stage in stages.values():
        for out in stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []):
            name = next(iter(out)) if isinstance(out, dict) else out
            outs.append(re.sub(r"\$\{predict\.output\}", params["predict"]["output"], name))
    return outs


def test_every_make_target_shown_exists():
    shown = {(page, target) for page, command in commands() for target in re.findall(r"\bmake ([a-z][a-z-]*)", command)}
    assert shown, "no make command found in the docs: the scan is broken"
    assert sorted((page, target) for page, target in shown if target not in makefile_targets()) == []


def test_every_module_and_cli_command_shown_exists():
    modules, cli = set(), set()
    for page, command in commands():
        modules |= {(page, module) for module in re.findall(r"python3? -m ([\w.]*\w)(?![.\w<])", command)}
        cli |= {(page, name) for name in re.findall(r"^(?:\.venv[\w-]*/bin/)?accidents ([a-z][a-z-]*)", command)}
    assert ("README.md", "accidents.pipeline.train") in modules and cli
    missing = [(page, module) for page, module in modules if importlib.util.find_spec(module) is None]
    assert sorted(missing) == []
    assert sorted((page, name) for page, name in cli if name not in COMMANDS) == []


def test_every_file_an_example_command_names_exists():
    named = set()
    for page, command in commands():
        parts = words(command)
        if len(parts) < 2 or not re.match(r"^(\.venv[\w-]*/bin/|\./|bash|python|make|\.?/?[\w-]+\.sh)", parts[0]):
            continue  # a command line, not a path shown in prose
        written = {after for option, after in itertools.pairwise(parts) if option in OUTPUT_OPTIONS}
        read = [part for part in parts if FILE_ARGUMENT.match(part) and part not in written]
        named |= {(page, part.removeprefix("./")) for part in read}
    assert ("README.md", "retraining_run.sh") in named or any(page == "pipeline.md" for page, _ in named)

    def exists(path: str) -> bool:
        return (REPO / path).exists() or any(path == out or path.startswith(f"{out}/") for out in pipeline_outputs())

    assert sorted((page, path) for page, path in named if not exists(path)) == []


def test_the_seeds_curl_lines_stand_in_the_readme_and_their_routes_exist(client):  # noqa: F811 - the fixture
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for line in SEED_CURLS:
        assert line in readme, f"the seed's line is missing from the README: {line}"
    paths = client.get("/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, methods in paths.items() for method in methods}
    shown = []
    for page, command in commands():
        if command.startswith("curl "):
            method = re.search(r"-X (\w+)", command)
            path = re.search(r"(?:localhost|127\.0\.0\.1):8000(/[^\s\"'?]*)", command)
            if path:
                shown.append((page, method.group(1) if method else "GET", path.group(1)))
    assert len(shown) >= len(SEED_CURLS)

    def served(method: str, path: str) -> bool:
        pattern = {(m, re.sub(r"\{[^}]+\}", "[^/]+", p)) for m, p in routes}
        return any(m == method and re.fullmatch(p, path) for m, p in pattern)

    assert [item for item in shown if not served(item[1], item[2])] == []


@pytest.mark.parametrize("source", [".env.example", "docs"])
def test_every_variable_shown_is_read_by_the_code(source):
    if source == ".env.example":
        text = (REPO / ".env.example").read_text(encoding="utf-8")
        names = set(re.findall(r"\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b", text))
    else:
        assignment = r"(?:^|\s)([A-Z][A-Z0-9_]*)=(?!\$\()"  # NAME=value, not a shell capture NAME=$(...)
        names = {name for _, command in commands() for name in re.findall(assignment, command)}
    names -= OUTSIDE
    assert len(names) > 5, names
    code = code_text()
    settings = (REPO / "api" / "core" / "config.py").read_text(encoding="utf-8")

    def read(name: str) -> bool:  # by name, or as a pydantic setting (field name = lower-case variable)
        return re.search(rf"\b{name}\b", code) is not None or re.search(rf"^\s+{name.lower()}\s*:", settings, re.M)

    assert sorted(name for name in names if not read(name)) == []
