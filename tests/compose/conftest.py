"""End-to-end checks of the docker compose stack, through its published ports only.

They run when `COMPOSE_BASE_URLS` says where a stack is up (scripts/docker/compose_test.sh, i.e.
`make compose-test`, sets it after `docker compose up -d --wait`), and are skipped otherwise:

    COMPOSE_BASE_URLS="api=http://127.0.0.1:8000,mlflow=http://127.0.0.1:5000,airflow=http://127.0.0.1:8080"
                      (and optionally ",prometheus=http://127.0.0.1:9090")
    COMPOSE_ADMIN_USERNAME / COMPOSE_ADMIN_PASSWORD     the API admin (default admin / admin123)
    COMPOSE_AIRFLOW_USERNAME / COMPOSE_AIRFLOW_PASSWORD the Airflow admin (default admin / admin)
    COMPOSE_RUN_TIMEOUT                                 seconds a DAG run may take (default 1800)
    COMPOSE_API_ENVIRONMENT                             the stack's API_ENVIRONMENT (default local)
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD MLflow's login (it runs with basic auth)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

ENV_URLS = "COMPOSE_BASE_URLS"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"compose: end-to-end checks of a running docker compose stack ({ENV_URLS})")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(ENV_URLS):
        return
    skip = pytest.mark.skip(reason=f"no compose stack: {ENV_URLS} unset (make compose-test runs these)")
    for item in items:
        if item.get_closest_marker("compose"):
            item.add_marker(skip)


@dataclass(frozen=True)
class Stack:
    api: str
    mlflow: str
    airflow: str
    admin: tuple[str, str]
    airflow_admin: tuple[str, str]
    run_timeout: float
    environment: str
    prometheus: str | None = None
    mlflow_login: tuple[str, str] | None = None


def parse_urls(value: str) -> dict[str, str]:
    urls = {}
    for part in value.split(","):
        name, sep, url = part.strip().partition("=")
        if not sep or not url:
            raise ValueError(f"{ENV_URLS}: expected name=url pairs, got {part!r}")
        urls[name.strip()] = url.strip().rstrip("/")
    missing = {"api", "mlflow", "airflow"} - urls.keys()
    if missing:
        raise ValueError(f"{ENV_URLS} lacks {', '.join(sorted(missing))}")
    return urls


def mlflow_login() -> tuple[str, str] | None:
    username, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    return (username, password) if username and password else None


@pytest.fixture(scope="session")
def stack() -> Stack:
    urls = parse_urls(os.environ[ENV_URLS])
    env = os.environ.get
    return Stack(
        api=urls["api"],
        mlflow=urls["mlflow"],
        airflow=urls["airflow"],
        admin=(env("COMPOSE_ADMIN_USERNAME") or "admin", env("COMPOSE_ADMIN_PASSWORD") or "admin123"),
        airflow_admin=(env("COMPOSE_AIRFLOW_USERNAME") or "admin", env("COMPOSE_AIRFLOW_PASSWORD") or "admin"),
        run_timeout=float(env("COMPOSE_RUN_TIMEOUT") or 1800),
        environment=env("COMPOSE_API_ENVIRONMENT") or "local",
        prometheus=urls.get("prometheus"),
        mlflow_login=mlflow_login(),
    )
