"""The scale-out stack (docker-compose.scale.yml), checked from outside: published ports, the S3
API and `docker compose` to stop and start one API replica. In file order:

1. both API replicas and the load balancer are ready, the replicas take the client address from
   HAProxy's X-Forwarded-For entry, not the client's, and they share the users and the
   prediction log (PostgreSQL);
2. an admin's POST /retrain on the load balancer runs the DAG to success on the Celery workers,
   its stages spread over both workers (Airflow's task instances say which host ran what);
3. MLflow's artifacts and the DVC remote are in the S3 store (listed through the S3 API);
4. both replicas serve the registry's new champion, without a restart;
5. a steady client on the load balancer sees no failed request while one replica stops and
   starts again;
6. /retrain's single flight across replicas: a run started through one replica is the 409 of the
   other; two POSTs at the same instant on the two replicas (serialized by the users database's retrain lock).
Run by scripts/docker/scale_test.sh (`make scale-test`); see conftest.py.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
import requests

from accidents.config import CHAMPION_ALIAS, DAG_ID, MODEL_NAME
from accidents.features import SEED_EXAMPLE
from accidents.report_time.contract import REPORT_EXAMPLE

pytestmark = [pytest.mark.scale, pytest.mark.timeout(2400)]

STAGES = ("import_data", "preprocess", "train", "evaluate", "predict")
WORKERS = {"airflow-worker-1", "airflow-worker-2"}
REPLICAS = ("api1", "api2")
RESULTS: dict[str, str] = {}  # what one test hands to the next (the run id)


def token(base: str, stack) -> dict[str, str]:
    username, password = stack.admin
    response = requests.post(f"{base}/auth/token", data={"username": username, "password": password}, timeout=30)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def airflow_get(stack, path: str, **params) -> dict:
    username, password = stack.airflow_admin
    login = requests.post(f"{stack.airflow}/auth/token", json={"username": username, "password": password}, timeout=30)
    assert login.status_code in (200, 201), login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    response = requests.get(f"{stack.airflow}{path}", headers=headers, params=params, timeout=30)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:500]}"
    return response.json()


def mlflow(stack, method: str, path: str, **kwargs) -> dict:
    login = (os.environ.get("MLFLOW_TRACKING_USERNAME") or "", os.environ.get("MLFLOW_TRACKING_PASSWORD") or "")
    url = f"{stack.mlflow}/api/2.0/mlflow/{path}"  # MLflow runs with basic auth: scale_test.sh passes a login
    response = requests.request(method, url, timeout=30, auth=login if all(login) else None, **kwargs)
    assert response.status_code == 200, f"{path}: {response.text[:500]}"
    return response.json()


def served_version(stack, replica: str) -> str:
    base = getattr(stack, replica)
    response = requests.get(f"{base}/model", headers=token(base, stack), timeout=30)
    assert response.status_code == 200, response.text
    return str(response.json()["version"])


def task_instances(stack, run_id: str) -> list[dict]:
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances"
    return airflow_get(stack, path)["task_instances"]


def wait_for_run(stack, run_id: str) -> dict:
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"
    deadline = time.monotonic() + stack.run_timeout
    while time.monotonic() < deadline:
        try:
            run = airflow_get(stack, path)
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(5)  # a busy api-server may miss one poll
            continue
        if run.get("state") in ("success", "failed"):
            states = {task["task_id"]: (task["state"], task.get("hostname")) for task in task_instances(stack, run_id)}
            assert run["state"] == "success", f"DAG run {run_id} failed: {states}"
            return run
        time.sleep(5)
    raise AssertionError(f"DAG run {run_id} not done after {stack.run_timeout:.0f} s")


def compose(stack, *args: str) -> str:
    # only the stack's env file counts (shell variables would override it in compose)
    env = {name: os.environ[name] for name in ("PATH", "HOME", "DOCKER_HOST") if name in os.environ}
    result = subprocess.run([*stack.compose, *args], capture_output=True, text=True, timeout=300, check=False, env=env)
    assert result.returncode == 0, f"{' '.join(args)}: {result.stderr[-2000:]}"
    return result.stdout


def container_start(stack, service: str) -> str:
    """When the service's container started, and how often Docker restarted it."""
    container = compose(stack, "ps", "-q", service).strip()
    result = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}} {{.RestartCount}}", container],
                            capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return result.stdout.strip()


