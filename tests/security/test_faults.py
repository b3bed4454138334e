"""Faults: each leaves the service answering and loses nothing.

- MLflow stopped while the API serves; the API killed (SIGKILL) during a champion swap (a relay in
  front of MLflow holds the new model's download, so the kill provably lands mid-swap);
- a retraining run that crashes midway, and one whose model file is corrupt (the real DVC
  pipeline in a copy of the trained project, started through POST /retrain, local orchestrator);
- Airflow unreachable, hanging, failing, or losing the answer to a trigger (FakeAirflow, a stand-in
  speaking Airflow's REST API v2 on 127.0.0.1, because a real Airflow cannot play these faults on
  demand: docs/testing.md; the real Airflow path is exercised by tests/e2e);
- two API processes and concurrent POST /retrain calls (exactly one run);
- the users database locked by another writer, or its files made immutable (chattr +i); on
  PostgreSQL, a table lock, the database switched to read-only, and the server stopped.

Registries of our own (real MLflow servers): these tests move the alias and stop servers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from accidents.config import Paths
from accidents.features import SEED_EXAMPLE
from accidents.model.model_store import MODEL_FILE
from accidents.model.registry import champion_version, client
from api.serving.registry_client import ARTIFACTS
from tests.api.conftest import login, project_with_champion, register, set_champion, start_api, wait_retrain_done
from tests.security.conftest import assert_no_leak
from tests.support.immutable import chattr_refused
from tests.support.postgres import start_postgres
from tests.support.processes import free_port
from tests.support.project import start_mlflow

pytestmark = pytest.mark.timeout(600)
SEED = {"features": list(SEED_EXAMPLE)}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def registry_champion(uri: str) -> str:
    return str(champion_version(client(uri)).version)


# --- MLflow down, SIGKILL during a swap ---------------------------------------------------------


class HoldingRelay:
    """An HTTP relay in front of the real MLflow server that, once armed, holds the first download
    of a model file: the API then provably stands in the middle of a swap (it read the moved alias
    and waits for the new model's bytes). Everything else is forwarded unchanged."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.armed = threading.Event()
        self.holding = threading.Event()  # set when a model download arrives while armed
        self.release = threading.Event()
        self.delivered = threading.Event()  # set once the held model file reached the API
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                held = relay.armed.is_set() and self.path.startswith(ARTIFACTS) and MODEL_FILE in self.path
                if held:
                    relay.armed.clear()
                    relay.holding.set()
                    relay.release.wait(60)
                headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                answer = requests.request(self.command, relay.upstream + self.path, data=body, headers=headers,
                                          timeout=30)  # fmt: skip
                with contextlib.suppress(OSError):  # the API was killed meanwhile
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
                    self.send_header("Content-Length", str(len(answer.content)))
                    self.end_headers()
                    self.wfile.write(answer.content)
                    self.wfile.flush()
                    if held:
                        relay.delivered.set()

            do_GET = do_POST = _forward  # noqa: N815 - http.server's handler names

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


def test_sigkill_during_swap_then_mlflow_down(tmp_path, champion_bundle):
    mlflow_process, uri = start_mlflow(tmp_path / "mlflow")
    relay = HoldingRelay(uri)
    try:
        first = register(uri, champion_bundle)
        set_champion(uri, first)
        project = project_with_champion(tmp_path / "project", champion_bundle)
        env = {"ACCIDENTS_PROJECT_DIR": str(project), "STATE_DIR": str(tmp_path / "state"), "MLFLOW_TRACKING_URI": uri}
        api = start_api(tmp_path, {**env, "MLFLOW_TRACKING_URI": relay.url, "MLFLOW_TIMEOUT_SECONDS": "60"})
        admin = login(api.url)
        second = register(uri, champion_bundle, threshold=0.2)
        set_champion(uri, second)

        # SIGKILL while POST /model/reload is in the swap: the relay holds the new model's download
        relay.armed.set()
        reload = threading.Thread(
            target=lambda: _ignore_errors(requests.post, f"{api.url}/model/reload", headers=admin, timeout=90)
        )
        reload.start()
        assert relay.holding.wait(60), "the reload never asked for the new model file"
        assert requests.get(f"{api.url}/model", headers=admin, timeout=10).json()["version"] == first  # mid-swap
        assert not relay.delivered.is_set()  # the new model's bytes have not reached the API
        api.process.signal(signal.SIGKILL)
        assert api.process.process.wait(timeout=10) == -signal.SIGKILL  # killed, not finished
        relay.release.set()
        reload.join()
        api.stop()

        # restarted on the same state: serves a valid champion (the registry's), users intact
        api = start_api(tmp_path, env)
        admin = login(api.url)
        assert requests.get(f"{api.url}/ready", timeout=10).status_code == 200
        info = requests.get(f"{api.url}/model", headers=admin, timeout=10).json()
        assert info["version"] == second and info["source"] == "registry" and info["threshold"] == 0.2
        answer = requests.post(f"{api.url}/predict", json=SEED, headers=admin, timeout=30)
        assert answer.status_code == 200 and answer.json()["model_version"] == second

        # MLflow stops while the API serves: it keeps serving, /ready 200, /model degraded
        mlflow_process.stop()
        check = requests.post(f"{api.url}/model/reload", headers=admin, timeout=30).json()["check"]
        assert check["action"] == "unavailable" and check["registry_reachable"] is False
        for _ in range(20):
            answer = requests.post(f"{api.url}/predict", json=SEED, headers=admin, timeout=30)
            assert answer.status_code == 200 and answer.json()["model_version"] == second
        ready = requests.get(f"{api.url}/ready", timeout=10)
        assert ready.status_code == 200 and ready.json()["degraded"] is True
        info = requests.get(f"{api.url}/model", headers=admin, timeout=10).json()
        assert info["degraded"] is True and info["version"] == second
        api.stop()

        # and a restart while MLflow is still down serves the pipeline's local copy
        api = start_api(tmp_path, env)
        admin = login(api.url)
        info = requests.get(f"{api.url}/model", headers=admin, timeout=10).json()
        assert info["source"] == "local" and info["degraded"] is True
        assert requests.post(f"{api.url}/predict", json=SEED, headers=admin, timeout=30).status_code == 200
        api.stop()
    finally:
        relay.stop()
        mlflow_process.stop()


def _ignore_errors(function, *args, **kwargs) -> None:
    with contextlib.suppress(requests.RequestException):  # the server is killed under the request
        function(*args, **kwargs)


# --- retraining runs that crash midway or produce a corrupt model --------------------------------


@pytest.fixture
def pipeline_copy(tmp_path, trained_project, champion_bundle):
    """A copy of the trained project (data and DVC state included) on a registry of our own."""
    process, uri = start_mlflow(tmp_path / "mlflow")
    root = tmp_path / "copy"
    shutil.copytree(trained_project.root, root, symlinks=True)
    version = register(uri, champion_bundle)
    set_champion(uri, version)
    yield root, uri
    process.stop()


def test_crashed_and_corrupt_training_runs_leave_the_champion_alone(pipeline_copy, app_factory, tmp_path):
    root, uri = pipeline_copy
    champion_file = Paths(root).champion
    before = (registry_champion(uri), sha256(champion_file))
    script = tmp_path / "faulty_retrain.sh"
    script.write_text(
        "#!/usr/bin/env bash\n"
        "set -euo pipefail\n"
        f'cd "{root}"\n'
        f'export PATH="{root}/.venv/bin:$PATH"\n'
        'if [ "$(cat fault)" = crash ]; then\n'
        "  dvc repro -f -s train\n"  # params.yaml names a model family that does not exist
        "else\n"
        "  dvc repro -f -s train\n"
        "  rm -f models/challenger.zip && printf 'PK\\003\\004 truncated' > models/challenger.zip\n"
        "  dvc repro -s evaluate\n"
        "fi\n"
    )
    api = app_factory(root, mlflow_tracking_uri=uri, retrain_command=f"bash {script}")
    admin = login(api)
    served = api.get("/model", headers=admin).json()["version"]
    assert served == before[0]
    params = (root / "params.yaml").read_text()

    for fault in ("crash", "corrupt"):
        (root / "fault").write_text(fault)
        broken = params.replace("family: hist_gradient_boosting", "family: no_such_family")
        (root / "params.yaml").write_text(broken if fault == "crash" else params)
        started = api.post("/retrain", headers=admin)
        assert started.status_code == 202, started.text
        run = wait_retrain_done(api, admin, started.json()["run_id"], timeout=300, poll=0.5)
        assert run["state"] == "failed" and "exit code" in run["detail"], run
        assert run["promoted"] in (False, None)
        log = (root / "state" / "retrain" / f"{run['run_id']}.log").read_text()
        expected = "no_such_family" if fault == "crash" else "challenger model unusable"
        assert expected in log, log[-2000:]
        # the champion is unchanged everywhere, and the API serves it
        assert (registry_champion(uri), sha256(champion_file)) == before
        answer = api.post("/predict", json=SEED, headers=admin)
        assert answer.status_code == 200 and answer.json()["model_version"] == served
        check = api.post("/model/reload", headers=admin).json()["check"]
        assert check["action"] == "unchanged" and check["current_version"] == served
    (root / "params.yaml").write_text(params)


# --- Airflow unreachable, hanging, failing, losing answers; the schedule races the API -----------


ACTIVE = ("queued", "running")


class FakeAirflow:
    """Airflow 3's REST API v2, as much as the API uses: token, list active runs, trigger, status.

    A stand-in, the one in these suites (docs/testing.md says why): the faults below (500 on every
    call, an answer lost after the run was created, a hang on one call, a scheduled run appearing
    between two calls) are what the test is about, and a real Airflow does not produce them on
    demand. The real Airflow path (trigger, states, success) is tested by tests/e2e/test_stack.py.
    """

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.runs: dict[str, str] = {}  # run_id -> state
        self.triggers = 0
        self.mode = "ok"  # ok | hang | error | lose-answer
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                with contextlib.suppress(OSError):  # the API gave up waiting (hang modes)
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/auth/token":
                    return self._send(201, {"access_token": "fake-token"})
                if fake.mode == "hang":
                    time.sleep(3)
                if fake.mode == "error":
                    return self._send(500, {"detail": "boom"})
                with fake._lock:
                    fake.triggers += 1
                    run_id = f"manual__{fake.triggers}"
                    fake.runs[run_id] = "queued"
                if fake.mode == "lose-answer":  # created, but the answer never arrives in time
                    time.sleep(3)
                return self._send(200, {"dag_run_id": run_id, "state": "queued"})

            def do_GET(self) -> None:
                if fake.mode == "hang":
                    time.sleep(3)
                if fake.mode == "error":
                    return self._send(500, {"detail": "boom"})
                path = self.path.split("?")[0]
                if path.endswith("/dagRuns"):
                    with fake._lock:
                        active = [
                            {"dag_run_id": r, "state": s} for r, s in fake.runs.items() if s in ("queued", "running")
                        ]
                    return self._send(200, {"dag_runs": active[:1], "total_entries": len(active)})
                if path.endswith("/taskInstances"):
                    return self._send(200, {"task_instances": []})
                run_id = path.rsplit("/", 1)[1].replace("%2B", "+")
                if run_id not in fake.runs:
                    return self._send(404, {"detail": "not found"})
                return self._send(200, {"dag_run_id": run_id, "state": fake.runs[run_id]})

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def test_airflow_faults_never_queue_twice(app_factory):
    airflow = FakeAirflow()
    airflow.start()
    try:
        api = app_factory(airflow_api_url=airflow.url, airflow_timeout_seconds=1)
        admin = login(api)
        first = api.post("/retrain", headers=admin)
        assert first.status_code == 202 and airflow.triggers == 1
        run_id = first.json()["run_id"]

        airflow.stop()  # Airflow down: a clear 503, every time, and nothing queued
        for _ in range(3):
            response = api.post("/retrain", headers=admin)
            assert response.status_code == 503
            assert (
                "orchestrator unavailable" in response.json()["detail"] and "unreachable" in response.json()["detail"]
            )
            assert_no_leak(response.text)
        assert api.get(f"/retrain/{run_id}", headers=admin).status_code == 503

        airflow.start()  # back: the run it still holds answers 409, no second run
        again = api.post("/retrain", headers=admin)
        assert again.status_code == 409 and again.json()["run_id"] == run_id and airflow.triggers == 1

        # the weekly schedule started a run: concurrent API calls all answer 409 with it
        airflow.runs = {run_id: "success", "scheduled__2025-01-06": "running"}
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: api.post("/retrain", headers=admin), range(4)))
        assert {(a.status_code, a.json()["run_id"]) for a in answers} == {(409, "scheduled__2025-01-06")}
        assert airflow.triggers == 1
        airflow.runs = {run_id: "success", "scheduled__2025-01-06": "success"}

        for mode in ("hang", "error"):  # a hanging or failing Airflow: 503 within the timeout
            airflow.mode = mode
            started = time.monotonic()
            response = api.post("/retrain", headers=admin)
            assert response.status_code == 503 and time.monotonic() - started < 5, (mode, response.text)
            assert airflow.triggers == 1

        airflow.mode = "lose-answer"  # Airflow created the run but its answer timed out: 503 ...
        assert api.post("/retrain", headers=admin).status_code == 503 and airflow.triggers == 2
        airflow.mode = "ok"  # ... and the retry finds that run instead of queueing another
        retry = api.post("/retrain", headers=admin)
        assert retry.status_code == 409 and retry.json()["run_id"] == "manual__2" and airflow.triggers == 2
    finally:
        airflow.stop()


