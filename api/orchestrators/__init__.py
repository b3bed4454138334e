"""Retraining orchestrators behind one interface: Airflow (REST API v2) or a local process."""

from __future__ import annotations

import os

from accidents.config import ENV_PROJECT_DIR, ENV_TRACKING_URI
from api.core.config import Settings
from api.orchestrators.airflow import AirflowOrchestrator
from api.orchestrators.base import (
    Orchestrator,
    OrchestratorError,
    OrchestratorUnavailableError,
    RetrainConflictError,
    RetrainRun,
    RunNotFoundError,
    RunState,
    promoted_during,
)
from api.orchestrators.local import LocalOrchestrator

# The API's own secrets stay out of the retraining process.
_NOT_INHERITED = frozenset({"JWT_SECRET", "ADMIN_PASSWORD", "ADMIN_PASSWORD_HASH", "AIRFLOW_PASSWORD", "DATABASE_URL"})

__all__ = [
    "AirflowOrchestrator",
    "LocalOrchestrator",
    "Orchestrator",
    "OrchestratorError",
    "OrchestratorUnavailableError",
    "RetrainConflictError",
    "RetrainRun",
    "RunNotFoundError",
    "RunState",
    "build_orchestrator",
    "promoted_during",
]


def build_orchestrator(settings: Settings) -> Orchestrator:
    """Airflow when AIRFLOW_API_URL is set, else the local retraining process."""
    if settings.airflow_api_url:
        return AirflowOrchestrator(
            settings.airflow_api_url,
            settings.airflow_username,
            settings.airflow_password.get_secret_value(),
            settings.airflow_timeout_seconds,
        )
    env = {
        **{name: value for name, value in os.environ.items() if name not in _NOT_INHERITED},
        ENV_PROJECT_DIR: str(settings.project_dir),
        ENV_TRACKING_URI: settings.mlflow_tracking_uri,
        # DVC's analytics daemon double-forks and would inherit the run's single-flight lock, holding
        # it after the run ended (409 for a finished run): off, as in the Airflow DAG's tasks.
        "DVC_NO_ANALYTICS": "1",
    }
    return LocalOrchestrator(settings.retrain_argv, settings.state_path, settings.project_dir, env)