def s3_list(stack, bucket: str) -> list[str]:
    """Keys of a bucket, listed through the S3 API (boto3 in the stack's own image, its own keys)."""
    script = (
        "import boto3, json, sys\n"
        "s3 = boto3.client('s3', endpoint_url='http://s3:8333', region_name='us-east-1')\n"
        "pages = s3.get_paginator('list_objects_v2').paginate(Bucket=sys.argv[1])\n"
        "print(json.dumps([item['Key'] for page in pages for item in page.get('Contents', [])]))\n"
    )
    out = compose(stack, "exec", "-T", "mlflow", "/app/.venv/bin/python", "-c", script, bucket)
    return json.loads(out.strip().splitlines()[-1])


def test_replicas_and_load_balancer_are_ready(stack):
    for name in ("lb", *REPLICAS):
        response = requests.get(f"{getattr(stack, name)}/ready", timeout=15)
        assert response.status_code == 200, f"{name}: {response.text}"
    # the load balancer answers with the replicas' own API (a login and a prediction)
    headers = token(stack.lb, stack)
    predicted = requests.post(f"{stack.lb}/predict", json={"features": list(SEED_EXAMPLE)}, headers=headers, timeout=30)
    assert predicted.status_code == 200, predicted.text
    for replica in REPLICAS:  # both models on each replica (issue #25): a real accident report
        reported = requests.post(f"{getattr(stack, replica)}/v2/predict", json=REPORT_EXAMPLE, timeout=30,
                                 headers=token(getattr(stack, replica), stack))  # fmt: skip
        assert reported.status_code == 200, f"{replica}: {reported.text}"
    # one replica's token works on the other: same JWT secret, same users database
    other = requests.get(f"{stack.api2}/model", headers=token(stack.api1, stack), timeout=30)
    assert other.status_code == 200, other.text


def logged_client(stack, request_id: str) -> str | None:
    """The client address the replica that served `request_id` logged (its JSON request line)."""
    for line in compose(stack, "logs", "--no-color", "--no-log-prefix", "api", "api-2").splitlines():
        if request_id in line and line.lstrip().startswith("{"):
            return json.loads(line)["client"]
    raise AssertionError(f"request {request_id} not in the replicas' logs")


def test_the_replicas_believe_haproxy_not_the_client_about_the_client_address(stack):
    """Issue #23 item 1 behind HAProxy: a spoofed X-Forwarded-For is neither the client (the
    address HAProxy appended is) nor ignored wholesale (HAProxy's own address is not the client);
    30 wrong logins, each with its own spoofed entry, meet a 429 before the 25th."""
    spoofed = "198.51.100.77"
    answer = requests.get(f"{stack.lb}/health", headers={"X-Forwarded-For": spoofed}, timeout=15)
    client = logged_client(stack, answer.headers["x-request-id"])
    config = json.loads(compose(stack, "config", "--format", "json"))
    trusted = config["services"]["api"]["environment"]["FORWARDED_ALLOW_IPS"]  # HAProxy's address
    assert client not in (spoofed, trusted, None), client
    statuses = [
        requests.post(
            f"{stack.lb}/auth/token",
            data={"username": "xff-probe", "password": f"guess-{index}"},  # not admin: later tests log in
            headers={"X-Forwarded-For": f"198.51.100.{index + 1}"},
            timeout=30,
        ).status_code
        for index in range(30)
    ]
    assert 429 in statuses[:24] and set(statuses) == {401, 429}, statuses