# --- concurrent POST /retrain on two API processes ------------------------------------------------


def test_concurrent_retrain_calls_on_two_api_processes_start_one_run(tmp_path):
    runs_log = tmp_path / "runs.log"
    (tmp_path / "project").mkdir()
    script = tmp_path / "retrain.sh"
    script.write_text(f'#!/usr/bin/env bash\necho "$$" >> "{runs_log}"\nsleep 4\n')
    env = {
        "ACCIDENTS_PROJECT_DIR": str(tmp_path / "project"),
        "STATE_DIR": str(tmp_path / "state"),
        "RETRAIN_COMMAND": f"bash {script}",
        "JWT_SECRET": secrets.token_urlsafe(48),
    }
    first, second = start_api(tmp_path, env), start_api(tmp_path, env)
    try:
        admin = login(first.url)
        urls = [first.url, second.url] * 6
        with ThreadPoolExecutor(len(urls)) as pool:
            answers = list(pool.map(lambda url: requests.post(f"{url}/retrain", headers=admin, timeout=30), urls))
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [202] + [409] * (len(urls) - 1), [(a.status_code, a.text) for a in answers]
        run_id = next(a.json()["run_id"] for a in answers if a.status_code == 202)
        assert {a.json()["run_id"] for a in answers} == {run_id}
        time.sleep(1)
        assert len(runs_log.read_text().split()) == 1
    finally:
        first.stop()
        second.stop()


