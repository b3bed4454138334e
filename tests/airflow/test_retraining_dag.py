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
import json
import os

from airflow.dag_processing.dagbag import DagBag

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "airflow" / "dags"
STAGES = ["import_data", "preprocess", "train", "evaluate", "predict"]
RETRAIN_DAG_ID = "dvc_pipeline"
DVC = REPO / ".venv" / "bin" / "dvc"


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")


@pytest.fixture(scope="module")
def dag(dagbag):
    assert sorted(dagbag.dags) == [RETRAIN_DAG_ID, "monitoring", "new_data_check"]
    return dagbag.dags[RETRAIN_DAG_ID]


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
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
    assert dag.get_task("import_data").upstream_task_ids == set()
    assert dag.get_task("evaluate").downstream_task_ids == {"reload_api_model", "predict"}
    assert dag.get_task("predict").downstream_task_ids == {"push_artifacts"}
    assert set(dag.task_ids) == {*STAGES, "reload_api_model", "push_artifacts"}


def test_a_stage_appended_to_the_pipeline_does_not_rewire_the_branches(tmp_path, monkeypatch):
    """The reload hangs off `evaluate` and the DVC push off `predict` by name: a stage added at the
    end of STAGES joins the chain after predict and moves neither."""
    source = (DAGS / "retraining.py").read_text()
    stages = 'STAGES = ("import_data", "preprocess", "train", "evaluate", "predict")'
    timeouts = "TIMEOUTS = {\n"
    assert stages in source and timeouts in source, "retraining.py changed: update this test's edit"
    source = source.replace(stages, stages.replace('"predict")', '"predict", "report")'))
    source = source.replace(timeouts, timeouts + '    "report": timedelta(minutes=5),\n')
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "retraining.py").write_text(source)
    monkeypatch.setenv("ACCIDENTS_PROJECT_DIR", str(REPO))
    bag = DagBag(dag_folder=dags, bundle_path=dags, bundle_name="dags-folder")
    assert bag.import_errors == {}
    dag = bag.dags["dvc_pipeline"]
    assert dag.get_task("report").upstream_task_ids == {"predict"}
    assert dag.get_task("reload_api_model").upstream_task_ids == {"evaluate"}
    assert dag.get_task("push_artifacts").upstream_task_ids == {"predict"}
    assert dag.get_task("evaluate").downstream_task_ids == {"predict", "reload_api_model"}
    assert dag.get_task("predict").downstream_task_ids == {"report", "push_artifacts"}


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
    """No unconditional schedule: runs start by hand or from new_data_check."""
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.schedule is None  # the default; ACCIDENTS_RETRAIN_SCHEDULE sets a cron
    assert dag.start_date is not None and dag.start_date.tzinfo is not None


def test_an_explicit_schedule_is_still_possible(monkeypatch):
    monkeypatch.setenv("ACCIDENTS_RETRAIN_SCHEDULE", "@weekly")
    bag = DagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")
    dag = bag.dags[RETRAIN_DAG_ID]
    assert dag.schedule == "@weekly"
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"  # one run per week, at the cron time


def test_schedule_and_start_come_from_the_environment(monkeypatch):
    """run_stack.py sets them; `none` means manual runs only."""
    monkeypatch.setenv("ACCIDENTS_RETRAIN_SCHEDULE", "@daily")
    monkeypatch.setenv("ACCIDENTS_SCHEDULE_START", "2031-02-03T04:05:06+00:00")
    monkeypatch.setenv("ACCIDENTS_DAG_ID", "renamed_pipeline")
    bag = DagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")
    assert bag.import_errors == {}
    dag = bag.dags["renamed_pipeline"]
    assert dag.schedule == "@daily"
    assert bag.dags["new_data_check"].get_task("trigger_retraining").trigger_dag_id == "renamed_pipeline"
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
    assert dag.params["reason"] == ""


class _Run:
    run_type = "manual"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("new official data: 2022 in BAAC_DATA_DIR=/m", "new official data: 2022 in BAAC_DATA_DIR=/m"),
     ("", "manual run (manual)")],
)  # fmt: skip
def test_the_run_reason_reaches_every_stage(dag, reason, expected):
    """ACCIDENTS_RUN_REASON (the MLflow run's tag run_reason) is rendered from the run's conf."""
    import jinja2

    for stage in STAGES:
        template = dag.get_task(stage).env["ACCIDENTS_RUN_REASON"]
        assert jinja2.Template(template).render(params={"reason": reason}, dag_run=_Run()) == expected


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


# --- new_data_check: retrain when a new official year appears --------------------------------


@pytest.fixture(scope="module")
def check_dag(dagbag):
    return dagbag.dags["new_data_check"]


def test_check_dag_shape_and_schedule(check_dag):
    assert check_dag.schedule == "@daily"  # ACCIDENTS_NEW_DATA_SCHEDULE changes it
    assert check_dag.catchup is False and check_dag.max_active_runs == 1
    assert check_dag.get_task("check_new_data").downstream_task_ids == {"trigger_retraining"}
    trigger = check_dag.get_task("trigger_retraining")
    assert trigger.trigger_dag_id == RETRAIN_DAG_ID
    assert "check_new_data" in trigger.conf["reason"] and "['reason']" in trigger.conf["reason"]


def _project_with_import(tmp_path, years):
    """A project folder (params, venv link, last import's manifest) the check DAG is pointed at."""
    root = tmp_path / "project"
    (root / "data" / "raw").mkdir(parents=True)
    (root / "params.yaml").write_bytes((REPO / "params.yaml").read_bytes())
    (root / ".venv").symlink_to(REPO / ".venv")
    manifest = {"source": "local", "layout": "tables", "years": years}
    (root / "data" / "raw" / "manifest.json").write_text(json.dumps(manifest))
    return root


SAMPLE = Path(os.environ.get("BAAC_DATA_DIR") or REPO.parent / "shared" / "data" / "baac") / "2021-raw-sample"


def _add_year(mirror, year):
    """A year folder holding the real 65-accident sample under that year's file names."""
    folder = mirror / str(year)
    folder.mkdir(parents=True)
    for table in ("caracteristiques", "lieux", "usagers", "vehicules"):
        (folder / f"{table}-{year}.csv").write_bytes((SAMPLE / f"{table}-2021.csv").read_bytes())


def test_check_task_starts_a_run_only_when_a_year_is_added(tmp_path, monkeypatch):
    """The check task's own callable, running the project's CLI by absolute path on a mirror."""
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.fail("the project's .venv is missing: run `make setup`")
    mirror = tmp_path / "mirror"
    for year in (2020, 2021):
        _add_year(mirror, year)
    monkeypatch.setenv("ACCIDENTS_PROJECT_DIR", str(_project_with_import(tmp_path, [2020, 2021])))
    monkeypatch.setenv("BAAC_DATA_DIR", str(mirror))
    bag = DagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")
    check = bag.dags["new_data_check"].get_task("check_new_data").python_callable
    assert check() is False  # nothing new: the short circuit skips the trigger
    _add_year(mirror, 2022)
    answer = check()
    assert answer["new_years"] == [2022]
    assert "new official data: 2022" in answer["reason"]
