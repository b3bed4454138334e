"""DAG integrity of `monitoring`: drift and label jobs by absolute venv paths, then the decision,
then the trigger of the retraining DAG with the decision's reason as its conf.

Run in Airflow's venv: `.venv-airflow/bin/pytest tests/airflow` (no project package imported).
"""

from __future__ import annotations

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
    assert dag.get_task("decide").upstream_task_ids == {"drift", "realized"}
    assert dag.get_task("decide").trigger_rule == "all_done"  # a failed label job must not hide drift
    assert dag.get_task("decide").downstream_task_ids == {"trigger_retraining"}
    trigger = dag.get_task("trigger_retraining")
    assert trigger.trigger_dag_id == "dvc_pipeline"
    assert trigger.conf == {"reason": "{{ ti.xcom_pull(task_ids='decide')['reason'] }}"}
    assert trigger.wait_for_completion is False


def test_jobs_run_the_projects_venvs_by_absolute_path(dag):
    for task_id, python, module in (("drift", ".venv-monitoring", "accidents.monitoring.drift"),
                                    ("realized", ".venv", "accidents.monitoring.realized")):  # fmt: skip
        task = dag.get_task(task_id)
        command = jinja2.Template(task.bash_command).render()
        assert f"{REPO / python / 'bin' / 'python'} -m {module}" in command
        assert task.env["ACCIDENTS_PROJECT_DIR"] == str(REPO)
        assert task.env["PATH"].startswith(str(REPO / python / "bin"))
        assert task.execution_timeout == timedelta(minutes=30)


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
    for task_id in ("drift", "realized"):
        task = bag.dags["monitoring"].get_task(task_id)
        rendered = repr({field: task.render_template(getattr(task, field), {}) for field in task.template_fields})
        for name in ("PREDICTION_LOG_URL", "MLFLOW_TRACKING_PASSWORD", "ACCIDENTS_AIRFLOW_PASSWORD"):
            assert secrets[name] not in rendered, f"{task_id} shows {name} in its templated fields"
        assert "log-db-s3cret" not in rendered
        assert task.append_env is True  # the job inherits them from the task process