# --- the users database locked or read-only ------------------------------------------------------


def test_users_database_locked_or_read_only_is_a_clear_503(app_factory, tmp_path):
    api = app_factory(database_busy_timeout_seconds=1)
    admin = login(api)
    assert api.post("/users", json={"username": "bob", "password": "bob-password"}, headers=admin).status_code == 201
    state = tmp_path / "project" / "state"
    database = state / "api.db"

    def users() -> list[tuple]:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            return connection.execute("SELECT username, password_hash, token_version FROM users").fetchall()

    before = users()

    # another process holds the write lock: writes answer 503 after the busy timeout, reads go on
    lock = sqlite3.connect(database)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        response = api.post("/users", json={"username": "carl", "password": "carl-password"}, headers=admin)
        assert response.status_code == 503 and response.headers["retry-after"] == "5", response.text
        assert "users database unavailable" in response.json()["detail"] and time.monotonic() - started < 5
        assert_no_leak(response.text)
        assert api.get("/users", headers=admin).status_code == 200
        assert api.post("/auth/token", data={"username": "bob", "password": "bob-password"}).status_code == 200
    finally:
        lock.rollback()
        lock.close()
    assert users() == before

    # the database files made immutable (even root cannot write them): 503 on writes, reads go on
    files = [str(path) for path in state.glob("api.db*")]
    chattr = subprocess.run(["chattr", "+i", *files, str(state)], capture_output=True, text=True)
    if chattr.returncode != 0:
        pytest.skip(chattr_refused(chattr))
    try:
        for call in (
            lambda: api.post("/users", json={"username": "dan", "password": "dan-password"}, headers=admin),
            lambda: api.patch("/users/bob", json={"disabled": True}, headers=admin),
            lambda: api.delete("/users/bob", headers=admin),
        ):
            response = call()
            assert response.status_code == 503, response.text
            assert_no_leak(response.text)
        assert [user["username"] for user in api.get("/users", headers=admin).json()] == ["admin", "bob"]
        assert api.post("/predict", json=SEED, headers=admin).status_code == 503  # no model here: the usual 503
        assert api.post("/auth/token", data={"username": "bob", "password": "bob-password"}).status_code == 200
    finally:
        subprocess.run(["chattr", "-i", *files, str(state)], check=True)
    assert users() == before
    # writable again: writes work, nothing was lost. A probe or lookup that ran while the files were
    # immutable may have marked the users database down: account routes answer 503 until the next
    # probe (DATABASE_PROBE_SECONDS, 2 s) finds it answering again.
    deadline = time.monotonic() + 15
    while api.get("/users", headers=admin).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert api.post("/users", json={"username": "dan", "password": "dan-password"}, headers=admin).status_code == 201
    assert [row[0] for row in users()] == ["admin", "bob", "dan"]
    assert os.access(database, os.W_OK)


