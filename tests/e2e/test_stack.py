"""End to end: `scripts/run_stack.py` (what `make run` runs) in a fresh copy of the project.

The copy starts with no model: the stack trains once (a deliberately weak model, so that later
runs are promoted), then Airflow retrains twice, once through the API's `POST /retrain` and once
through Airflow's own REST API as the UI does, and the API serves each new champion without a
restart. Real processes on free loopback ports, real data (BAAC_DATA_DIR), a few minutes.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from mlflow.tracking import MlflowClient

from accidents.config import CHAMPION_ALIAS, DAG_ID, EXPERIMENT_NAME, MODEL_NAME
from accidents.features import SEED_EXAMPLE
from accidents.pipeline.evaluate import decide
from tests.support.processes import ManagedProcess, free_port
from tests.support.project import Project, copy_project

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
API_ADMIN = {"username": "admin", "password": "admin123"}  # the documented demo login
AIRFLOW_ADMIN = {"username": "admin", "password": "admin"}
RUN_TIMEOUT = 900.0

# Each run trains a stronger model than the last, so the promotion rule promotes it (the test
# still checks the rule against the logged scores rather than assuming the outcome).
WEAK_FOREST = {"n_estimators": 3, "max_depth": 2, "min_samples_leaf": 50, "n_jobs": 1}
MEDIUM_FOREST = {"n_estimators": 30, "max_depth": 8, "min_samples_leaf": 5, "n_jobs": 2}


@dataclass
class Stack:
    project: Project
    process: ManagedProcess
    api: str
    airflow: str
    mlflow: str

    def api_token(self, credentials: dict[str, str] = API_ADMIN) -> dict[str, str]:
        response = requests.post(f"{self.api}/auth/token", data=credentials, timeout=10)
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def airflow_token(self) -> dict[str, str]:
        response = requests.post(f"{self.airflow}/auth/token", json=AIRFLOW_ADMIN, timeout=10)
        assert response.status_code in (200, 201), response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def dag_runs(self, dag_id: str = DAG_ID) -> list[dict]:
        response = requests.get(
            f"{self.airflow}/api/v2/dags/{dag_id}/dagRuns", headers=self.airflow_token(), timeout=10
        )
        response.raise_for_status()
        return response.json()["dag_runs"]

    def wait_for_dag_run(self, run_id: str, timeout: float = RUN_TIMEOUT, dag_id: str = DAG_ID) -> dict:
        deadline = time.monotonic() + timeout
        url = f"{self.airflow}/api/v2/dags/{dag_id}/dagRuns/{requests.utils.quote(run_id, safe='')}"
        while time.monotonic() < deadline:
            assert self.process.alive(), f"run_stack.py exited:\n{self.process.log_tail(60)}"
            run = requests.get(url, headers=self.airflow_token(), timeout=10).json()
            if run.get("state") in ("success", "failed"):
                assert run["state"] == "success", f"DAG run {run_id} failed:\n{self.task_logs(run_id, dag_id=dag_id)}"
                return run
            time.sleep(3)
        raise AssertionError(
            f"DAG run {run_id} not done after {timeout:.0f} s:\n{self.task_logs(run_id, dag_id=dag_id)}"
        )

    def task_logs(self, run_id: str, tail: int | None = 3000, dag_id: str = DAG_ID) -> str:
        """The run's task logs (Airflow writes them as JSON lines), each cut to its last `tail` characters."""
        folder = self.project.root / "state" / "airflow" / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
        logs = sorted(folder.glob("task_id=*/attempt=*.log"))
        return "\n".join(f"--- {log.parent.name}/{log.name}\n{log.read_text()[-(tail or 0) :]}" for log in logs)

    def served_version(self) -> str:
        response = requests.get(f"{self.api}/model", headers=self.api_token(), timeout=10)
        assert response.status_code == 200, response.text
        return str(response.json()["version"])


