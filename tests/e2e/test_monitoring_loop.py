"""End to end, the monitoring loop on the real stack (`scripts/run_stack.py`, what `make run` runs).

The stack trains its champion on the default split (all of 2020-2021, temporal: test = 2021-07..12)
and logs its reference profile; real accidents are replayed through the API; the Airflow DAG
`monitoring` runs the drift job (.venv-monitoring, Evidently), the label job and the decision:
- unshifted 2021-07..12 accidents -> verdict no_drift, no retraining run, no drift alert;
- night-time accidents only -> verdict drift on hour and lum, the API's gauges show it; on the
  second drifted window (2 of the last 3, params.yaml monitoring.votes_needed/votes_window) the
  repo's DatasetDrift rule fires in a real Prometheus (PROMETHEUS=1) scraping the API, and the
  DAG starts `dvc_pipeline` with a reason starting "drift:" in its conf (GET /retrain/{id} too);
- a third monitoring run on the same evidence starts nothing: the cooldown.
Real processes on free loopback ports, real data (BAAC_DATA_DIR), about ten minutes.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
import requests

from accidents.config import DAG_ID
from tests.e2e.test_stack import Stack, running_stack
from tests.support.monitoring import metric
from tests.support.processes import free_port
from tests.support.project import copy_project

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]
MONITORING_DAG = "monitoring"
WINDOW = ("--from", "2021-07-01", "--to", "2021-12-31")


@pytest.fixture(scope="module")
def prometheus_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, baac_dir, prometheus_port) -> Iterator[Stack]:
    ports = {"API_PORT": free_port(), "MLFLOW_PORT": free_port(), "AIRFLOW_PORT": free_port()}
    project = copy_project(tmp_path_factory.mktemp("loop"), f"http://127.0.0.1:{ports['MLFLOW_PORT']}", max_rows=0)
    # the default split and model family (params.yaml as committed); only the schedules are manual;
    # Prometheus on (make run PROMETHEUS=1) with the repo's alert rules, scraping the API
    with running_stack(project, ports, baac_dir, ACCIDENTS_MONITORING_SCHEDULE="none",
                       ACCIDENTS_NEW_DATA_SCHEDULE="none", PROMETHEUS="1",
                       PROMETHEUS_PORT=str(prometheus_port)) as started:  # fmt: skip
        yield started


def alerts(prometheus_port: int) -> dict[str, str]:
    """Prometheus' active alerts: name -> state (pending/firing)."""
    answer = requests.get(f"http://127.0.0.1:{prometheus_port}/api/v1/alerts", timeout=10).json()
    return {alert["labels"]["alertname"]: alert["state"] for alert in answer["data"]["alerts"]}