def test_prediction_log_is_shared_by_the_replicas(stack):
    accident_id = str(int(time.time() * 1000))
    body = {"features": list(SEED_EXAMPLE), "accident_id": accident_id}
    written = requests.post(f"{stack.api1}/predict", json=body, headers=token(stack.api1, stack), timeout=30)
    assert written.status_code == 200, written.text
    headers = token(stack.api2, stack)
    rows: list = []
    deadline = time.monotonic() + 60  # the log writer flushes in batches, off the request path
    while not rows and time.monotonic() < deadline:
        answer = requests.get(f"{stack.api2}/monitoring/predictions", params={"accident_id": accident_id},
                              headers=headers, timeout=30)  # fmt: skip
        assert answer.status_code == 200, answer.text
        rows = answer.json()["items"]
        time.sleep(1)
    assert len(rows) == 1, "a row written by replica 1 is read by replica 2"


def test_retrain_through_the_load_balancer_runs_on_both_workers(stack):
    started = time.monotonic()
    response = requests.post(f"{stack.lb}/retrain", headers=token(stack.lb, stack), timeout=90)
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    RESULTS["run_id"] = run_id
    wait_for_run(stack, run_id)
    RESULTS["retrain_seconds"] = f"{time.monotonic() - started:.0f}"
    tasks = {task["task_id"]: task for task in task_instances(stack, run_id)}
    assert all(tasks[stage]["state"] == "success" for stage in STAGES), {t: v["state"] for t, v in tasks.items()}
    hosts = {task_id: task.get("hostname") for task_id, task in tasks.items()}
    print(f"retrain {run_id}: {RESULTS['retrain_seconds']} s; task -> worker: {json.dumps(hosts)}")
    assert {hosts[stage] for stage in STAGES} == WORKERS, hosts
    # consecutive stages on different workers: each hand-over went through the store
    assert all(hosts[a] != hosts[b] for a, b in itertools.pairwise(STAGES)), hosts


def test_artifacts_and_dvc_remote_are_in_the_s3_store(stack):
    assert "run_id" in RESULTS, "needs the retrain test"
    versions = mlflow(stack, "GET", "model-versions/search", params={"filter": f"name='{MODEL_NAME}'"})
    newest = max(versions["model_versions"], key=lambda version: int(version["version"]))
    artifact_keys = s3_list(stack, "mlflow")
    run_keys = [key for key in artifact_keys if f"/{newest['run_id']}/" in key]
    assert run_keys, f"no artifact of run {newest['run_id']} in bucket mlflow ({len(artifact_keys)} keys)"
    assert any(key.endswith("MLmodel") for key in artifact_keys), "no logged model in bucket mlflow"
    dvc_keys = s3_list(stack, "dvc")
    assert any(key.startswith("store/files/md5/") for key in dvc_keys), dvc_keys[:20]
    safe_run = "".join(c if c.isalnum() or c in "._-" else "_" for c in RESULTS["run_id"])
    assert f"runs/{safe_run}/dvc.lock" in dvc_keys, "the run's lock, handed from stage to stage"
    # the store refuses a wrong key: the artifacts are not public
    bad = requests.get(f"{stack.s3}/mlflow?list-type=2", timeout=15)
    assert bad.status_code == 403, bad.status_code


def test_both_replicas_serve_the_new_champion_without_restart(stack):
    assert "run_id" in RESULTS, "needs the retrain test"
    started = {service: container_start(stack, service) for service in ("api", "api-2")}
    versions = mlflow(stack, "GET", "model-versions/search", params={"filter": f"name='{MODEL_NAME}'"})
    newest = str(max(int(version["version"]) for version in versions["model_versions"]))
    champion = mlflow(stack, "GET", "registered-models/alias", params={"name": MODEL_NAME, "alias": CHAMPION_ALIAS})
    if str(champion["model_version"]["version"]) != newest:
        # the run's challenger did not beat the champion (same data): promote it by hand, as an
        # operator would, so the replicas must pick up a version they never served
        alias = {"name": MODEL_NAME, "alias": CHAMPION_ALIAS, "version": newest}
        mlflow(stack, "POST", "registered-models/alias", json=alias)
    deadline = time.monotonic() + 90  # MODEL_POLL_SECONDS=10 in the test stack
    served = {}
    while time.monotonic() < deadline:
        served = {replica: served_version(stack, replica) for replica in REPLICAS}
        if set(served.values()) == {newest}:
            break
        time.sleep(2)
    assert set(served.values()) == {newest}, f"registry champion {newest}, replicas serve {served}"
    assert {service: container_start(stack, service) for service in ("api", "api-2")} == started, "no restart"


