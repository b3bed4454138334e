"""Secrets and bootstrap credentials (issue 23, items 3 and 4): a weak JWT_SECRET is refused in
every mode (compose runs local mode by default, and `JWT_SECRET=change-me` let anyone mint an
admin token); in production no demo password gets through, whichever of ADMIN_PASSWORD /
ADMIN_PASSWORD_HASH is used, nor through an admin row created earlier in local mode, nor through
the API's Airflow login. Against the settings and against real uvicorn processes on SQLite and on
a real PostgreSQL server.
"""

from __future__ import annotations

import os
import random
import secrets
import string
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from api.core.security import DEMO_PASSWORDS, startup_problems
from api.main import check_settings
from tests.api.conftest import login, make_settings, start_api
from tests.support.postgres import BACKENDS, users_database
from tests.support.processes import free_port

STRONG = "k3Jq9vX2pL8sW4nR7tY1uE6oI0aZ5cVbN-_mQwErTy"
GENERATE = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'
WEAK_SECRETS = {
    "demo": "change-me",
    "demo-long": "change-me-to-a-long-random-string",
    "placeholder": "my-jwt-secret-for-production-use-please",
    "short": "Zq8-Lr2pW9xN4tK7mB1vC6yH3jF0dS",  # 30 random-looking bytes
    "one-char": "s" * 48,
    "repeated": "abcd" * 10,
    "digits-repeated": "0123456789" * 4,
    "alphabet": string.ascii_lowercase + string.digits,
}


def prod(tmp_path: Path, **overrides: object):
    values = {"environment": "production", "jwt_secret": STRONG, "admin_password": "a-real-admin-password"}
    return make_settings(tmp_path, **(values | overrides))


# --- item 3: the JWT secret -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["local", "production"])
@pytest.mark.parametrize("secret", WEAK_SECRETS.values(), ids=WEAK_SECRETS.keys())
def test_a_weak_jwt_secret_is_refused_in_every_mode(tmp_path, mode, secret):
    settings = prod(tmp_path, environment=mode, jwt_secret=secret)
    with pytest.raises(SystemExit) as refused:
        check_settings(settings)
    message = str(refused.value)
    assert f"refusing to start with ENVIRONMENT={mode}" in message
    assert "JWT_SECRET" in message and GENERATE in message and secret not in message


def test_generated_style_secrets_are_accepted(tmp_path):
    """What people generate (token_urlsafe, hex, base64 of 24+ random bytes) always passes: 600
    seeded samples of each kind, the shortest at exactly 32 bytes."""
    rng = random.Random(23)
    kinds = {
        "urlsafe": (string.ascii_letters + string.digits + "-_", 32),
        "urlsafe-48": (string.ascii_letters + string.digits + "-_", 64),
        "hex": (string.hexdigits[:16], 32),
        "hex-32": (string.hexdigits[:16], 64),
        "base64": (string.ascii_letters + string.digits + "+/", 44),
    }
    for name, (alphabet, length) in kinds.items():
        for _ in range(600):
            secret = "".join(rng.choice(alphabet) for _ in range(length))
            problems = startup_problems(prod(tmp_path, environment="local", jwt_secret=secret))
            assert problems == [], (name, secret, problems)
    assert startup_problems(prod(tmp_path, jwt_secret=secrets.token_urlsafe(48))) == []


