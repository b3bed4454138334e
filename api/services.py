"""The app's services: one typed object, built by the lifespan (`start_services`), read by routes
only through `api.deps`.

Adding a service: a field here, built in `start_services`, closed in `Services.close`, and a
dependency in `api.deps`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from fastapi.concurrency import run_in_threadpool

from api.core.auth_cache import AuthCache
from api.core.config import DEMO_ADMIN_PASSWORD, Settings
from api.core.observability import Metrics
from api.core.security import jwt_secret
from api.core.throttle import LoginThrottle
from api.db.crud import bootstrap_admin
from api.db.engine import Database
from api.inference import InferenceExecutor
from api.model_service import ModelService
from api.monitoring.service import LogOptions, PredictionLog
from api.orchestrators import Orchestrator, build_orchestrator

logger = logging.getLogger("api")


@dataclass(frozen=True)
class Services:
    settings: Settings
    metrics: Metrics  # created with the app: the request middleware counts into it
    jwt_secret: str
    database: Database
    auth_cache: AuthCache  # who may use a token, invalidated by the database's user-change hook
    throttle: LoginThrottle
    inference: InferenceExecutor  # the thread big batches are scored on
    models: ModelService
    orchestrator: Orchestrator
    prediction_log: PredictionLog  # what /predict served, written off the request path

    def close(self) -> None:
        self.prediction_log.stop()  # first: what is queued gets written while the rest closes
        self.models.stop()
        self.inference.close()
        self.orchestrator.close()
        self.database.dispose()


async def start_services(settings: Settings, metrics: Metrics) -> Services:
    """Open the database, bootstrap the admin, load the champion and start the alias poller."""
    secret = jwt_secret(settings)
    throttle = LoginThrottle(
        settings.login_max_failures,
        settings.login_max_failures_per_client,
        settings.login_max_failures_per_username,
        settings.login_window_seconds,
    )
    database = Database(settings.database, settings.database_busy_timeout_seconds)
    auth_cache = AuthCache(settings.auth_cache_seconds)
    database.on_user_change(auth_cache.invalidate)
    inference = InferenceExecutor()
    await run_in_threadpool(_prepare_database, database, settings)
    prediction_log = PredictionLog(log_options(settings), metrics.prediction_log, metrics.registry)
    await run_in_threadpool(prediction_log.start)
    models = ModelService(
        settings.mlflow_tracking_uri,
        settings.champion_path,
        settings.model_poll_seconds,
        settings.mlflow_timeout_seconds,
        on_change=lambda served: metrics.set_model(
            served.version,
            served.source,
            served.bundle.metadata.data_source,
            served.bundle.metadata.metrics.get("test_roc_auc"),
        ),
    )
    first = await run_in_threadpool(models.start)
    metrics.model_checks.labels(first.action).inc()
    orchestrator = build_orchestrator(settings)
    logger.info("API ready: model %s, orchestrator %s", first.current_version, orchestrator.name)
    return Services(
        settings, metrics, secret, database, auth_cache, throttle, inference, models, orchestrator, prediction_log
    )


def log_options(settings: Settings) -> LogOptions:
    return LogOptions(
        enabled=settings.prediction_log_enabled,
        url=settings.prediction_log,
        queue_rows=settings.prediction_log_queue_rows,
        batch_rows=settings.prediction_log_batch_rows,
        flush_seconds=settings.prediction_log_flush_seconds,
        retention_days=settings.prediction_log_retention_days,
    )


def _prepare_database(database: Database, settings: Settings) -> None:
    database.create_all()
    bootstrap_admin(database, settings)
    if not settings.production and settings.uses_demo_admin_password:
        print(
            f"accidents API (local mode): demo credential {settings.admin_username} / {DEMO_ADMIN_PASSWORD} "
            "- set ADMIN_PASSWORD (or ADMIN_PASSWORD_HASH) for anything but a demo",
            file=sys.stderr,
            flush=True,
        )
