"""The app's services: one typed object, built by the lifespan (`start_services`), read by routes
only through `api.deps`.

Adding a service: a field here, built in `start_services`, closed in `Services.close`, and a
dependency in `api.deps`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi.concurrency import run_in_threadpool

from accidents.config import CHALLENGER_ALIAS, MODEL_NAME, REPORT_MODEL_NAME
from accidents.features import SEED_EXAMPLE
from accidents.report_time.features import example_row
from accidents.store.prediction_log import REPORT_TIME_MODEL, SEED_MODEL
from api.core.auth_cache import AuthCache, UsersDatabase, UsersDatabaseMetrics
from api.core.config import DEMO_ADMIN_PASSWORD, Settings
from api.core.observability import Metrics
from api.core.security import StartupRefusedError, jwt_secret
from api.core.throttle import LoginThrottle
from api.db.crud import admins_with_demo_password, auth_state, bootstrap_admin
from api.db.engine import Database
from api.monitoring.service import LogOptions, PredictionLog
from api.orchestrators import Orchestrator, build_orchestrator
from api.serving.inference import InferenceExecutor
from api.serving.model_service import ModelService
from api.serving.reports import LOGGED_FEATURES
from api.serving.shadow import ShadowScorer

logger = logging.getLogger("api")


@dataclass(frozen=True)
class Services:
    settings: Settings
    metrics: Metrics  # created with the app: the request middleware counts into it
    jwt_secret: str
    database: Database
    auth_cache: AuthCache  # who may use a token, invalidated by the database's user-change hook
    users_database: UsersDatabase  # expired entries' lookups (with a deadline), up/down for /ready
    throttle: LoginThrottle
    inference: InferenceExecutor  # the thread big batches are scored on
    models: ModelService
    orchestrator: Orchestrator
    prediction_log: PredictionLog  # what /predict served, written off the request path
    challenger: ModelService | None = None  # SHADOW_ENABLED: the registry's challenger (api/serving/shadow.py)
    shadow: ShadowScorer | None = None  # scores a share of live rows with it, off the request path
    # REPORT_MODEL_ENABLED: the registry's accidents-report-time@champion, served by POST /v2/predict
    report_models: ModelService | None = None
    # both: accidents-report-time@challenger and its scorer, beside /v2/predict as the two above beside /predict
    report_challenger: ModelService | None = None
    report_shadow: ShadowScorer | None = None

    def close(self) -> None:
        if self.report_models is not None:
            self.report_models.stop()
        for shadow in (self.shadow, self.report_shadow):
            if shadow is not None:
                shadow.stop()  # before the log: its last rows are queued to the log's writer
        for challenger in (self.challenger, self.report_challenger):
            if challenger is not None:
                challenger.stop()
        self.prediction_log.stop()  # first: what is queued gets written while the rest closes
        self.models.stop()
        self.inference.close()
        self.orchestrator.close()
        self.users_database.stop()
        self.database.dispose()


async def start_services(settings: Settings, metrics: Metrics) -> Services:
    """Open the database, bootstrap the admin, load the champion and start the alias poller."""
    secret = jwt_secret(settings)
    throttle = LoginThrottle(
        settings.login_max_failures,
        settings.login_max_failures_per_client,
        settings.login_max_failures_per_username,
        settings.login_window_seconds,
        settings.login_max_concurrent_checks,
    )
    database = Database(settings.database, settings.database_busy_timeout_seconds, settings.database_timeout_seconds)
    auth_cache = AuthCache(settings.auth_cache_seconds, settings.auth_max_stale_seconds)
    database.on_user_change(auth_cache.invalidate)
    users_database = UsersDatabase(
        auth_cache, lambda username: auth_state(database, username), database.ping,
        settings.auth_lookup_timeout_seconds, settings.database_probe_seconds, UsersDatabaseMetrics(metrics.registry),
    )  # fmt: skip
    inference = InferenceExecutor()
    await run_in_threadpool(_prepare_database, database, settings)
    users_database.start()
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
    report_models = await run_in_threadpool(start_report_models, settings, metrics)
    orchestrator = build_orchestrator(settings)
    challenger, shadow = await run_in_threadpool(start_shadow, settings, metrics, prediction_log)
    report_challenger, report_shadow = None, None
    if report_models is not None:  # the report-time model's own challenger, its rows logged as its own
        report_challenger, report_shadow = await run_in_threadpool(
            start_shadow, settings, metrics, prediction_log, REPORT_MODEL_NAME, example_row(), REPORT_TIME_MODEL,
            LOGGED_FEATURES,
        )  # fmt: skip
    for scorer in (shadow, report_shadow):
        if scorer is not None:
            scorer.start_on_loop()  # on this event loop: no second thread contending for the GIL
    logger.info("API ready: model %s, orchestrator %s", first.current_version, orchestrator.name)
    return Services(
        settings, metrics, secret, database, auth_cache, users_database, throttle, inference, models, orchestrator,
        prediction_log, challenger, shadow, report_models, report_challenger, report_shadow,
    )  # fmt: skip


def start_report_models(settings: Settings, metrics: Metrics) -> ModelService | None:
    """REPORT_MODEL_ENABLED: the report-time model's champion (registry, else its local copy), its own
    alias poller. With none anywhere the API starts all the same and /v2/predict answers 503."""
    if not settings.report_model_enabled:
        return None
    report_models = ModelService(
        settings.mlflow_tracking_uri,
        settings.report_champion_path,
        settings.model_poll_seconds,
        settings.mlflow_timeout_seconds,
        on_change=lambda served: metrics.set_report_model(served.version, served.source,
                                                          served.bundle.metadata.data_source,
                                                          served.bundle.metadata.metrics.get("test_roc_auc")),
        model_name=REPORT_MODEL_NAME,
        example=example_row(),
    )  # fmt: skip
    first = report_models.start()
    logger.info("report-time model (/v2/predict): %s (%s)", first.current_version, first.action)
    return report_models


def start_shadow(
    settings: Settings,
    metrics: Metrics,
    prediction_log: PredictionLog,
    model_name: str = MODEL_NAME,
    example: Sequence[float] = SEED_EXAMPLE,
    model: str = SEED_MODEL,
    feature_names: tuple[str, ...] | None = None,
) -> tuple[ModelService | None, ShadowScorer | None]:
    """SHADOW_ENABLED: the challenger of registered model `model_name` (its own alias poller, no
    local copy; every version must score `example`) and its shadow scorer, which logs under `model`
    with `feature_names` (the seed's by default; the report-time model's for /v2/predict)."""
    if not settings.shadow_enabled:
        return None, None
    challenger = ModelService(
        settings.mlflow_tracking_uri,
        None,
        settings.model_poll_seconds,
        settings.mlflow_timeout_seconds,
        alias=CHALLENGER_ALIAS,
        model_name=model_name,
        example=example,
    )
    first = challenger.start()
    metrics.shadow.checked(first.action, model)
    writer = prediction_log.writer
    shadow = ShadowScorer(
        lambda: challenger.current,
        metrics.shadow,
        writer.submit if writer is not None else None,
        settings.shadow_share,
        settings.shadow_queue_rows,
        model=model,
        feature_names=feature_names,
    )
    logger.info("shadow on (%s): challenger %s, share %.2f", model, first.current_version, settings.shadow_share)
    return challenger, shadow


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
    if settings.production:
        _refuse_demo_admins(database)
    if not settings.production and settings.uses_demo_admin_password:
        print(
            f"accidents API (local mode): demo credential {settings.admin_username} / {DEMO_ADMIN_PASSWORD} "
            "- set ADMIN_PASSWORD (or ADMIN_PASSWORD_HASH) for anything but a demo",
            file=sys.stderr,
            flush=True,
        )


def _refuse_demo_admins(database: Database) -> None:
    names = admins_with_demo_password(database)
    if names:
        raise StartupRefusedError(
            f"stored admin {', '.join(map(repr, names))} has a demo password (ADMIN_PASSWORD only creates a "
            "missing admin): reset it first: start once with ENVIRONMENT=local, log in as that admin and "
            "POST /users/me/password, or disable it (PATCH /users/{username})"
        )