def stack_processes(root: Path) -> list[str]:
    """Live processes started for this project copy: run_stack.py gives every service
    ACCIDENTS_PROJECT_DIR=<copy>, and children inherit it (Airflow's workers and task commands,
    MLflow's and uvicorn's workers), whatever their command line says."""
    marker = f"\0ACCIDENTS_PROJECT_DIR={root}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = b"\0" + (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if marker in environ and state != "Z":
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory, baac_dir) -> Iterator[Stack]:
    ports = {"API_PORT": free_port(), "MLFLOW_PORT": free_port(), "AIRFLOW_PORT": free_port()}
    project = copy_project(tmp_path_factory.mktemp("stack"), f"http://127.0.0.1:{ports['MLFLOW_PORT']}", max_rows=2000)
    project.set_params("train", family="random_forest", random_forest=WEAK_FOREST)
    with running_stack(project, ports, baac_dir, ACCIDENTS_RETRAIN_SCHEDULE="@weekly") as started:
        yield started


@contextmanager
def running_stack(project: Project, ports: dict[str, int], baac_dir: Path, **extra_env: str) -> Iterator[Stack]:
    """`scripts/run_stack.py` on the project copy until it says "stack ready"; stopped after."""
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    for venv in (".venv-airflow", ".venv-monitoring"):
        (project.root / venv).symlink_to(REPO / venv)
    env = project.env(**{name: str(port) for name, port in ports.items()}, BAAC_DATA_DIR=str(baac_dir), **extra_env)
    for name in ("ADMIN_USERNAME", "ADMIN_PASSWORD", "AIRFLOW_USERNAME", "AIRFLOW_PASSWORD", "AIRFLOW_API_URL"):
        env.pop(name, None)
    process = ManagedProcess(
        [str(project.root / ".venv" / "bin" / "python"), str(project.root / "scripts" / "run_stack.py"), "--no-color"],
        project.root / "run_stack.out",
        env=env,
        cwd=project.root,
    )
    stack = Stack(project, process, urls["API_PORT"], urls["AIRFLOW_PORT"], urls["MLFLOW_PORT"])
    try:
        deadline = time.monotonic() + 900
        while "stack ready" not in process.log_tail(400):
            assert process.alive(), f"run_stack.py exited ({process.process.returncode}):\n{process.log_tail(80)}"
            assert time.monotonic() < deadline, f"stack not ready after 900 s:\n{process.log_tail(80)}"
            time.sleep(1)
        yield stack
    finally:
        process.stop(timeout=60)


@pytest.fixture(scope="module")
def registry(stack) -> MlflowClient:
    return MlflowClient(stack.mlflow)


def champion_version(registry: MlflowClient) -> str:
    return str(registry.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS).version)


def run_ids(registry: MlflowClient) -> set[str]:
    experiment = registry.get_experiment_by_name(EXPERIMENT_NAME)
    return {run.info.run_id for run in registry.search_runs([experiment.experiment_id], max_results=1000)}


def check_new_run(stack: Stack, registry: MlflowClient, runs_before: set[str], champion_before: str) -> bool:
    """One new MLflow run per model of `pipeline.models`; the seed's, scored and decided by the
    promotion rule; the API serves the champion."""
    params = yaml.safe_load((stack.project.root / "params.yaml").read_text())
    new_runs = [registry.get_run(run_id) for run_id in run_ids(registry) - runs_before]
    by_model = {run.data.tags.get("model"): run for run in new_runs}
    assert len(by_model) == len(new_runs) and sorted(by_model) == sorted(params["pipeline"]["models"]), by_model
    run = by_model["seed"]
    metrics, tags = run.data.metrics, run.data.tags
    challenger = {name: metrics[f"test_{name}"] for name in ("roc_auc", "f1")}
    champion = {name: metrics[f"champion_test_{name}"] for name in ("roc_auc", "f1")}
    margin = float(params["promotion"]["min_improvement"])
    promoted, reason = decide(challenger, champion, margin)
    assert tags["promotion"] == ("promoted" if promoted else "rejected"), (tags, reason)
    assert tags["compared_with_version"] == champion_before
    version = next(v.version for v in registry.search_model_versions(f"run_id='{run.info.run_id}'"))
    assert champion_version(registry) == (str(version) if promoted else champion_before)
    # POST /model/reload ran in the DAG: the API already serves the champion, no restart.
    assert stack.served_version() == champion_version(registry)
    return promoted


def test_cold_start_trained_a_first_champion(stack, registry):
    assert champion_version(registry) == "1"
    assert (stack.project.root / "models" / "champion.zip").is_file()
    assert requests.get(f"{stack.api}/ready", timeout=5).status_code == 200
    assert stack.served_version() == "1"
    # The weekly schedule starts from the stack's creation: no run was started at once.
    assert stack.dag_runs() == []
    log = stack.process.log_tail(2000)
    assert "accidents-mlops is up" in log and "admin / admin123" in log


