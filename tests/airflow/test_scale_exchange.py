"""The scale-out stack's DAG mode (docker-compose.scale.yml): with ACCIDENTS_STAGE_EXCHANGE set,
each DVC task restores the run's state from S3 before its stage and saves it after; without it
the commands are the LocalExecutor's. And the cluster policy that spreads tasks over the workers.

Run in Airflow's venv: `.venv-airflow/bin/pytest tests/airflow`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("airflow", reason="DAG tests run in .venv-airflow (.venv-airflow/bin/pytest tests/airflow)")

from airflow.dag_processing.dagbag import DagBag

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "airflow" / "dags"
POLICY = REPO / "docker" / "airflow" / "airflow_local_settings.py"
STAGES = ["import_data", "preprocess", "train", "evaluate", "predict"]
EXCHANGE = "s3://dvc/runs"


def retrain_dag(monkeypatch, exchange: str | None):
    if exchange:
        monkeypatch.setenv("ACCIDENTS_STAGE_EXCHANGE", exchange)
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://s3:8333")
    else:
        monkeypatch.delenv("ACCIDENTS_STAGE_EXCHANGE", raising=False)
    bag = DagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")
    assert bag.import_errors == {}
    return bag.dags["dvc_pipeline"]


def test_without_exchange_the_commands_are_unchanged(monkeypatch):
    dag = retrain_dag(monkeypatch, None)
    for task_id in [*STAGES, "push_artifacts"]:
        task = dag.get_task(task_id)
        assert "stage_exchange" not in task.bash_command
        assert "ACCIDENTS_STAGE_EXCHANGE" not in task.env


def test_with_exchange_each_stage_pulls_first_and_pushes_after(monkeypatch):
    dag = retrain_dag(monkeypatch, EXCHANGE)
    for stage in STAGES:
        task = dag.get_task(stage)
        lines = [line for line in task.bash_command.splitlines() if line.strip()]
        pull = next(i for i, line in enumerate(lines) if "stage_exchange pull" in line)
        repro = next(i for i, line in enumerate(lines) if "repro" in line and f"-s {stage}" in line)
        push = next(i for i, line in enumerate(lines) if "stage_exchange push" in line)
        assert pull < repro < push, lines
        assert lines[push].endswith(f" {stage}"), "only this stage's outputs go to the DVC remote"
        assert '"{{ run_id }}"' in lines[pull] and '"{{ run_id }}"' in lines[push]
        assert lines[0] == "set -e", "a failed pull fails the task before the stage runs"
        assert task.env["ACCIDENTS_STAGE_EXCHANGE"] == EXCHANGE
        assert task.env["AWS_ENDPOINT_URL"] == "http://s3:8333"
        assert not any("SECRET" in name or "AWS_ACCESS_KEY" in name for name in task.env), "no S3 key in the env"
    push_artifacts = dag.get_task("push_artifacts").bash_command
    assert push_artifacts.index("stage_exchange pull") < push_artifacts.index(" push;")


def load_policy():
    spec = importlib.util.spec_from_file_location("airflow_local_settings_under_test", POLICY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_task_policy_routes_tasks_to_queues(monkeypatch):
    dag = retrain_dag(monkeypatch, EXCHANGE)
    policy = load_policy()
    monkeypatch.setenv("ACCIDENTS_TASK_QUEUES", "import_data=stage-a, preprocess=stage-b,bogus,=x")
    for task in dag.tasks:
        policy.task_policy(task)
    assert dag.get_task("import_data").queue == "stage-a"
    assert dag.get_task("preprocess").queue == "stage-b"
    assert dag.get_task("train").queue == "default", "tasks not named keep their queue"


def test_task_policy_without_mapping_changes_nothing(monkeypatch):
    dag = retrain_dag(monkeypatch, None)
    monkeypatch.delenv("ACCIDENTS_TASK_QUEUES", raising=False)
    policy = load_policy()
    for task in dag.tasks:
        policy.task_policy(task)
    assert {task.queue for task in dag.tasks} == {"default"}