def run_refused(env: dict[str, str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    """A real uvicorn that must refuse to start (it would serve until `timeout` otherwise)."""
    full_env = {key: value for key, value in os.environ.items() if key not in ("JWT_SECRET", "ADMIN_PASSWORD")}
    full_env |= {"MODEL_POLL_SECONDS": "0", "MLFLOW_TIMEOUT_SECONDS": "2", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    cmd = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(free_port())]
    return subprocess.run(cmd, env=full_env | env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_real_server_in_local_mode_refuses_the_env_example_secret(tmp_path):
    """Compose's default mode with `.env.example`'s commented `JWT_SECRET=change-me`: before, the API
    started and a token signed with `change-me` was an admin's."""
    result = run_refused({"JWT_SECRET": "change-me", "ACCIDENTS_PROJECT_DIR": str(tmp_path)}, tmp_path)
    assert result.returncode != 0
    assert "refusing to start with ENVIRONMENT=local" in result.stderr
    assert "JWT_SECRET" in result.stderr and "token_urlsafe(48)" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_local_mode_without_a_secret_still_generates_a_strong_one(api_server, tmp_path):
    server = api_server(ACCIDENTS_PROJECT_DIR=str(tmp_path / "project"), MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    assert requests.get(f"{server.url}/users/me", headers=login(server.url), timeout=30).status_code == 200
    generated = (tmp_path / "project" / "state" / "jwt_secret").read_text().strip()
    assert startup_problems(make_settings(tmp_path, jwt_secret=generated)) == []


# --- item 4: the admin and Airflow passwords ------------------------------------------------


@pytest.mark.parametrize("mode", ["local", "production"])
def test_password_and_hash_both_set_are_refused(tmp_path, mode):
    """Before, production checked the (strong) password while the bootstrap used the hash (admin123)."""
    settings = prod(tmp_path, environment=mode, admin_password_hash=BcryptHasher().hash("admin123"))
    with pytest.raises(SystemExit, match="ADMIN_PASSWORD and ADMIN_PASSWORD_HASH are both set"):
        check_settings(settings)


@pytest.mark.parametrize("password", DEMO_PASSWORDS)
@pytest.mark.parametrize("hasher", [Argon2Hasher(), BcryptHasher()], ids=["argon2", "bcrypt"])
def test_production_refuses_a_hash_of_any_demo_password(tmp_path, password, hasher):
    settings = prod(tmp_path, admin_password=None, admin_password_hash=hasher.hash(password))
    assert "ADMIN_PASSWORD_HASH is a hash of a demo password" in startup_problems(settings)
    plain = prod(tmp_path, admin_password=password)
    assert "ADMIN_PASSWORD is a demo password" in startup_problems(plain)


def test_production_refuses_a_demo_airflow_password_when_it_is_used(tmp_path):
    airflow = "http://127.0.0.1:9"
    assert startup_problems(prod(tmp_path)) == []  # no Airflow: AIRFLOW_PASSWORD is not consumed
    default = startup_problems(prod(tmp_path, airflow_api_url=airflow))  # the default: admin
    assert any(problem.startswith("AIRFLOW_PASSWORD is a demo password") for problem in default), default
    assert startup_problems(prod(tmp_path, airflow_api_url=airflow, airflow_password="a-real-airflow-pass")) == []
    assert startup_problems(prod(tmp_path, environment="local", airflow_api_url=airflow)) == []  # local demo


@pytest.fixture(params=BACKENDS)
def users_db(request) -> dict[str, str]:
    """DATABASE_URL for a fresh users DB: the project's SQLite file, or a new PostgreSQL database."""
    url = users_database(request, request.param)
    return {} if url is None else {"DATABASE_URL": url}


def test_production_refuses_a_stored_admin_that_keeps_a_demo_password(api_server, tmp_path, users_db):
    """An admin created in local mode (admin123) is not re-created from ADMIN_PASSWORD: production
    must not start on it; after the reset the message describes, it does."""
    project = {"ACCIDENTS_PROJECT_DIR": str(tmp_path / "project"), "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    local = api_server(**project, **users_db)
    login(local.url, "admin", "admin123")  # the local demo admin now exists in the database
    local.stop()

    production = {**project, **users_db, "ENVIRONMENT": "production", "JWT_SECRET": STRONG}
    production["ADMIN_PASSWORD"] = "a-real-admin-password"
    result = run_refused(production, tmp_path)
    assert result.returncode != 0, result.stderr[-2000:]
    assert "refusing to start with ENVIRONMENT=production" in result.stderr
    assert "stored admin 'admin' has a demo password" in result.stderr and "POST /users/me/password" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout

    # the reset the message describes: once in local mode, change the password
    again = api_server(**project, **users_db)
    changed = requests.post(
        f"{again.url}/users/me/password",
        json={"current_password": "admin123", "new_password": "a-new-real-password"},
        headers=login(again.url, "admin", "admin123"),
        timeout=30,
    )
    assert changed.status_code == 200, changed.text
    again.stop()
    served = start_api(tmp_path, production)
    try:
        assert requests.get(f"{served.url}/users/me", headers=login(served.url, "admin", "a-new-real-password"),
                            timeout=30).status_code == 200  # fmt: skip
    finally:
        served.stop()