# --- the users database on PostgreSQL: locked, read-only, server gone -----------------------------


def test_postgresql_users_table_locked_or_read_only_is_a_clear_503(postgres, app_factory):
    """PostgreSQL's versions of the SQLite faults above: another writer's table lock (lock_timeout =
    DATABASE_BUSY_TIMEOUT_SECONDS, not a hang), then the database switched to read-only (as a
    failed-over replica is): writes answer 503 + Retry-After, reads and logins go on."""
    url = postgres.new_database("faults")
    name = url.rsplit("/", 1)[1]
    api = app_factory(database_url=url, database_busy_timeout_seconds=1)
    admin = login(api)
    assert api.post("/users", json={"username": "bob", "password": "bob-password"}, headers=admin).status_code == 201

    def users() -> list[tuple]:
        with postgres.connect(name) as connection:
            return connection.execute("SELECT username, password_hash, token_version FROM users ORDER BY 1").fetchall()

    before = users()
    with postgres.connect(name) as lock:
        lock.execute("BEGIN")
        lock.execute("LOCK TABLE users IN EXCLUSIVE MODE")  # blocks writers, not readers
        started = time.monotonic()
        for call in (
            lambda: api.post("/users", json={"username": "carl", "password": "carl-password"}, headers=admin),
            lambda: api.patch("/users/bob", json={"disabled": True}, headers=admin),
        ):
            response = call()
            assert response.status_code == 503 and response.headers["retry-after"] == "5", response.text
            assert "users database unavailable" in response.json()["detail"]
            assert_no_leak(response.text)
        assert time.monotonic() - started < 10
        assert api.get("/users", headers=admin).status_code == 200
        assert api.post("/auth/token", data={"username": "bob", "password": "bob-password"}).status_code == 200
        lock.execute("ROLLBACK")
    assert users() == before

    with postgres.connect() as superuser:
        superuser.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        superuser.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    try:
        for call in (
            lambda: api.post("/users", json={"username": "dan", "password": "dan-password"}, headers=admin),
            lambda: api.delete("/users/bob", headers=admin),
        ):
            response = call()
            assert response.status_code == 503, response.text
            assert_no_leak(response.text)
        assert [user["username"] for user in api.get("/users", headers=admin).json()] == ["admin", "bob"]
        assert api.post("/auth/token", data={"username": "bob", "password": "bob-password"}).status_code == 200
    finally:
        with postgres.connect() as superuser:
            superuser.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
            superuser.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    assert users() == before
    assert api.post("/users", json={"username": "dan", "password": "dan-password"}, headers=admin).status_code == 201


