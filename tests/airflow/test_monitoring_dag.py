"""DAG integrity of `monitoring`: drift, estimation (after drift) and label jobs by absolute venv
paths, then the decision, then the trigger of the retraining DAG with the decision's reason as its conf.

Run in Airflow's venv: `.venv-airflow/bin/pytest tests/airflow` (no project package imported).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

pytest.importorskip("airflow", reason="DAG tests run in .venv-airflow (.venv-airflow/bin/pytest tests/airflow)")

import jinja2
from airflow.dag_processing.dagbag import DagBag

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "airflow" / "dags"


@pytest.fixture(scope="module")
def dag():
    bag = DagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")
    assert bag.import_errors == {}
    return bag.dags["monitoring"]


def test_shape_schedule_and_policy(dag):
    assert dag.schedule == "@daily"  # ACCIDENTS_MONITORING_SCHEDULE changes it ("none": manual only)
    assert dag.catchup is False and dag.max_active_runs == 1
    # both models' estimates (the seed's, the report-time model's) and the label job: any may be evidence
    assert dag.get_task("decide").upstream_task_ids == {"estimate", "estimate_report_time", "realized"}
    for suffix in ("", "_report_time"):
        estimate = dag.get_task(f"estimate{suffix}")
        assert estimate.upstream_task_ids == {f"drift{suffix}"}  # the drift job's window, estimated after it
        assert estimate.trigger_rule == "all_done"  # a failed drift job must not hide the estimate
    assert dag.get_task("decide").trigger_rule == "all_done"  # a failed label job must not hide drift
    assert dag.get_task("decide").downstream_task_ids == {"trigger_retraining"}
    trigger = dag.get_task("trigger_retraining")
    assert trigger.trigger_dag_id == "dvc_pipeline"
    assert trigger.conf == {"reason": "{{ ti.xcom_pull(task_ids='decide')['reason'] }}"}
    assert trigger.wait_for_completion is False


def test_jobs_run_the_projects_venvs_by_absolute_path(dag):
    for task_id, python, module in (("drift", ".venv-monitoring", "accidents.monitoring.drift"),
                                    ("estimate", ".venv-monitoring", "accidents.monitoring.estimation"),
                                    ("drift_report_time", ".venv-monitoring",
                                     "accidents.monitoring.drift --model report_time"),
                                    ("estimate_report_time", ".venv-monitoring",
                                     "accidents.monitoring.estimation --model report_time"),
                                    ("realized", ".venv", "accidents.monitoring.realized")):  # fmt: skip
        task = dag.get_task(task_id)
        command = jinja2.Template(task.bash_command).render()
        assert f"{REPO / python / 'bin' / 'python'} -m {module}" in command.splitlines()  # the whole command line
        assert task.env["ACCIDENTS_PROJECT_DIR"] == str(REPO)
        assert task.env["PATH"].startswith(str(REPO / python / "bin"))
        assert task.execution_timeout == timedelta(minutes=30)


@pytest.mark.parametrize(("task_id", "model"), [("estimate", "seed"), ("estimate_report_time", "report_time")])
def test_the_estimate_tasks_command_runs_the_estimation_job(dag, tmp_path, task_id, model):
    """Each estimate task's own command (rendered as Airflow runs it, in its env) on an empty
    prediction log: the estimation job runs in the monitoring venv for its model, migrates the log
    (the estimated_performance table exists) and answers no estimate for a window with no rows."""
    python = REPO / ".venv-monitoring" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} missing: run `make setup-monitoring`")
    task = dag.get_task(task_id)
    log = tmp_path / "log.db"
    env = {**task.env, "PREDICTION_LOG_URL": f"sqlite:///{log}", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}
    answer = subprocess.run(["bash", "-c", jinja2.Template(task.bash_command).render()], cwd=task.cwd, env=env,
                            capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert answer.returncode == 0, answer.stderr[-3000:]
    result = json.loads(answer.stdout.strip().splitlines()[-1])
    assert result["estimate"] is None and result["model"] == model
    with sqlite3.connect(log) as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "estimated_performance" in tables


def test_schedule_from_the_environment(monkeypatch):
    monkeypatch.setenv("ACCIDENTS_MONITORING_SCHEDULE", "none")
    bag = DagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")
    assert bag.dags["monitoring"].schedule is None


def test_decide_short_circuits_on_the_projects_answer(dag, tmp_path, monkeypatch):
    """The decision task's callable runs the project's CLI; with no evidence (an empty log, no
    champion) it answers no retrain, so the trigger is skipped."""
    python = REPO / ".venv" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} missing: run `make setup`")
    root = tmp_path / "project"
    root.mkdir()
    (root / "params.yaml").write_bytes((REPO / "params.yaml").read_bytes())
    (root / ".venv").symlink_to(REPO / ".venv")
    monkeypatch.setenv("ACCIDENTS_PROJECT_DIR", str(root))
    monkeypatch.setenv("PREDICTION_LOG_URL", f"sqlite:///{tmp_path / 'log.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("ACCIDENTS_AIRFLOW_URL", "http://127.0.0.1:9")  # never called without evidence
    bag = DagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")
    decide = bag.dags["monitoring"].get_task("decide").python_callable
    assert decide() is False


def test_rendered_fields_show_no_secret_and_jobs_still_get_them(monkeypatch):
    """The prediction log's URL (with its password), MLflow's and Airflow's logins: set where the DAG
    is parsed, absent from every templated field as rendered (what the UI's "Rendered Template"
    shows), and inherited by the jobs through append_env."""
    secrets = {
        "PREDICTION_LOG_URL": "postgresql+psycopg://monitoring:log-db-s3cret@postgres:5432/predictions",
        "MLFLOW_TRACKING_USERNAME": "pipeline",
        "MLFLOW_TRACKING_PASSWORD": "mlflow-s3cret-password",
        "ACCIDENTS_AIRFLOW_PASSWORD": "airflow-s3cret-password",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    bag = DagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")
    assert bag.import_errors == {}
    for task_id in ("drift", "estimate", "drift_report_time", "estimate_report_time", "realized"):
        task = bag.dags["monitoring"].get_task(task_id)
        rendered = repr({field: task.render_template(getattr(task, field), {}) for field in task.template_fields})
        for name in ("PREDICTION_LOG_URL", "MLFLOW_TRACKING_PASSWORD", "ACCIDENTS_AIRFLOW_PASSWORD"):
            assert secrets[name] not in rendered, f"{task_id} shows {name} in its templated fields"
        assert "log-db-s3cret" not in rendered
        assert task.append_env is True  # the job inherits them from the task process
