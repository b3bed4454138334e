"""API test helpers: in-process apps (TestClient, real SQLite in a temp dir or a real PostgreSQL
server) and real uvicorn processes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import requests
from fastapi.testclient import TestClient

from accidents.config import CHAMPION_ALIAS, MODEL_NAME, Paths
from accidents.model.model_store import TRUSTED_TYPES, ModelBundle, write_bundle
from accidents.model.registry import TAG_DATA_SOURCE, TAG_FAMILY, TAG_THRESHOLD, TAG_TRAINED_AT
from api.core.config import Settings
from api.main import create_app
from tests.support.processes import ManagedProcess, free_port, start_service
from tests.support.project import Project

REPO = Path(__file__).resolve().parents[2]
ADMIN = ("admin", "admin123")


def closed_url() -> str:
    """An http URL where nothing listens (connection refused at once)."""
    return f"http://127.0.0.1:{free_port()}"


def make_settings(project: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "project_dir": project,
        "mlflow_tracking_uri": closed_url(),
        "model_poll_seconds": 0,
        "mlflow_timeout_seconds": 2,
        "airflow_api_url": None,
        "jwt_secret": None,
        "admin_password": None,
        "admin_password_hash": None,
        "environment": "local",
        "database_url": None,
        "state_dir": None,
        "retrain_command": None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def started_apps(
    tmp_path: Path, raise_server_exceptions: bool = True, database_url: str | None = None
) -> Iterator[Callable[..., TestClient]]:
    """Yields a starter of in-process apps (lifespan run) on a temp project; closes them all after.

    raise_server_exceptions=False turns server errors into 500 responses, as a client sees them.
    database_url: the users DB of every app started (None: SQLite under each project's state dir).
    """
    clients: list[TestClient] = []

    def start(project: Path | None = None, **overrides: object) -> TestClient:
        overrides.setdefault("database_url", database_url)
        app = create_app(make_settings(project or tmp_path / "project", **overrides))
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def app_factory(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    yield from started_apps(tmp_path)


def wait_retrain_done(client, headers: dict[str, str], run_id: str, timeout: float = 30, poll: float = 0.2) -> dict:
    """Poll GET /retrain/{run_id} (TestClient or any client with .get) until success or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/retrain/{run_id}", headers=headers).json()
        if body["state"] in ("success", "failed"):
            return body
        time.sleep(poll)
    raise AssertionError(f"run {run_id} not done after {timeout} s")


@pytest.fixture
def client(app_factory: Callable[..., TestClient]) -> TestClient:
    return app_factory()


def login(client: TestClient | str, username: str = ADMIN[0], password: str = ADMIN[1]) -> dict[str, str]:
    """Authorization headers for a user (client: a TestClient or a base URL)."""
    data = {"username": username, "password": password}
    if isinstance(client, str):
        response = requests.post(f"{client}/auth/token", data=data, timeout=30)
    else:
        response = client.post("/auth/token", data=data)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def create_user(client: TestClient, admin: dict[str, str], username: str, role: str = "user") -> dict[str, str]:
    password = f"{username}-password"
    response = client.post("/users", json={"username": username, "password": password, "role": role}, headers=admin)
    assert response.status_code == 201, response.text
    return login(client, username, password)


# --- real processes -------------------------------------------------------------------------


@dataclass
class ApiServer:
    url: str
    process: ManagedProcess

    def stop(self) -> None:
        self.process.stop()


UVICORN = (sys.executable, "-m", "uvicorn")


def trained_api_env(project: Project, folder: Path) -> dict[str, str]:
    """The API's environment on a trained project (its registry, its local champion copies), with
    its state (users, prediction log) under `folder`."""
    return {"ACCIDENTS_PROJECT_DIR": str(project.root), "STATE_DIR": str(folder / "state"),
            "MLFLOW_TRACKING_URI": project.tracking_uri}  # fmt: skip


def start_api(tmp: Path, env: dict[str, str], uvicorn: tuple[str, ...] = UVICORN) -> ApiServer:
    """A real uvicorn serving api.main:app on a free 127.0.0.1 port (`uvicorn`: the command that runs it)."""
    port = free_port()
    full_env = {**os.environ, "MODEL_POLL_SECONDS": "0", "MLFLOW_TIMEOUT_SECONDS": "2", **env}
    for name in ("JWT_SECRET", "ADMIN_PASSWORD", "ADMIN_PASSWORD_HASH", "AIRFLOW_API_URL", "DATABASE_URL"):
        if name not in env:
            full_env.pop(name, None)
    cmd = [*uvicorn, "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    return ApiServer(url, start_service(cmd, tmp / f"api-{port}.log", f"{url}/health", env=full_env, cwd=tmp))


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[Callable[..., ApiServer]]:
    servers: list[ApiServer] = []

    def start(**env: str) -> ApiServer:
        server = start_api(tmp_path, env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# --- a registry of our own (tests that move the alias must not touch the shared one) -------


def register(tracking_uri: str, bundle: ModelBundle, threshold: float | None = None, name: str = MODEL_NAME) -> str:
    """Log and register `bundle` as the pipeline does (skops model + serving tags) under `name`; its version."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("api-tests")
    metadata = bundle.metadata
    with mlflow.start_run() as run:
        mlflow.log_metrics(metadata.metrics)
        info = mlflow.sklearn.log_model(
            bundle.model, name="model", serialization_format="skops", skops_trusted_types=list(TRUSTED_TYPES)
        )
    tags = {
        TAG_THRESHOLD: str(metadata.threshold if threshold is None else threshold),
        TAG_DATA_SOURCE: metadata.data_source,
        TAG_TRAINED_AT: metadata.trained_at,
        TAG_FAMILY: metadata.model_family,
    }
    version = mlflow.register_model(info.model_uri, name, tags=tags)
    assert version.run_id in (run.info.run_id, None) or version.run_id
    return str(version.version)


def register_broken(tracking_uri: str) -> str:
    """A registered version whose model file is garbage: serving must reject it."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("api-tests")
    with mlflow.start_run() as run:
        mlflow.log_text("artifact_path: model\nflavors: {}\n", "model/MLmodel")
        mlflow.log_text("this is not a skops file", "model/model.skops")
    version = mlflow.register_model(
        f"runs:/{run.info.run_id}/model", MODEL_NAME, tags={TAG_THRESHOLD: "0.5", TAG_DATA_SOURCE: "real"}
    )
    return str(version.version)


def set_champion(tracking_uri: str, version: str, name: str = MODEL_NAME) -> None:
    mlflow.MlflowClient(tracking_uri).set_registered_model_alias(name, CHAMPION_ALIAS, version)


def project_with_champion(folder: Path, bundle: ModelBundle, report_bundle: ModelBundle | None = None) -> Path:
    """A project folder whose local champion copy (the API's fallback) is `bundle`, and
    `report_bundle` the report-time model's (POST /v2/predict) when given."""
    write_bundle(Paths(folder).champion, bundle)
    if report_bundle is not None:
        write_bundle(Paths(folder).report_time.champion, report_bundle)
    return folder