def test_postgresql_server_gone_is_a_clear_503_and_serving_goes_on(tmp_path, app_factory, champion_bundle):
    """The users DB server stops: logins and account routes answer 503 (not 500, no hang); liveness
    answers, readiness says 503 once the probe saw it; a known token keeps predicting
    (tests/security/test_users_db_outage.py: frozen, killed, past the maximum staleness)."""
    server = start_postgres(tmp_path / "pg")
    try:
        project = project_with_champion(tmp_path / "served", champion_bundle)
        api = app_factory(project, database_url=server.new_database(), auth_cache_seconds=30)
        admin = login(api)
        assert api.post("/predict", json=SEED, headers=admin).status_code == 200  # caches the admin's state
    finally:
        server.stop()
    started = time.monotonic()
    response = api.post("/auth/token", data={"username": "admin", "password": "admin123"})
    assert response.status_code == 503 and response.headers["retry-after"] == "5", response.text
    assert_no_leak(response.text)
    assert api.get("/users", headers=admin).status_code == 503  # a session is needed: 503, not 500
    assert time.monotonic() - started < 30
    assert api.get("/health").status_code == 200
    deadline = time.monotonic() + 30
    while (ready := api.get("/ready")).json().get("users_database") != "down" and time.monotonic() < deadline:
        time.sleep(0.2)
    # still in rotation (known tokens are served), and it says why it is degraded
    assert ready.status_code == 200 and ready.json()["users_database"] == "down", ready.text
    assert api.post("/predict", json=SEED, headers=admin).status_code == 200