def test_no_failed_request_while_a_replica_stops_and_starts(stack):
    headers = token(stack.lb, stack)
    stop = threading.Event()
    outcomes: list[int | str] = []

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    answer = session.post(f"{stack.lb}/predict", json={"features": list(SEED_EXAMPLE)},
                                          headers=headers, timeout=30)  # fmt: skip
                    outcomes.append(answer.status_code)
                except requests.RequestException as error:
                    outcomes.append(type(error).__name__)
                time.sleep(0.05)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        time.sleep(3)
        compose(stack, "stop", "--timeout", "20", "api-2")
        time.sleep(8)  # the balancer has marked it down; traffic goes to replica 1 only
        compose(stack, "start", "api-2")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{stack.api2}/ready", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(2)
        time.sleep(6)  # back in the balancer's rotation
    finally:
        stop.set()
        thread.join(timeout=60)
    failures = [outcome for outcome in outcomes if outcome != 200]
    print(f"steady client through the load balancer: {len(outcomes)} requests, {len(failures)} failed")
    assert len(outcomes) > 50, outcomes
    assert not failures, failures[:20]
    assert requests.get(f"{stack.api2}/ready", timeout=10).status_code == 200, "replica 2 is back"


def airflow_patch(stack, path: str, body: dict) -> None:
    username, password = stack.airflow_admin
    login = requests.post(f"{stack.airflow}/auth/token", json={"username": username, "password": password}, timeout=30)
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    # Marking a run that has just started can meet the scheduler updating the same rows: seen once
    # as a 500 "Database error" after exactly PostgreSQL's 1 s deadlock_timeout. Airflow's own
    # error, a few attempts; the test's assertions are about our API, not this cleanup.
    for attempt in range(5):
        response = requests.patch(f"{stack.airflow}{path}", json=body, headers=headers, timeout=30)
        if response.status_code < 500:
            break
        time.sleep(1 + attempt)
    assert response.status_code == 200, response.text


def active_runs(stack) -> list[str]:
    runs = airflow_get(stack, f"/api/v2/dags/{DAG_ID}/dagRuns", state=["queued", "running"], limit=100)
    return [run["dag_run_id"] for run in runs["dag_runs"]]


def stop_runs(stack, run_ids: list[str]) -> None:
    for run_id in run_ids:  # marked failed: its tasks stop, no run stays active
        airflow_patch(stack, f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}", {"state": "failed"})


def test_single_flight_holds_across_replicas(stack):
    """A run started through one replica is the conflict answered by the other and by the balancer."""
    assert active_runs(stack) == [], "the retrain test's run is over"
    started = requests.post(f"{stack.api1}/retrain", headers=token(stack.api1, stack), timeout=90)
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    try:
        for base in (stack.api2, stack.lb):
            again = requests.post(f"{base}/retrain", headers=token(base, stack), timeout=90)
            assert again.status_code == 409, again.text
            assert again.json()["run_id"] == run_id, again.text
        assert active_runs(stack) == [run_id]
    finally:
        stop_runs(stack, active_runs(stack))


def test_single_flight_holds_for_simultaneous_posts_on_two_replicas(stack):
    """Two admins press retrain at the same instant on the two replicas: one run, one 409."""
    assert active_runs(stack) == []
    headers = {replica: token(getattr(stack, replica), stack) for replica in REPLICAS}
    barrier = threading.Barrier(len(REPLICAS))

    def press(replica: str) -> requests.Response:
        barrier.wait()
        return requests.post(f"{getattr(stack, replica)}/retrain", headers=headers[replica], timeout=90)

    with ThreadPoolExecutor(len(REPLICAS)) as pool:
        answers = list(pool.map(press, REPLICAS))
    runs = active_runs(stack)
    stop_runs(stack, runs)
    codes = sorted(answer.status_code for answer in answers)
    assert len(runs) == 1, f"{len(runs)} runs started; answers {codes}"
    assert codes == [202, 409], [answer.text[:200] for answer in answers]
