"""`make run`'s settings, banner and exit codes (scripts/run_stack.py), without starting the stack."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import run_stack
from stack_supervisor import ConfigurationError, StackError

from api.core.config import DEMO_ADMIN_PASSWORD, DEMO_AIRFLOW_PASSWORD
from tests.scripts.conftest import SCRIPTS


def test_dotenv_is_read_with_python_dotenv_and_the_environment_wins(tmp_path):
    (tmp_path / ".env").write_text(
        "# a comment\n"
        "export API_PORT=8101\n"
        "MLFLOW_PORT='5101'\n"
        'AIRFLOW_PASSWORD="with spaces # and a hash"\n'
        "ADMIN_USERNAME=boss  # trailing comment\n"
        "AIRFLOW_PORT=9999\n"
    )
    settings = run_stack.load_settings(tmp_path, environ={"AIRFLOW_PORT": "8181"})
    assert (settings.api_port, settings.mlflow_port, settings.airflow_port) == (8101, 5101, 8181)
    assert settings.airflow_password == "with spaces # and a hash"
    assert settings.api_username == "boss" and settings.api_password == DEMO_ADMIN_PASSWORD


def test_mlflow_state_defaults_to_the_pipelines_mlruns_path(tmp_path):
    from accidents.config import Paths

    settings = run_stack.load_settings(tmp_path, environ={})
    assert run_stack.mlflow_env(settings)["MLFLOW_STATE_DIR"] == str(Paths(tmp_path).mlruns)


def test_a_bad_port_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="API_PORT='http' is not a TCP port") as raised:
        run_stack.load_settings(tmp_path, environ={"API_PORT": "http"})
    assert raised.value.exit_code == 2 and StackError.exit_code == 1


def banner_for(tmp_path, **environ: str) -> str:
    return run_stack.banner(run_stack.load_settings(tmp_path, environ=environ), 12.0)


def test_banner_shows_the_demo_logins_only_when_they_are_in_use(tmp_path):
    demo = banner_for(tmp_path)
    assert f"login admin / {DEMO_ADMIN_PASSWORD}" in demo and f"password={DEMO_ADMIN_PASSWORD}" in demo
    assert f"login admin / {DEMO_AIRFLOW_PASSWORD}" in demo
    custom = banner_for(tmp_path, ADMIN_USERNAME="boss", ADMIN_PASSWORD="s3cret-value", AIRFLOW_PASSWORD="af-s3cret")
    assert DEMO_ADMIN_PASSWORD not in custom and "s3cret" not in custom  # neither the demo nor the real one
    assert "login boss / $ADMIN_PASSWORD" in custom and "username=boss&password=$ADMIN_PASSWORD" in custom
    assert "$AIRFLOW_PASSWORD" in custom
    hashed = banner_for(tmp_path, ADMIN_PASSWORD_HASH="$argon2id$v=19$...")
    assert DEMO_ADMIN_PASSWORD not in hashed and "ADMIN_PASSWORD_HASH" in hashed


def test_a_taken_port_exits_2_before_starting_anything(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = run_stack.load_settings(tmp_path, environ={"API_PORT": str(port)})
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port} is already in use") as raised:
            run_stack.check_ports(settings)
        assert raised.value.exit_code == 2
        # the real command: exit code 2 (nothing to fix in the stack itself), nothing started
        done = subprocess.run(
            [sys.executable, f"{SCRIPTS}/run_stack.py", "--no-color"],
            env={"PATH": "/usr/bin:/bin", "API_PORT": str(port), "MLFLOW_PORT": "0x"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "MLFLOW_PORT='0x' is not a TCP port" in done.stderr


def test_each_service_gets_only_the_secrets_it_uses(tmp_path):
    """.env holds the API's JWT secret, admin password (and hash) and users-database URL: MLflow,
    Airflow and the first pipeline run get none of them; the API gets its own; the pipeline's
    data source and MLflow login reach the pipeline and Airflow's tasks."""
    (tmp_path / ".env").write_text(
        "JWT_SECRET=jwt-secret-value-0123456789abcdef\n"
        "ADMIN_PASSWORD=admin-password-value\n"
        "ADMIN_PASSWORD_HASH=$argon2id$hash-value\n"
        "DATABASE_URL=postgresql+psycopg://api:users-db-password@db/api\n"
        "MLFLOW_AUTH_ADMIN_PASSWORD=mlflow-admin-password-value\n"
        "BAAC_DATA_DIR=/data/baac\n"
        "MLFLOW_TRACKING_PASSWORD=pipeline-login-value\n"
    )
    settings = run_stack.load_settings(tmp_path, environ={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    secret = {"airflow": run_stack.airflow_env(settings, {"jwt_secret": "a", "secret_key": "b", "fernet_key": "c",
                                                          "created_at": "2026-01-01T00:00:00+00:00"})}  # fmt: skip
    envs = {"mlflow": run_stack.mlflow_env(settings), "pipeline": run_stack.pipeline_env(settings), **secret}
    api_only = ("JWT_SECRET", "ADMIN_PASSWORD", "ADMIN_PASSWORD_HASH", "DATABASE_URL")
    for service, env in envs.items():
        leaked = [name for name in api_only if name in env]
        assert not leaked, f"{service} gets {leaked}"
        values = " ".join(env.values())
        assert "jwt-secret-value" not in values and "users-db-password" not in values, service
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" not in envs["mlflow"]  # auth stays off under make run: no half-on
    assert envs["pipeline"]["BAAC_DATA_DIR"] == envs["airflow"]["BAAC_DATA_DIR"] == "/data/baac"
    assert envs["pipeline"]["MLFLOW_TRACKING_PASSWORD"] == "pipeline-login-value"
    assert envs["pipeline"]["PATH"] == "/usr/bin:/bin" and envs["mlflow"]["HOME"] == str(tmp_path)
    api = run_stack.api_env(settings)
    assert api["JWT_SECRET"].startswith("jwt-secret-value") and api["DATABASE_URL"].endswith("/api")
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" not in api
