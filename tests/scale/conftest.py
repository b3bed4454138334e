"""End-to-end checks of the scale-out stack (docker-compose.yml + docker-compose.scale.yml).

They run when `SCALE_URLS` says where a stack is up (scripts/docker/scale_test.sh, i.e.
`make scale-test`, sets it after `up -d --wait`), and are skipped otherwise:

    SCALE_URLS="lb=...,api1=...,api2=...,airflow=...,mlflow=...,s3=..."
    SCALE_COMPOSE            the `docker compose ...` command of that stack (stops/starts a replica)
    SCALE_ADMIN_PASSWORD     the API admin's password (user admin)
    SCALE_AIRFLOW_PASSWORD   the Airflow admin's password (user admin)
    SCALE_RUN_TIMEOUT        seconds a DAG run may take (default 1800)
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

import pytest

ENV_URLS = "SCALE_URLS"
NAMES = ("lb", "api1", "api2", "airflow", "mlflow", "s3")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"scale: end-to-end checks of a running scale-out stack ({ENV_URLS})")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(ENV_URLS):
        return
    skip = pytest.mark.skip(reason=f"no scale-out stack: {ENV_URLS} unset (make scale-test runs these)")
    for item in items:
        if item.get_closest_marker("scale"):
            item.add_marker(skip)


@dataclass(frozen=True)
class ScaleStack:
    urls: dict[str, str]
    compose: list[str]
    admin: tuple[str, str]
    airflow_admin: tuple[str, str]
    run_timeout: float

    def __getattr__(self, name: str) -> str:
        try:
            return self.urls[name]
        except KeyError as error:
            raise AttributeError(name) from error


def parse_urls(value: str) -> dict[str, str]:
    urls = dict(part.strip().split("=", 1) for part in value.split(",") if part.strip())
    missing = set(NAMES) - urls.keys()
    if missing:
        raise ValueError(f"{ENV_URLS} lacks {', '.join(sorted(missing))}")
    return {name: url.rstrip("/") for name, url in urls.items()}


@pytest.fixture(scope="session")
def stack() -> ScaleStack:
    env = os.environ.get
    return ScaleStack(
        urls=parse_urls(os.environ[ENV_URLS]),
        compose=shlex.split(env("SCALE_COMPOSE") or "docker compose"),
        admin=("admin", env("SCALE_ADMIN_PASSWORD") or "admin123"),
        airflow_admin=("admin", env("SCALE_AIRFLOW_PASSWORD") or "admin"),
        run_timeout=float(env("SCALE_RUN_TIMEOUT") or 1800),
    )
