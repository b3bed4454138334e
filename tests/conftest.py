"""Shared fixtures: a real MLflow server, a project copy where the real pipeline ran, and the
users DB on both backends (SQLite, a real PostgreSQL server)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from accidents.config import Paths
from accidents.model.model_store import ModelBundle, read_bundle
from accidents.report_time.features import example_row
from tests.support.postgres import BACKENDS, PostgresServer, start_postgres, users_database
from tests.support.project import Project, copy_project, data_dir, start_mlflow

REGISTRY_URI_AT_START = os.environ.get("MLFLOW_REGISTRY_URI")


@pytest.fixture(autouse=True)
def no_leaked_registry_uri() -> Iterator[None]:
    """After each test, MLflow's registry URI is what the session started with. In-process code
    that calls mlflow.set_registry_uri (accidents.model.registry.connect: evaluate, the lifecycle
    helpers) sets a global and MLFLOW_REGISTRY_URI in os.environ, which every later test's
    registrations and every server it starts inherit: CI saw them register on another test's
    (stopped) MLflow server, 500s and a hung suite."""
    yield
    registry_utils = sys.modules.get("mlflow.tracking._model_registry.utils")
    if registry_utils is not None:
        registry_utils._registry_uri = None  # set_registry_uri's global (no public reset)
    if REGISTRY_URI_AT_START is None:
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
    else:
        os.environ["MLFLOW_REGISTRY_URI"] = REGISTRY_URI_AT_START


@pytest.fixture(scope="session")
def baac_dir():
    folder = data_dir()
    if not (folder / "2021-accident-table").is_dir():
        pytest.fail(f"real BAAC data not found at {folder}: set BAAC_DATA_DIR (see README)")
    return folder


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """Tracking URI of a real MLflow server shared by the session (its own SQLite store)."""
    process, uri = start_mlflow(tmp_path_factory.mktemp("mlflow"))
    yield uri
    process.stop()


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory, mlflow_server, baac_dir) -> Project:
    """A project copy where `retraining_run.sh` ran on a slice of the real 2021 data.

    The registry at `mlflow_server` then has a champion and the copy has models/champion.zip.
    Do not change it in tests: copy it or use your own fixture for mutations.
    """
    project = copy_project(tmp_path_factory.mktemp("project"), mlflow_server)
    project.retrain()
    return project


@pytest.fixture(scope="session")
def champion_bundle(trained_project) -> ModelBundle:
    """The real model the pipeline trained on real data (the trained project's local champion copy)."""
    return read_bundle(Paths(trained_project.root).champion)


@pytest.fixture(scope="session")
def report_champion_bundle(trained_project) -> ModelBundle:
    """The real report-time model the pipeline trained (the trained project's local copy)."""
    return read_bundle(Paths(trained_project.root).report_time.champion, example_row())


@pytest.fixture(scope="session")
def postgres(tmp_path_factory) -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (started on first use, stopped by PID)."""
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
def database_url(request) -> str | None:
    """Parametrizes a test over both users-DB backends: None (SQLite, the local default) or a
    fresh database on the real PostgreSQL server, with compose's URL form (psycopg 3)."""
    return users_database(request, request.param)
