"""Property-based fuzzing of every operation in the API's own OpenAPI schema (schemathesis).

Two real uvicorn servers, one per role, each on a fresh project and users database: an admin
token drives the first, a user token the second. All of it runs on each users-DB backend: SQLite,
then a real PostgreSQL server (the production backend), with the same number of examples.
Every generated request (positive and negative data) must get no 5xx and an answer that conforms
to the declared schema: status code, content type, headers and body (schemathesis' checks, all
enabled). A server that serves the real trained models answers /predict and /v2/predict with 200,
so the success schemas are checked too; a schema-valid report must be accepted, so the report
contract's OpenAPI schema states every rule its validators apply (accidents.report_time.contract).

Lock-out protection (destructive operations cannot stop the run midway):
- each role fuzzes its own fresh server, so the admin's fuzzing (PATCH/DELETE /users/{username},
  user creation, retraining) never touches the user run's account, and vice versa;
- generated cases that target the fuzzing admin's own account (PATCH/DELETE /users/admin) or carry
  its real current password (POST /users/me/password) are rejected before they are sent: those
  are the only requests that could revoke the token or remove the account the run depends on;
- the tokens are obtained before the fuzzing starts: /auth/token's throttling (the fuzzer fails
  many logins from 127.0.0.1) cannot lock the run out;
- POST /retrain runs a harmless local command (a short sleep), so 202 and 409 are both exercised.
After each run the admin still logs in and the users database passes an integrity check.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hypothesis
import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.api.conftest import ADMIN, closed_url, login, project_with_champion
from tests.security.conftest import assert_no_leak, login_from
from tests.support.postgres import BACKENDS, users_database
from tests.support.processes import ManagedProcess, free_port, start_service

pytestmark = pytest.mark.timeout(900)

# Examples per operation and role, positive / negative data. Operations that hash or verify a
# password (argon2, ~0.1-0.3 s by design) get fewer; the rest are cheap and get many.
EXAMPLES = {GenerationMode.POSITIVE: 150, GenerationMode.NEGATIVE: 75}
PASSWORD_HASHING = {"POST /auth/token", "POST /users/me/password", "POST /users", "PATCH /users/{username}"}
EXAMPLES_PASSWORD_HASHING = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 10}
MIN_GENERATED_REQUESTS = 1000
USER = ("fuzz-user", "fuzz-user-password")
# Schema-valid requests the API must still refuse for what they mean, not their shape.
SEMANTIC_REJECTIONS = {("POST", "/users/me/password"): (400, "current password is wrong")}
SENT: Counter[tuple[str, str]] = Counter()  # generated requests sent, per (backend, role)
PER_OPERATION: Counter[str] = Counter()
STATUSES: Counter[tuple[str, str, int]] = Counter()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> str:
    return request.param


def start_fuzz_server(tmp: Path, bundles: tuple, database_url: str | None) -> tuple[ManagedProcess, str]:
    """A real uvicorn on a fresh project serving the real models `bundles` (the seed's, the
    report-time model's) from their local copies (MLflow unreachable)."""
    project = project_with_champion(tmp / "project", *bundles)
    script = tmp / "retrain.sh"
    script.write_text("#!/usr/bin/env bash\nsleep 0.3\n")
    port = free_port()
    env = {
        **os.environ,
        "ACCIDENTS_PROJECT_DIR": str(project),
        "STATE_DIR": str(tmp / "state"),
        "MLFLOW_TRACKING_URI": closed_url(),
        "MODEL_POLL_SECONDS": "0",
        "MLFLOW_TIMEOUT_SECONDS": "2",
        "RETRAIN_COMMAND": f"bash {script}",
        "LOG_LEVEL": "WARNING",
    }
    for name in ("JWT_SECRET", "ADMIN_PASSWORD", "ADMIN_PASSWORD_HASH", "AIRFLOW_API_URL", "DATABASE_URL"):
        env.pop(name, None)
    if database_url:
        env["DATABASE_URL"] = database_url
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    return start_service(cmd, tmp / "api.log", f"{url}/health", env=env, cwd=tmp), url


def fuzz_schema(url: str, headers: dict[str, str]) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    schema.config.update(headers=headers, request_timeout=30)
    return schema


@dataclass
class Target:
    url: str
    headers: dict[str, str]
    state: Path
    database_url: str | None  # None: SQLite under `state`


@pytest.fixture(scope="module")
def admin_target(request, backend, tmp_path_factory, champion_bundle, report_champion_bundle) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("fuzz-admin")
    database_url = users_database(request, backend)
    process, url = start_fuzz_server(tmp, (champion_bundle, report_champion_bundle), database_url)
    yield Target(url, login(url), tmp / "state", database_url)
    process.stop()


@pytest.fixture(scope="module")
def user_target(request, backend, tmp_path_factory, champion_bundle, report_champion_bundle) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("fuzz-user")
    database_url = users_database(request, backend)
    process, url = start_fuzz_server(tmp, (champion_bundle, report_champion_bundle), database_url)
    admin = login(url)
    created = requests.post(
        f"{url}/users", json={"username": USER[0], "password": USER[1], "role": "user"}, headers=admin, timeout=30
    )
    assert created.status_code == 201, created.text
    yield Target(url, login(url, *USER), tmp / "state", database_url)
    process.stop()


def locks_out(case, own_username: str, own_password: str) -> bool:
    """Would this request revoke the fuzzing account's token or remove the account?"""
    if case.path_parameters and case.path_parameters.get("username") == own_username:
        return True
    body = case.body if isinstance(case.body, dict) else {}
    return body.get("current_password") == own_password


def exercise(case, backend: str, role: str, own: tuple[str, str]) -> None:
    if locks_out(case, *own):
        hypothesis.reject()

    response = case.call()
    SENT[(backend, role)] += 1
    PER_OPERATION[f"{backend} {role} {case.method} {case.path}"] += 1
    STATUSES[(backend, role, response.status_code)] += 1
    label = f"{case.method} {case.formatted_path} ({role}, {backend})"
    assert response.status_code < 500, f"{label}: {response.status_code} {response.text}"
    assert_no_leak(response.text)
    excluded = []
    expected = SEMANTIC_REJECTIONS.get((case.method, case.path))
    if expected and (response.status_code, response.json().get("detail")) == expected:
        excluded.append(positive_data_acceptance)  # schema-valid but wrong: the fuzzer cannot know the password
    # every other schemathesis check: status code, content type, headers, body schema, data acceptance...
    case.validate_response(response, excluded_checks=excluded)


def fuzz(schema: schemathesis.BaseSchema, backend: str, role: str, own: tuple[str, str]) -> None:
    """Every operation, positive then negative data, as Hypothesis tests run here (no pytest plugin:
    schemathesis' lazy pytest integration does not support pytest 9 yet)."""
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    for operation in operations:
        budget = EXAMPLES_PASSWORD_HASHING if operation.label in PASSWORD_HASHING else EXAMPLES
        for mode, examples in budget.items():

            @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case) -> None:
                exercise(case, backend, role, own)

            try:
                run()
            except Unsatisfiable:
                # no negative data exists for an operation without parameters or body (GET /health)
                assert mode is GenerationMode.NEGATIVE, operation.label


