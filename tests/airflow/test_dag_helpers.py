"""The DAG files' shared helpers (airflow/plugins/accidents_dags.py), reached through Airflow's plugins
folder.

Run in Airflow's venv: `.venv-airflow/bin/pytest tests/airflow` (no project package imported).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

pytest.importorskip("airflow", reason="DAG tests run in .venv-airflow (.venv-airflow/bin/pytest tests/airflow)")

import airflow.settings
from airflow.dag_processing.dagbag import DagBag

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "airflow" / "dags"
PLUGINS = REPO / "airflow" / "plugins"
HELPERS = PLUGINS / "accidents_dags.py"


def test_the_dags_reach_the_helpers_through_airflows_plugins_folder():
    """As in every deployment: core.plugins_folder is airflow/plugins and Airflow put it on sys.path."""
    assert Path(airflow.settings.PLUGINS_FOLDER) == PLUGINS
    assert str(PLUGINS) in sys.path
    bag = DagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")
    assert bag.import_errors == {}
    assert Path(sys.modules["accidents_dags"].__file__) == HELPERS


def test_the_helpers_import_only_stdlib_and_airflow():
    """Airflow's venv has neither the project's packages nor ML libraries."""
    tree = ast.parse(HELPERS.read_text())
    roots = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    roots |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert roots - {"__future__", "airflow"} <= sys.stdlib_module_names


def test_the_plugin_manager_finds_no_plugin_in_the_helpers(monkeypatch):
    """Airflow imports every module of the plugins folder: the helpers' must import cleanly, do
    nothing and declare no AirflowPlugin."""
    from airflow._shared.plugins_manager.plugins_manager import _load_plugins_from_plugin_directory

    monkeypatch.delitem(sys.modules, "accidents_dags", raising=False)
    plugins, import_errors = _load_plugins_from_plugin_directory(plugins_folder=airflow.settings.PLUGINS_FOLDER)
    assert (plugins, import_errors) == ([], {})
    assert Path(sys.modules["accidents_dags"].__file__) == HELPERS, "the plugin manager imported it"


def test_no_dag_file_defines_a_helper_another_dag_file_defines():
    """Shared helpers live once, in airflow/plugins/accidents_dags.py."""
    owners: dict[str, list[str]] = {}
    for path in sorted(DAGS.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                owners.setdefault(node.name, []).append(path.name)
    assert {name: files for name, files in owners.items() if len(files) > 1} == {}


def test_run_json_cli_answers_the_last_stdout_line_and_fails_on_an_error(tmp_path):
    import accidents_dags

    (tmp_path / "answers.py").write_text(
        "import json, sys\nprint('progress', file=sys.stderr)\nprint('not json')\nprint(json.dumps({'ok': 1}))\n"
    )
    (tmp_path / "fails.py").write_text("import sys\nsys.exit('no answer')\n")
    python = Path(sys.executable)
    env = accidents_dags.cli_env(python, tmp_path, ())
    assert env == {"ACCIDENTS_PROJECT_DIR": str(tmp_path), "PATH": f"{python.parent}:/usr/bin:/bin"}
    assert accidents_dags.run_json_cli(python, "answers", tmp_path, env) == {"ok": 1}
    with pytest.raises(RuntimeError, match="fails exited 1: no answer"):
        accidents_dags.run_json_cli(python, "fails", tmp_path, env)