def test_token_and_seed_prediction(stack):
    response = requests.post(
        f"{stack.api}/predict", json={"features": list(SEED_EXAMPLE)}, headers=stack.api_token(), timeout=10
    )
    assert response.status_code == 200, response.text
    prediction = response.json()["predictions"][0]
    assert prediction["class"] in (0, 1) and 0.0 <= prediction["probability"] <= 1.0


def test_regular_user_cannot_retrain(stack):
    admin = stack.api_token()
    user = {"username": "e2e-user", "password": "a-long-user-password"}
    created = requests.post(f"{stack.api}/users", json={**user, "role": "user"}, headers=admin, timeout=10)
    assert created.status_code == 201, created.text
    response = requests.post(f"{stack.api}/retrain", headers=stack.api_token(user), timeout=10)
    assert response.status_code == 403
    assert stack.dag_runs() == []


def test_admin_retrain_runs_the_dag_and_the_api_serves_the_champion(stack, registry):
    stack.project.set_params("preprocess", max_rows=6000)
    stack.project.set_params("train", random_forest=MEDIUM_FOREST)
    runs_before, champion_before = run_ids(registry), champion_version(registry)
    pid_before = api_pid(stack)
    admin = stack.api_token()

    response = requests.post(f"{stack.api}/retrain", headers=admin, timeout=30)
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    again = requests.post(f"{stack.api}/retrain", headers=admin, timeout=30)
    assert again.status_code == 409, again.text  # single flight

    run = stack.wait_for_dag_run(run_id)
    assert run["run_type"] == "manual"
    status = requests.get(f"{stack.api}/retrain/{requests.utils.quote(run_id, safe='')}", headers=admin, timeout=10)
    assert status.json()["state"] == "success" and status.json()["reason"] == "manual: admin"  # the run's conf
    assert {task["task_id"] for task in status.json()["tasks"]} >= {"import_data", "preprocess", "train", "evaluate"}
    promoted = check_new_run(stack, registry, runs_before, champion_before)
    assert promoted, "a stronger model than the weak first one should have been promoted"
    assert "decision: PROMOTED" in stack.task_logs(run_id, tail=None)  # the pipeline's output is in the task log
    assert api_pid(stack) == pid_before  # swapped without a restart


def test_run_triggered_in_airflow_updates_the_api(stack, registry):
    """A run started from Airflow's REST API (as the UI's Trigger button does) reaches the API too."""
    stack.project.set_params("preprocess", max_rows=20000)
    stack.project.set_params("train", family="hist_gradient_boosting")
    runs_before, champion_before = run_ids(registry), champion_version(registry)
    response = requests.post(
        f"{stack.airflow}/api/v2/dags/{DAG_ID}/dagRuns",
        json={"logical_date": None, "conf": {"force": True}},
        headers=stack.airflow_token(),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    # The API sees the run started elsewhere: /retrain answers 409 while it is active.
    conflict = requests.post(f"{stack.api}/retrain", headers=stack.api_token(), timeout=30)
    assert conflict.status_code == 409, conflict.text
    stack.wait_for_dag_run(run_id)
    promoted = check_new_run(stack, registry, runs_before, champion_before)
    print(f"Airflow-triggered run: challenger {'promoted' if promoted else 'not promoted'}")


def test_sigterm_stops_every_process(stack):
    stack.process.process.send_signal(signal.SIGTERM)  # what Ctrl-C does, through make
    assert stack.process.process.wait(timeout=90) == 0
    deadline = time.monotonic() + 10
    while stack_processes(stack.project.root) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stack_processes(stack.project.root) == []
    assert "stack     | stopped" in stack.process.log_tail(50)


def api_pid(stack: Stack) -> int:
    """PID of the API's uvicorn (the API must not be restarted to swap models)."""
    port = f"--port {stack.api.rsplit(':', 1)[1]}"
    pids = [
        line.split(":", 1)[0] for line in stack_processes(stack.project.root) if "api.main:app" in line and port in line
    ]
    assert len(pids) == 1, pids
    return int(pids[0])
