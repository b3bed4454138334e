"""Settings and production-mode checks (ENVIRONMENT=production refuses demo credentials)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests
from pwdlib.hashers.bcrypt import BcryptHasher

from api.core.security import startup_problems
from api.main import check_settings
from tests.api.conftest import login, make_settings

STRONG = "k3Jq9vX2pL8sW4nR7tY1uE6oI0aZ5cVbN-_mQwErTy"


def prod(tmp_path, **overrides):
    values = {"environment": "production", "jwt_secret": STRONG, "admin_password": "a-real-admin-password"}
    return make_settings(tmp_path, **(values | overrides))


def test_local_mode_needs_no_configuration(tmp_path):
    assert startup_problems(make_settings(tmp_path)) == []


def test_production_accepts_strong_settings(tmp_path):
    assert startup_problems(prod(tmp_path)) == []
    hashed = BcryptHasher().hash("x" * 12)
    assert startup_problems(prod(tmp_path, admin_password=None, admin_password_hash=hashed)) == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"jwt_secret": None}, "JWT_SECRET is not set"),
        ({"jwt_secret": "Tq9-short-value-0123456789"}, "shorter than 32 bytes"),
        ({"jwt_secret": "change-me"}, "demo or placeholder"),
        ({"jwt_secret": "a" * 64}, "low-entropy"),
        ({"admin_password": None}, "ADMIN_PASSWORD or ADMIN_PASSWORD_HASH must be set"),
        ({"admin_password": "admin123"}, "ADMIN_PASSWORD is a demo password"),
        ({"admin_password": None, "admin_password_hash": BcryptHasher().hash("admin123")}, "hash of a demo password"),
    ],
)
def test_production_refuses(tmp_path, overrides, expected):
    settings = prod(tmp_path, **overrides)
    assert any(expected in problem for problem in startup_problems(settings))
    with pytest.raises(SystemExit, match="refusing to start"):
        check_settings(settings)


def run_uvicorn(env: dict[str, str], tmp_path, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {key: value for key, value in os.environ.items() if key not in ("JWT_SECRET", "ADMIN_PASSWORD")}
    cmd = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", "0"]
    return subprocess.run(cmd, env=full_env | env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


def test_real_server_refuses_demo_production_with_a_clear_message(tmp_path):
    result = run_uvicorn({"ENVIRONMENT": "production", "ACCIDENTS_PROJECT_DIR": str(tmp_path)}, tmp_path)
    assert result.returncode != 0
    assert "refusing to start with ENVIRONMENT=production" in result.stderr
    assert "JWT_SECRET is not set" in result.stderr and "ADMIN_PASSWORD" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_real_server_reports_invalid_settings_without_traceback(tmp_path):
    result = run_uvicorn({"MAX_BATCH_ROWS": "lots", "ACCIDENTS_PROJECT_DIR": str(tmp_path)}, tmp_path)
    assert result.returncode != 0 and "MAX_BATCH_ROWS" in result.stderr and "Traceback" not in result.stderr


def test_real_production_server_starts_without_demo_credentials(api_server, tmp_path):
    server = api_server(
        ENVIRONMENT="production",
        JWT_SECRET=STRONG,
        ADMIN_PASSWORD="a-real-admin-password",
        ACCIDENTS_PROJECT_DIR=str(tmp_path / "project"),
        MLFLOW_TRACKING_URI="http://127.0.0.1:9",
    )
    demo = requests.post(f"{server.url}/auth/token", data={"username": "admin", "password": "admin123"}, timeout=30)
    assert demo.status_code == 401
    headers = login(server.url, "admin", "a-real-admin-password")
    assert requests.get(f"{server.url}/users/me", headers=headers, timeout=30).status_code == 200
    assert not (tmp_path / "project" / "state" / "jwt_secret").exists()  # the env secret is used
    log = server.process.log_path.read_text()
    assert "demo credential" not in log and "a-real-admin-password" not in log and "Bearer" not in log


def test_cors_is_off_by_default_and_configurable(app_factory):
    closed = app_factory()
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in closed.options("/predict", headers=preflight).headers
    opened = app_factory(cors_origins="https://example.org")
    response = opened.options("/predict", headers=preflight)
    assert response.headers["access-control-allow-origin"] == "https://example.org"


def test_docs_show_the_bearer_scheme(client):
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    assert scheme["type"] == "oauth2" and scheme["flows"]["password"]["tokenUrl"] == "/auth/token"
    predict = schema["paths"]["/predict"]["post"]
    assert predict["security"] and "examples" in predict["requestBody"]["content"]["application/json"]


def test_every_setting_is_documented_in_env_example():
    import re

    from api.core.config import Settings
    from tests.api.conftest import REPO

    documented = set(re.findall(r"^# ([A-Z][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), re.M))
    settings = {name.upper() for name in Settings.model_fields} - {"PROJECT_DIR", "MLFLOW_TRACKING_URI"}
    pipeline = {"ACCIDENTS_PROJECT_DIR", "BAAC_DATA_DIR", "BAAC_OFFLINE", "BAAC_BASE_URL", "MLFLOW_TRACKING_URI",
                "ACCIDENTS_FORCE_PROMOTION"}  # fmt: skip
    stack = {"STACK_HOST", "API_PORT", "MLFLOW_PORT", "AIRFLOW_PORT", "ACCIDENTS_API_USERNAME",
             "ACCIDENTS_API_PASSWORD", "ACCIDENTS_RETRAIN_SCHEDULE"}  # scripts/run_stack.py  # fmt: skip
    compose = {name for path in REPO.glob("docker-compose*.yml")
               for name in re.findall(r"\$\{([A-Z][A-Z0-9_]*)", path.read_text())}  # fmt: skip
    assert settings | pipeline | stack | compose == documented


def test_empty_values_mean_unset(tmp_path):
    settings = make_settings(tmp_path, state_dir="", admin_password="", jwt_secret="", database_url="")
    assert settings.state_path == tmp_path / "state" and settings.admin_password_value() == "admin123"
    assert settings.database.startswith("sqlite:///") and settings.jwt_secret is None


@pytest.mark.parametrize("name", ["ad\x00min", "a" * 65, "ad min", ""])
def test_admin_username_must_be_a_valid_username(tmp_path, name):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="admin_username"):
        make_settings(tmp_path, admin_username=name)
