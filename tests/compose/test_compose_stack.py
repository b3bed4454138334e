"""The docker compose stack, seen as a user sees it: only the published ports.

The same checks as the native end-to-end test (tests/e2e), against containers: a token, the seed
prediction, a regular user refused retraining, an admin's retraining run through Airflow that
succeeds, the API serving the registry's champion afterwards, and MLflow listing the runs and
the alias. The stack trained its first model at `up` (the trainer one-shot), so every check can
start with a model. Run by scripts/docker/compose_test.sh (`make compose-test`); see conftest.py.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest
import requests

from accidents.config import CHAMPION_ALIAS, DAG_ID, EXPERIMENT_NAME, MODEL_NAME, REPORT_MODEL_NAME
from accidents.features import SEED_EXAMPLE
from accidents.report_time.contract import REPORT_EXAMPLE

pytestmark = [pytest.mark.compose, pytest.mark.timeout(2400)]  # above COMPOSE_RUN_TIMEOUT

MONITORING_DAG_ID = "monitoring"
STAGES = ("import_data", "preprocess", "train", "evaluate", "predict")
DEMO_PASSWORD = "admin123"  # the local mode's documented demo login


def api_token(stack, username: str, password: str) -> dict[str, str]:
    response = requests.post(f"{stack.api}/auth/token", data={"username": username, "password": password}, timeout=15)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def admin(stack) -> dict[str, str]:
    return api_token(stack, *stack.admin)


def airflow_token(stack) -> dict[str, str]:
    username, password = stack.airflow_admin
    response = requests.post(
        f"{stack.airflow}/auth/token", json={"username": username, "password": password}, timeout=15
    )
    assert response.status_code in (200, 201), response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def airflow_get(stack, path: str, **params) -> dict:
    response = requests.get(f"{stack.airflow}{path}", headers=airflow_token(stack), params=params, timeout=15)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:500]}"
    return response.json()


def mlflow_get(stack, path: str, **params) -> requests.Response:
    return requests.get(f"{stack.mlflow}/api/2.0/mlflow/{path}", params=params, auth=stack.mlflow_login, timeout=15)


def registry_champion(stack, name: str = MODEL_NAME) -> dict:
    response = mlflow_get(stack, "registered-models/alias", name=name, alias=CHAMPION_ALIAS)
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


def served_model(stack) -> dict:
    response = requests.get(f"{stack.api}/model", headers=admin(stack), timeout=15)
    assert response.status_code == 200, response.text
    return response.json()


def failed_task_logs(stack, run_id: str, dag_id: str = DAG_ID) -> str:
    """The logs of the run's failed tasks, through Airflow's REST API (for the assertion message)."""
    run_path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
    out = []
    for task in airflow_get(stack, f"{run_path}/taskInstances").get("task_instances", []):
        if task.get("state") not in ("failed", "upstream_failed", "up_for_retry"):
            continue
        try_number = max(int(task.get("try_number") or 1), 1)
        response = requests.get(
            f"{stack.airflow}{run_path}/taskInstances/{task['task_id']}/logs/{try_number}",
            headers={**airflow_token(stack), "Accept": "text/plain"},
            timeout=30,
        )
        out.append(f"--- {task['task_id']} ({task['state']}, try {try_number})\n{response.text[-4000:]}")
    return "\n".join(out) or "(no failed task)"


def wait_for_dag_run(stack, run_id: str, dag_id: str = DAG_ID) -> dict:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
    deadline = time.monotonic() + stack.run_timeout
    while time.monotonic() < deadline:
        try:
            run = airflow_get(stack, path)
        except (requests.ConnectionError, requests.Timeout):
            # a busy api-server (the run's own tasks share the CPU) may miss one poll: ask again
            time.sleep(5)
            continue
        if run.get("state") in ("success", "failed"):
            assert run["state"] == "success", f"DAG run {run_id} failed:\n{failed_task_logs(stack, run_id, dag_id)}"
            return run
        time.sleep(5)
    raise AssertionError(
        f"DAG run {run_id} not done after {stack.run_timeout:.0f} s:\n{failed_task_logs(stack, run_id, dag_id)}"
    )


def test_services_answer(stack):
    assert requests.get(f"{stack.api}/health", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{stack.api}/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    assert requests.get(f"{stack.mlflow}/health", timeout=10).status_code == 200
    health = requests.get(f"{stack.airflow}/api/v2/monitor/health", timeout=10).json()
    assert health["metadatabase"]["status"] == "healthy", health
    assert health["scheduler"]["status"] == "healthy", health


def test_prometheus_scrapes_the_api_with_the_alert_rules(stack):
    """The compose `prometheus` service: ready, its one target (api:8000) healthy, every rule of
    deploy/prometheus/alerts.yml loaded, the serving model seen and NoModelLoaded quiet."""
    assert stack.prometheus, "COMPOSE_BASE_URLS lacks prometheus=..."
    assert requests.get(f"{stack.prometheus}/-/ready", timeout=10).status_code == 200

    def api_v1(path: str, **params: str) -> dict:
        answer = requests.get(f"{stack.prometheus}/api/v1/{path}", params=params, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    deadline = time.monotonic() + 90
    while True:  # the first scrape comes within one 15 s interval of start
        (target,) = api_v1("targets")["activeTargets"] or [{"health": "unknown"}]
        if target["health"] == "up" or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert target["health"] == "up" and target["labels"]["instance"] == "api:8000", target

    def rules_now() -> dict:
        return {rule["name"]: rule for group in api_v1("rules")["groups"] for rule in group["rules"]}

    # Prometheus may start before the API: a scrape that failed then leaves AccidentsApiDown pending
    # until the rules are evaluated again (every 15 s) on a successful scrape.
    deadline = time.monotonic() + 60
    while True:
        rules = rules_now()
        quiet = all(rules.get(name, {}).get("state") == "inactive" for name in ("NoModelLoaded", "AccidentsApiDown"))
        if quiet or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert {"NoModelLoaded", "DatasetDrift", "PredictionDrift", "RealizedAucDrop", "PredictionLogDropping",
            "HighServerErrorRate", "HighPredictLatencyP99", "AccidentsApiDown", "EstimatedAucDrop",
            "EstimateRealizedGap"} <= rules.keys()  # fmt: skip
    (manager,) = api_v1("alertmanagers")["activeAlertmanagers"]  # the alertmanager service receives them
    assert manager["url"] == "http://alertmanager:9093/api/v2/alerts"
    assert all(rule["health"] in ("ok", "unknown") for rule in rules.values()), rules
    (info,) = api_v1("query", query='model_info{job="accidents-api"} == 1')["result"]
    assert info["metric"]["version"] == served_model(stack)["version"]
    assert rules["NoModelLoaded"]["state"] == "inactive" and rules["AccidentsApiDown"]["state"] == "inactive"


def test_anonymous_client_cannot_move_the_champion(stack):
    """MLflow runs with basic auth: without a login nobody moves `champion` (the API serves it),
    nor reads the registry; the healthcheck needs none."""
    body = {"name": MODEL_NAME, "alias": CHAMPION_ALIAS, "version": "1"}
    moved = requests.post(f"{stack.mlflow}/api/2.0/mlflow/registered-models/alias", json=body, timeout=15)
    assert moved.status_code == 401, moved.text
    read = requests.get(f"{stack.mlflow}/api/2.0/mlflow/registered-models/get", params={"name": MODEL_NAME}, timeout=15)
    assert read.status_code == 401, read.text
    assert requests.get(f"{stack.mlflow}/health", timeout=15).status_code == 200


def test_first_model_is_the_registry_champion_on_real_data(stack):
    model = served_model(stack)
    champion = registry_champion(stack)
    assert model["version"] == str(champion["version"])
    assert model["source"] == "registry" and model["degraded"] is False
    # compose_test.sh mounts the real BAAC mirror: the first model must not be synthetic
    assert model["data_source"] == "real" and model["synthetic"] is False, model


def test_token_and_seed_prediction(stack):
    response = requests.post(
        f"{stack.api}/predict", json={"features": list(SEED_EXAMPLE)}, headers=admin(stack), timeout=15
    )
    assert response.status_code == 200, response.text
    body = response.json()
    prediction = body["predictions"][0]
    assert prediction["class"] in (0, 1) and 0.0 <= prediction["probability"] <= 1.0
    assert body["model_version"] == str(registry_champion(stack)["version"])


def test_report_time_model_answers_a_real_accident_report(stack):
    """The stack serves both models (issue #25): the trainer's first run registered the report-time
    champion too, and the API's read-only MLflow account loads it. REPORT_EXAMPLE is accident
    202100000002 as a reporter sends it."""
    response = requests.post(f"{stack.api}/v2/predict", json=REPORT_EXAMPLE, headers=admin(stack), timeout=15)
    assert response.status_code == 200, response.text
    body = response.json()
    (prediction,) = body["predictions"]
    assert prediction["class"] in (0, 1) and 0.0 <= prediction["probability"] <= 1.0
    assert body["model_version"] == str(registry_champion(stack, REPORT_MODEL_NAME)["version"])


def test_wrong_password_and_no_token_are_refused(stack):
    username, _ = stack.admin
    wrong = requests.post(f"{stack.api}/auth/token", data={"username": username, "password": "not-it"}, timeout=15)
    assert wrong.status_code == 401
    anonymous = requests.post(f"{stack.api}/predict", json={"features": list(SEED_EXAMPLE)}, timeout=15)
    assert anonymous.status_code == 401


def test_nul_bytes_in_usernames_are_client_errors_on_postgresql(stack):
    """Issue #17's two curl lines: PostgreSQL refuses NUL in text, the API must answer 4xx first."""
    login = requests.post(f"{stack.api}/auth/token", data="username=ab%00cd&password=x", timeout=15,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert login.status_code == 401, login.text
    patched = requests.patch(f"{stack.api}/users/a%00b", json={"disabled": True}, headers=admin(stack), timeout=15)
    assert patched.status_code == 404, patched.text
    deleted = requests.delete(f"{stack.api}/users/a%00b", headers=admin(stack), timeout=15)
    assert deleted.status_code == 404, deleted.text


def test_served_rows_reach_the_prediction_log_in_postgresql(stack):
    headers = admin(stack)
    accident_id = str(int(time.time() * 1000))  # unique for this run
    body = {"features": list(SEED_EXAMPLE), "accident_id": accident_id}
    predicted = requests.post(f"{stack.api}/predict", json=body, headers=headers, timeout=15)
    assert predicted.status_code == 200, predicted.text
    deadline = time.monotonic() + 30  # the writer flushes in batches, off the request path
    rows: list = []
    while not rows and time.monotonic() < deadline:
        answer = requests.get(f"{stack.api}/monitoring/predictions", params={"accident_id": accident_id},
                              headers=headers, timeout=15)  # fmt: skip
        assert answer.status_code == 200, answer.text
        rows = answer.json()["items"]
        time.sleep(0.5)
    assert len(rows) == 1, rows
    assert rows[0]["model_version"] == predicted.json()["model_version"]


def test_production_mode_has_no_demo_login(stack):
    """compose_test.sh starts the documented production mode with generated secrets: they log in,
    the demo password does not (its refusal of demo secrets at start is checked by the script)."""
    if stack.environment != "production":
        pytest.skip(f"the stack runs with API_ENVIRONMENT={stack.environment}")
    username, password = stack.admin
    assert password != DEMO_PASSWORD
    assert "Authorization" in api_token(stack, username, password)
    demo = requests.post(f"{stack.api}/auth/token", data={"username": username, "password": DEMO_PASSWORD}, timeout=15)
    assert demo.status_code == 401, demo.text


def test_regular_user_cannot_retrain(stack):
    user = {"username": f"compose-user-{int(time.time())}", "password": "a-long-user-password"}
    created = requests.post(f"{stack.api}/users", json={**user, "role": "user"}, headers=admin(stack), timeout=15)
    assert created.status_code == 201, created.text
    headers = api_token(stack, user["username"], user["password"])
    assert requests.post(f"{stack.api}/retrain", headers=headers, timeout=15).status_code == 403
    # a regular user still predicts
    predicted = requests.post(
        f"{stack.api}/predict", json={"features": list(SEED_EXAMPLE)}, headers=headers, timeout=15
    )
    assert predicted.status_code == 200, predicted.text


def test_airflow_lists_the_dag(stack):
    dag = airflow_get(stack, f"/api/v2/dags/{DAG_ID}")
    assert dag["dag_id"] == DAG_ID and dag["is_paused"] is False
    tasks = {task["task_id"] for task in airflow_get(stack, f"/api/v2/dags/{DAG_ID}/tasks")["tasks"]}
    assert set(STAGES) <= tasks, tasks


def test_admin_retrain_runs_the_dag_and_the_api_serves_the_champion(stack):
    headers = admin(stack)
    versions_before = mlflow_get(stack, "model-versions/search", filter=f"name='{MODEL_NAME}'").json()
    n_versions_before = len(versions_before.get("model_versions", []))

    response = requests.post(f"{stack.api}/retrain", headers=headers, timeout=60)
    if response.status_code == 409:  # a scheduled run was active: let it finish, then ours
        wait_for_dag_run(stack, response.json()["run_id"])
        response = requests.post(f"{stack.api}/retrain", headers=headers, timeout=60)
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]

    run = wait_for_dag_run(stack, run_id)
    assert run["run_type"] == "manual"
    tasks = airflow_get(stack, f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances")
    states = {task["task_id"]: task["state"] for task in tasks["task_instances"]}
    assert all(states.get(stage) == "success" for stage in STAGES), states

    status = requests.get(f"{stack.api}/retrain/{quote(run_id, safe='')}", headers=headers, timeout=30)
    assert status.status_code == 200 and status.json()["state"] == "success", status.text

    # the run registered a new version; whichever version is champion now, the API serves it
    versions = mlflow_get(stack, "model-versions/search", filter=f"name='{MODEL_NAME}'").json()["model_versions"]
    assert len(versions) == n_versions_before + 1
    champion = str(registry_champion(stack)["version"])
    assert status.json()["champion_version"] == champion
    deadline = time.monotonic() + 60  # the DAG's reload_api_model did it already; the poller backs it up
    while served_model(stack)["version"] != champion and time.monotonic() < deadline:
        time.sleep(2)
    assert served_model(stack)["version"] == champion


def test_mlflow_lists_the_runs_and_the_alias(stack):
    experiment = mlflow_get(stack, "experiments/get-by-name", experiment_name=EXPERIMENT_NAME)
    assert experiment.status_code == 200, experiment.text
    experiment_id = experiment.json()["experiment"]["experiment_id"]
    runs = requests.post(
        f"{stack.mlflow}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [experiment_id], "max_results": 100},
        auth=stack.mlflow_login,
        timeout=15,
    ).json()["runs"]
    assert len(runs) >= 2, "the trainer's run and the DAG's run"
    for run in runs:
        assert run["data"].get("params"), run["info"]["run_id"]
        metric_names = {metric["key"] for metric in run["data"].get("metrics", [])}
        assert {"test_roc_auc", "test_f1"} <= metric_names, metric_names
    model = mlflow_get(stack, "registered-models/get", name=MODEL_NAME).json()["registered_model"]
    assert CHAMPION_ALIAS in {alias["alias"] for alias in model.get("aliases", [])}
    # the champion's run and its artifacts, served through the MLflow server (artifacts volume)
    champion = registry_champion(stack)
    assert champion["run_id"] in {run["info"]["run_id"] for run in runs}
    listed = mlflow_get(stack, "artifacts/list", run_id=champion["run_id"])
    assert listed.status_code == 200, listed.text
    assert listed.json().get("files"), f"no artifacts listed for run {champion['run_id']}"


def test_monitoring_dag_runs_the_drift_job_in_the_image(stack):
    """The monitoring DAG in the Airflow image: the drift job in its own venv (.venv-monitoring,
    Evidently on pandas 2) reads the PostgreSQL prediction log and the champion's reference, the
    label job runs, the decision declines on a window this small; the API shows the stored result."""
    headers = admin(stack)
    for _ in range(3):  # a few logged rows: fewer than the minimum window
        assert requests.post(f"{stack.api}/predict", json={"features": list(SEED_EXAMPLE)}, headers=headers,
                             timeout=15).status_code == 200  # fmt: skip
    before = requests.get(f"{stack.api}/monitoring/drift", headers=headers, timeout=15).json()
    response = requests.post(
        f"{stack.airflow}/api/v2/dags/{MONITORING_DAG_ID}/dagRuns",
        headers=airflow_token(stack),
        json={"logical_date": None},
        timeout=30,
    )
    assert response.status_code in (200, 201), response.text
    run_id = response.json()["dag_run_id"]
    wait_for_dag_run(stack, run_id, MONITORING_DAG_ID)
    path = f"/api/v2/dags/{MONITORING_DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances"
    states = {task["task_id"]: task["state"] for task in airflow_get(stack, path)["task_instances"]}
    assert states.get("drift") == "success" and states.get("decide") == "success", states
    results = requests.get(f"{stack.api}/monitoring/drift", headers=headers, timeout=15).json()
    assert len(results) == len(before) + 1, results
    assert results[0]["verdict"] == "not_enough_data", results[0]


# Last in this file: it leaves the host's client blocked for `admin` (LOGIN_WINDOW_SECONDS).
def test_a_spoofed_x_forwarded_for_does_not_reset_the_login_limits(stack):
    """Issue #23 item 1, on the image's own command: 30 wrong admin logins from this host, each
    with its own X-Forwarded-For, are one client for the API's throttle (429 from the 6th at the
    latest), not 30. (The owner logging in from another client meanwhile: tests/api/
    test_login_limits.py; every request from this host reaches the stack from one address.)"""
    username, _ = stack.admin
    statuses = [
        requests.post(
            f"{stack.api}/auth/token",
            data={"username": username, "password": f"guess-{index}"},
            headers={"X-Forwarded-For": f"198.51.100.{index + 1}"},
            timeout=15,
        ).status_code
        for index in range(30)
    ]
    assert 429 in statuses[:6] and set(statuses[statuses.index(429) :]) == {429}, statuses
    assert set(statuses) == {401, 429}, statuses