def test_fuzz_as_admin(backend, admin_target):
    fuzz(fuzz_schema(admin_target.url, admin_target.headers), backend, "admin", ADMIN)


def test_fuzz_as_user(backend, user_target):
    fuzz(fuzz_schema(user_target.url, user_target.headers), backend, "user", USER)


def assert_still_usable(target: Target, username: str, password: str) -> None:
    """The fuzzing left the account usable and the users database intact."""
    # from another loopback address: the fuzzer's failed logins throttle 127.0.0.1, by design
    headers = login_from(target.url, username, password)
    assert requests.get(f"{target.url}/users/me", headers=headers, timeout=30).status_code == 200
    if target.database_url is None:
        with sqlite3.connect(f"file:{target.state / 'api.db'}?mode=ro", uri=True) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return
    # PostgreSQL: every row and the unique index readable, no duplicate name, no NUL byte stored
    with psycopg.connect(target.database_url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        names = [row[0] for row in connection.execute("SELECT username FROM users ORDER BY username")]
        connection.execute("REINDEX TABLE users")
    assert len(names) == len(set(names)) and username in names


def test_fuzzing_volume_and_aftermath(backend, admin_target, user_target):
    """Runs after both fuzz tests of its backend: enough requests were generated, nothing was locked out."""
    sent = {role: count for (on, role), count in SENT.items() if on == backend}
    if not sent:
        pytest.skip("the fuzz tests were deselected")
    total = sum(sent.values())
    statuses = {(role, status): count for (on, role, status), count in STATUSES.items() if on == backend}
    summary = ", ".join(f"{role} {status}: {count}" for (role, status), count in sorted(statuses.items()))
    print(f"\nschemathesis ({backend}): {total} generated requests ({sent}); statuses: {summary}")
    operations = sorted((name, count) for name, count in PER_OPERATION.items() if name.startswith(f"{backend} "))
    print("per operation: " + ", ".join(f"{name}: {count}" for name, count in operations))
    assert total >= MIN_GENERATED_REQUESTS, f"only {total} generated requests on {backend}: {sent}"
    assert sent.get("admin") and sent.get("user")
    assert not any(status >= 500 for _, status in statuses)
    assert_still_usable(admin_target, *ADMIN)
    assert_still_usable(user_target, *USER)
