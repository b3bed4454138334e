"""The users database (a real PostgreSQL server) stops answering under a real uvicorn API.

Frozen (SIGSTOP on the postmaster and every backend: a hung server whose kernel still accepts
connections) or killed (SIGKILL), then resumed or restarted: tokens whose state was checked
before the outage keep predicting (bounded staleness, AUTH_MAX_STALE_SECONDS), revocations known
before it still apply, logins answer 503 "users database unavailable" with Retry-After instead of
hanging, /ready answers 503 and /health 200; the API recovers without a restart. Past the maximum
staleness, /predict fails closed (503). Requests carry a client timeout: a hang fails the test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from accidents.features import SEED_EXAMPLE
from api.db.engine import Database
from tests.api.conftest import ApiServer, login, project_with_champion, start_api
from tests.security.conftest import assert_no_leak
from tests.support.postgres import UNPRIVILEGED, PostgresServer, start_postgres
from tests.support.processes import ManagedProcess, free_port

pytestmark = pytest.mark.timeout(600)
SEED = {"features": list(SEED_EXAMPLE)}
ANSWER_WITHIN = 8  # seconds: a request still waiting after this is hung (the client gives up: the test fails)
CACHE_SECONDS = 1


# --- the PostgreSQL server's processes, by PID --------------------------------------------------


def postmaster_pid(server: PostgresServer) -> int:
    return int((server.folder / "data" / "postmaster.pid").read_text().splitlines()[0])


def children(parent: int) -> set[int]:
    """The processes whose parent is `parent` (backends, background workers), found through /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == parent:  # fields: state, ppid, ...
            found.add(int(stat.parent.name))
    return found


def signal_server(server: PostgresServer, signum: int) -> None:
    """Signal the postmaster and every child: those listed before (a killed postmaster's children
    are re-parented) and after (a backend it forked meanwhile; a stopped one forks no more)."""
    if signum == signal.SIGKILL:  # the test server commits asynchronously: write what it committed
        with server.connect() as connection:
            connection.execute("CHECKPOINT")
    postmaster = postmaster_pid(server)
    before = children(postmaster)
    os.kill(postmaster, signum)
    for pid in before | children(postmaster):
        with contextlib.suppress(ProcessLookupError):  # a backend that ended meanwhile (a closed session)
            os.kill(pid, signum)


def restart(server: PostgresServer) -> None:
    """The same cluster on the same port, after a SIGKILL (crash recovery runs at start)."""
    server.process.process.wait(timeout=10)
    server.process.stop()
    user = UNPRIVILEGED if os.geteuid() == 0 else None
    log = server.process.log_path.with_name(f"{server.process.log_path.stem}-restarted.log")
    server.process = ManagedProcess(server.process.cmd, log, cwd=server.folder, user=user)
    deadline = time.monotonic() + 60
    while True:
        try:
            with server.connect():
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


# --- the API ------------------------------------------------------------------------------------


@pytest.fixture
def postgres_server(tmp_path) -> Iterator[PostgresServer]:
    server = start_postgres(tmp_path / "pg")
    yield server
    if server.process.alive():
        signal_server(server, signal.SIGCONT)  # a failed test must not leave a frozen server behind
    server.stop()


@pytest.fixture
def outage_api(tmp_path, postgres_server, champion_bundle) -> Iterator[callable]:
    servers: list[ApiServer] = []

    def start(max_stale_seconds: float = 300, **settings: str) -> ApiServer:
        project = project_with_champion(tmp_path / "project", champion_bundle)
        env = {
            "ACCIDENTS_PROJECT_DIR": str(project),
            "STATE_DIR": str(tmp_path / "state"),
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",  # none: the local champion copy
            "DATABASE_URL": postgres_server.new_database("outage"),
            "AUTH_CACHE_SECONDS": str(CACHE_SECONDS),
            "AUTH_MAX_STALE_SECONDS": str(max_stale_seconds),
            **settings,
        }
        api = start_api(tmp_path, env)
        servers.append(api)
        wait_status(api.url, "/ready", 200)
        return api

    yield start
    for api in servers:
        api.stop()


def get(url: str, path: str, **kwargs) -> requests.Response:
    return requests.get(f"{url}{path}", timeout=ANSWER_WITHIN, **kwargs)