def wait_for_firing(prometheus_port: int, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout  # API gauge cache 30 s + scrape and evaluation every 15 s
    while alerts(prometheus_port).get(name) != "firing":
        assert time.monotonic() < deadline, f"{name} not firing after {timeout:.0f} s: {alerts(prometheus_port)}"
        time.sleep(3)


def replay(stack: Stack, *args: str) -> None:
    command = [
        str(stack.project.root / ".venv" / "bin" / "python"),
        "-m",
        "accidents.monitoring.replay",
        "--url",
        stack.api,
        *WINDOW,
        "--limit",
        "5000",
        "--batch-size",
        "100",
        "--no-progress",
        *args,
    ]
    result = subprocess.run(
        command, cwd=stack.project.root, env=stack.project.env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr


def monitoring_run(stack: Stack) -> dict:
    """One manual run of the monitoring DAG, waited for."""
    response = requests.post(f"{stack.airflow}/api/v2/dags/{MONITORING_DAG}/dagRuns", json={"logical_date": None},
                             headers=stack.airflow_token(), timeout=30)  # fmt: skip
    assert response.status_code in (200, 201), response.text
    return stack.wait_for_dag_run(response.json()["dag_run_id"], timeout=600, dag_id=MONITORING_DAG)


def task_states(stack: Stack, run_id: str) -> dict[str, str]:
    url = f"{stack.airflow}/api/v2/dags/{MONITORING_DAG}/dagRuns/{requests.utils.quote(run_id, safe='')}"
    tasks = requests.get(f"{url}/taskInstances", headers=stack.airflow_token(), timeout=10).json()["task_instances"]
    return {task["task_id"]: task["state"] for task in tasks}


def newest_drift(stack: Stack) -> dict:
    rows = requests.get(f"{stack.api}/monitoring/drift?limit=1", headers=stack.api_token(), timeout=10).json()
    return rows[0]


def test_unshifted_traffic_raises_nothing_and_night_traffic_retrains_once(stack, prometheus_port):
    version = stack.served_version()
    replay(stack)
    run = monitoring_run(stack)
    # the report-time model's tasks run too and find no /v2/predict traffic here (not enough data: success)
    assert task_states(stack, run["dag_run_id"]) == {"drift": "success", "estimate": "success", "realized": "success",
                                                      "drift_report_time": "success", "estimate_report_time": "success",
                                                      "decide": "success", "trigger_retraining": "skipped"}, \
        stack.task_logs(run["dag_run_id"], 3000, MONITORING_DAG)  # fmt: skip
    calm = newest_drift(stack)
    assert calm["verdict"] == "no_drift", calm
    assert calm["model_version"] == version and calm["window_rows"] == 5000 and calm["drifted_features"] == []
    assert calm["report_run_id"]  # the HTML report's MLflow run
    estimates = requests.get(f"{stack.api}/monitoring/estimates?limit=1", headers=stack.api_token(), timeout=10)
    (estimated,) = estimates.json()
    assert estimated["model_version"] == version and estimated["window_rows"] == 5000  # the drift job's window
    assert 0.5 < estimated["roc_auc"] < 1 and estimated["mlflow_run_id"]
    time.sleep(50)  # past the API's gauge cache and a scrape + evaluation: the calm verdict is seen
    assert not {"DatasetDrift", "PredictionDrift"} & set(alerts(prometheus_port)), alerts(prometheus_port)
    pipeline_runs = {r["dag_run_id"] for r in stack.dag_runs()}

    replay(stack, "--night", "--seed", "1")
    run = monitoring_run(stack)  # one drifted window of the last 3: not yet evidence (monitoring.votes_needed 2)
    assert task_states(stack, run["dag_run_id"])["trigger_retraining"] == "skipped"
    assert "no evidence" in stack.task_logs(run["dag_run_id"], None, MONITORING_DAG)
    run = monitoring_run(stack)  # the same night traffic, drifted again: 2 of the last 3
    assert task_states(stack, run["dag_run_id"])["trigger_retraining"] == "success"
    drift = newest_drift(stack)
    assert drift["verdict"] == "drift", drift
    assert {"hour", "lum"} <= set(drift["drifted_features"]) and drift["model_version"] == version
    deadline = time.monotonic() + 60  # the API caches the gauges for up to 30 s
    while metric(requests.get(f"{stack.api}/metrics", timeout=10).text, "drift_verdict", model="seed",
                 verdict="drift", version=version) != 1:  # fmt: skip
        assert time.monotonic() < deadline, "the gauges never showed the drift verdict"
        time.sleep(2)
    exposition = requests.get(f"{stack.api}/metrics", timeout=10).text
    share = metric(exposition, "dataset_drift_share", model="seed", version=version)
    assert share == pytest.approx(drift["drifted_share"])
    assert metric(exposition, "feature_drift_score", feature="hour", model="seed", version=version) >= 0.1
    wait_for_firing(prometheus_port, "DatasetDrift")  # the repo's alert rule, in a real Prometheus

    started = [r for r in stack.dag_runs() if r["dag_run_id"] not in pipeline_runs]
    assert len(started) == 1, started
    retrain = started[0]
    assert retrain["conf"]["reason"].startswith("drift: 2 of the last 3 windows"), retrain["conf"]
    status = requests.get(f"{stack.api}/retrain/{requests.utils.quote(retrain['dag_run_id'], safe='')}",
                          headers=stack.api_token(), timeout=10).json()  # fmt: skip
    assert status["reason"] == retrain["conf"]["reason"]
    # end that retrain now (the cooldown, not the single flight, must stop the next one)
    url = f"{stack.airflow}/api/v2/dags/{DAG_ID}/dagRuns/{requests.utils.quote(retrain['dag_run_id'], safe='')}"
    assert requests.patch(url, json={"state": "failed"}, headers=stack.airflow_token(), timeout=30).status_code == 200

    run = monitoring_run(stack)
    assert task_states(stack, run["dag_run_id"])["trigger_retraining"] == "skipped"
    assert "cooldown: run " + retrain["dag_run_id"] in stack.task_logs(run["dag_run_id"], None, MONITORING_DAG)
    assert {r["dag_run_id"] for r in stack.dag_runs()} == pipeline_runs | {retrain["dag_run_id"]}
