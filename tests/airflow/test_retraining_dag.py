"""DAG integrity: the retraining DAG loads in Airflow's venv and has the declared shape.

Run in Airflow's venv: `.venv-airflow/bin/pytest tests/airflow` (no project package imported).
"""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

pytest.importorskip("airflow", reason="DAG tests run in .venv-airflow (.venv-airflow/bin/pytest tests/airflow)")

import itertools

from airflow.dag_processing.dagbag import DagBag

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "airflow" / "dags"
STAGES = ["import_data", "preprocess", "train", "evaluate"]
DVC = REPO / ".venv" / "bin" / "dvc"


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")


@pytest.fixture(scope="module")
def dag(dagbag):
    assert len(dagbag.dags) == 1, sorted(dagbag.dags)
    return next(iter(dagbag.dags.values()))


def test_dag_folder_imports_cleanly(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dags


def test_dag_id_is_the_projects(dag):
    """The DAG's default id is accidents.config.DAG_ID (asked from the project's venv: no import here)."""
    python = REPO / ".venv" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} missing: run `make setup` (the DAG id is checked against accidents.config)")
    expected = subprocess.run(
        [str(python), "-m", "accidents.config", "DAG_ID"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert dag.dag_id == expected == "dvc_pipeline"


def test_one_task_per_dvc_stage_in_order(dag):
    for upstream, downstream in itertools.pairwise(STAGES):
        assert dag.get_task(upstream).downstream_task_ids == {downstream}
    assert dag.get_task("import_data").upstream_task_ids == set()
    assert dag.get_task("evaluate").downstream_task_ids == {"reload_api_model", "push_artifacts"}
    assert set(dag.task_ids) == {*STAGES, "reload_api_model", "push_artifacts"}


def test_stages_match_dvc_yaml(dag):
    """The DAG's stage tasks are exactly dvc.yaml's stages, in the file's order."""
    yaml = pytest.importorskip("yaml")
    stages = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    assert stages == STAGES


def test_stage_tasks_run_the_projects_dvc_by_absolute_path(dag):
    for stage in STAGES:
        task = dag.get_task(stage)
        assert f"{DVC} repro" in task.bash_command
        assert task.bash_command.rstrip().splitlines()[2].endswith(f"-s {stage}")
        assert task.cwd == str(REPO)
        assert task.env["PATH"].startswith(f"{REPO / '.venv' / 'bin'}:")
        assert task.env["ACCIDENTS_PROJECT_DIR"] == str(REPO)
    assert "metrics show" in dag.get_task("evaluate").bash_command


def test_schedule_and_run_policy(dag):
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.schedule == "@weekly"  # the default; ACCIDENTS_RETRAIN_SCHEDULE changes it
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"  # one run per week, at the cron time
    assert dag.start_date is not None and dag.start_date.tzinfo is not None


def test_schedule_and_start_come_from_the_environment(monkeypatch):
    """run_stack.py sets them; `none` means manual runs only."""
    monkeypatch.setenv("ACCIDENTS_RETRAIN_SCHEDULE", "none")
    monkeypatch.setenv("ACCIDENTS_SCHEDULE_START", "2031-02-03T04:05:06+00:00")
    monkeypatch.setenv("ACCIDENTS_DAG_ID", "renamed_pipeline")
    bag = DagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")
    assert bag.import_errors == {}
    dag = bag.dags["renamed_pipeline"]
    assert dag.schedule is None
    assert dag.start_date.isoformat() == "2031-02-03T04:05:06+00:00"


def test_retries_and_timeouts(dag):
    for stage in STAGES:
        task = dag.get_task(stage)
        assert task.retries >= 1
        assert task.retry_delay >= timedelta(seconds=30)
        assert task.execution_timeout is not None
    assert dag.get_task("train").execution_timeout >= dag.get_task("preprocess").execution_timeout
    # The reload only warns when the API is down: no retries, a short timeout.
    reload_task = dag.get_task("reload_api_model")
    assert reload_task.retries == 0
    assert reload_task.execution_timeout <= timedelta(minutes=5)


def test_params_default_to_a_full_retrain(dag):
    assert dag.params["force"] is True
    assert dag.params["refresh_data"] is True


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"force": True, "refresh_data": True}, {"import_data": True, "train": True}),
        ({"force": False, "refresh_data": True}, {"import_data": True, "train": False}),
        ({"force": False, "refresh_data": False}, {"import_data": False, "train": False}),
    ],
)
def test_force_flag_rendering(dag, params, expected):
    """`-f` reaches `dvc repro` only as the run parameters say (Jinja as Airflow renders it)."""
    import jinja2

    for stage, forced in expected.items():
        rendered = jinja2.Template(dag.get_task(stage).bash_command).render(params=params)
        command = next(line for line in rendered.splitlines() if " repro " in line)
        assert (" -f " in command) is forced, command