def predict(url: str, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{url}/predict", json=SEED, headers=headers, timeout=ANSWER_WITHIN)


def token_for(url: str, username: str, password: str) -> requests.Response:
    data = {"username": username, "password": password}
    return requests.post(f"{url}/auth/token", data=data, timeout=ANSWER_WITHIN)


def wait_status(url: str, path: str, status: int, timeout: float = 60, **kwargs) -> requests.Response:
    """Poll until `path` answers `status` (each call bounded by the client timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        response = get(url, path, **kwargs)
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            return response
        time.sleep(0.3)


def assert_users_db_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert "users database unavailable" in response.json()["detail"]
    assert int(response.headers["retry-after"]) > 0
    assert_no_leak(response.text)


def metric(url: str, name: str) -> float:
    """The sum of a metric's samples in /metrics (0 when absent)."""
    total = 0.0
    for line in get(url, "/metrics").text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


def create_user(url: str, admin: dict[str, str], username: str) -> dict[str, str]:
    body = {"username": username, "password": f"{username}-password"}
    response = requests.post(f"{url}/users", json=body, headers=admin, timeout=ANSWER_WITHIN)
    assert response.status_code == 201, response.text
    return login(url, username, f"{username}-password")


def assert_outage_behaviour(api: ApiServer, admin: dict[str, str]) -> None:
    """During the outage: known tokens predict, logins answer 503, /ready 200 but says the users
    database is down (the replica still serves: a 503 would take every replica out of the load
    balancer at once), /health 200."""
    time.sleep(CACHE_SECONDS + 0.5)  # the admin's cached state has expired: the DB would be asked
    assert predict(api.url, admin).status_code == 200
    ready = wait_users_database(api.url, "down")
    assert ready["degraded"] is True and ready["users_database_down_seconds"] > 0
    assert get(api.url, "/health").status_code == 200
    assert_users_db_unavailable(token_for(api.url, "admin", "admin123"))
    for _ in range(5):
        assert predict(api.url, admin).status_code == 200
    assert metric(api.url, "users_database_up") == 0
    assert metric(api.url, "users_database_failures_total") >= 1
    assert metric(api.url, "auth_state_staleness_seconds") > 0
    assert metric(api.url, "auth_fallbacks_total") >= 5


def wait_users_database(url: str, state: str, within: float = 30) -> dict:
    """/ready's body once it answers 200 with users_database == state (the test fails otherwise)."""
    deadline = time.monotonic() + within
    while True:
        answer = get(url, "/ready")
        if answer.status_code == 200 and answer.json()["users_database"] == state:
            return answer.json()
        assert time.monotonic() < deadline, f"/ready never said users_database={state}: {answer.text}"
        time.sleep(0.2)


def assert_recovered(api: ApiServer) -> None:
    ready = wait_users_database(api.url, "up")
    assert "users_database_down_seconds" not in ready
    admin = login(api.url)
    assert predict(api.url, admin).status_code == 200
    assert metric(api.url, "users_database_up") == 1


# --- the tests ----------------------------------------------------------------------------------


def test_frozen_users_database_serves_known_tokens_and_fails_logins_fast(outage_api, postgres_server):
    # Long database timeouts, and a probe that will not run first: what keeps requests from waiting
    # is the request's own deadline and the "known down" state, not the driver's timeouts.
    api = outage_api(DATABASE_TIMEOUT_SECONDS="30", DATABASE_PROBE_SECONDS="20")
    admin = login(api.url)
    assert predict(api.url, admin).status_code == 200  # the admin's state is now cached
    signal_server(postgres_server, signal.SIGSTOP)
    try:
        assert_outage_behaviour(api, admin)
    finally:
        signal_server(postgres_server, signal.SIGCONT)
    assert_recovered(api)


def test_killed_users_database_keeps_revocations_and_recovers_on_restart(outage_api, postgres_server):
    api = outage_api()
    admin = login(api.url)
    bob = create_user(api.url, admin, "bob")
    assert predict(api.url, bob).status_code == 200
    patch = requests.patch(f"{api.url}/users/bob", json={"disabled": True}, headers=admin, timeout=ANSWER_WITHIN)
    assert patch.status_code == 200, patch.text
    assert predict(api.url, bob).status_code == 401  # bob's revocation is now the known state
    assert predict(api.url, admin).status_code == 200
    signal_server(postgres_server, signal.SIGKILL)
    assert_outage_behaviour(api, admin)
    assert predict(api.url, bob).status_code == 401  # a revocation known before the outage holds
    restart(postgres_server)
    assert_recovered(api)
    assert predict(api.url, bob).status_code == 401


def test_past_the_maximum_staleness_predict_fails_closed(outage_api, postgres_server):
    api = outage_api(max_stale_seconds=4)
    admin = login(api.url)
    assert predict(api.url, admin).status_code == 200
    signal_server(postgres_server, signal.SIGKILL)
    time.sleep(CACHE_SECONDS + 0.5)
    assert predict(api.url, admin).status_code == 200  # within AUTH_MAX_STALE_SECONDS
    deadline = time.monotonic() + 60
    while (answer := predict(api.url, admin)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert_users_db_unavailable(answer)
    assert metric(api.url, "auth_fallbacks_total") >= 2
    wait_status(api.url, "/ready", 503)  # past the bound the replica cannot serve: out of rotation
    assert "users database" in get(api.url, "/ready").json()["detail"]
    restart(postgres_server)
    wait_status(api.url, "/ready", 200)
    assert predict(api.url, admin).status_code == 200  # the same token: the state is fresh again


# --- the engine's own timeouts (api/db/engine.py), without the API ------------------------------


def bounded(call, within: float = 60) -> BaseException | None:
    """Run `call` on a thread: the exception it ended with (None: it returned). A call still
    running after `within` seconds is a hang: the test fails."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as error:  # handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within)
    assert outcome, f"still waiting after {within} s: no timeout applied"
    return outcome[0]


def test_postgresql_statement_timeout_cancels_a_long_statement(postgres_server):
    database = Database(postgres_server.new_database("timeouts"), timeout_seconds=1)
    try:
        with database.session() as session:
            error = bounded(lambda: session.execute(text("SELECT pg_sleep(30)")), within=20)
        assert isinstance(error, OperationalError) and "statement timeout" in str(error.orig)
    finally:
        database.dispose()


def test_postgresql_connect_timeout_ends_a_connection_to_a_frozen_server(postgres_server):
    database = Database(postgres_server.new_database("timeouts"), timeout_seconds=2)
    signal_server(postgres_server, signal.SIGSTOP)  # its kernel still accepts the TCP connection
    try:
        error = bounded(database.ping, within=30)
        assert isinstance(error, OperationalError) and "timeout" in str(error.orig).lower()
    finally:
        signal_server(postgres_server, signal.SIGCONT)
        database.dispose()
