"""The FastAPI application: `create_app()` builds it without side effects; the lifespan opens the
database, bootstraps the admin, loads the champion and starts the alias poller.

Run: `.venv/bin/uvicorn api.main:app --host 127.0.0.1 --port 8000`
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from api.core.auth_cache import AuthCache
from api.core.config import DEMO_ADMIN_PASSWORD, Settings, production_problems
from api.core.observability import Metrics, RequestMiddleware, configure_logging
from api.core.security import jwt_secret
from api.core.throttle import LoginThrottle
from api.db import Database, bootstrap_admin
from api.inference import InferenceExecutor
from api.model_service import ModelService, configure_mlflow_client
from api.orchestrators import OrchestratorUnavailableError, RetrainConflictError, RunNotFoundError, build_orchestrator
from api.prediction import PayloadError
from api.routes import auth, model, ops, predict, retrain, users

logger = logging.getLogger("api")


def load_settings() -> Settings:
    """Settings from the environment / .env; a clear message and exit instead of a traceback."""
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        raise SystemExit(f"accidents API: invalid settings: {problems}") from None


def check_settings(settings: Settings) -> None:
    problems = production_problems(settings)
    if problems:
        lines = "\n  - ".join(problems)
        raise SystemExit(f"accidents API: refusing to start with ENVIRONMENT=production:\n  - {lines}")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    check_settings(settings)
    app = FastAPI(
        title="Accidents severity API",
        version="1.0.0",
        summary="Predicts whether a French road accident has a killed or hospitalised victim (BAAC data).",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(RequestMiddleware, metrics=app.state.metrics, max_body_bytes=settings.max_body_bytes)
    for router in (ops.router, auth.router, users.router, predict.build_router(settings), model.router, retrain.router):
        app.include_router(router)
    _add_exception_handlers(app)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    configure_logging(settings.log_level)
    app.state.jwt_secret = jwt_secret(settings)
    app.state.throttle = LoginThrottle(
        settings.login_max_failures,
        settings.login_max_failures_per_client,
        settings.login_max_failures_per_username,
        settings.login_window_seconds,
    )
    app.state.db = Database(settings.database)
    app.state.auth_cache = AuthCache(settings.auth_cache_seconds)
    app.state.db.on_user_change(app.state.auth_cache.invalidate)
    app.state.inference = InferenceExecutor()
    await run_in_threadpool(_prepare_database, app.state.db, settings)
    configure_mlflow_client(settings.mlflow_timeout_seconds)
    metrics: Metrics = app.state.metrics
    app.state.models = ModelService(
        settings.mlflow_tracking_uri,
        settings.champion_path,
        settings.model_poll_seconds,
        settings.mlflow_timeout_seconds,
        on_change=lambda served: metrics.set_model(served.version, served.source, served.bundle.metadata.data_source),
    )
    first = await run_in_threadpool(app.state.models.start)
    metrics.model_checks.labels(first.action).inc()
    app.state.orchestrator = build_orchestrator(settings)
    logger.info("API ready: model %s, orchestrator %s", first.current_version, app.state.orchestrator.name)
    try:
        yield
    finally:
        app.state.models.stop()
        app.state.inference.close()
        app.state.orchestrator.close()
        app.state.db.dispose()


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


def _add_exception_handlers(app: FastAPI) -> None:
    @app.exception_handler(PayloadError)
    async def _payload(_: Request, error: PayloadError) -> JSONResponse:
        return JSONResponse({"detail": [problem.as_dict() for problem in error.problems]}, status_code=422)

    @app.exception_handler(RetrainConflictError)
    async def _conflict(_: Request, error: RetrainConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(error), "run_id": error.run_id}, status_code=status.HTTP_409_CONFLICT)

    @app.exception_handler(OrchestratorUnavailableError)
    async def _unavailable(_: Request, error: OrchestratorUnavailableError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"retraining orchestrator unavailable: {error}"}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE
        )

    @app.exception_handler(RunNotFoundError)
    async def _not_found(_: Request, error: RunNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status.HTTP_404_NOT_FOUND)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
        return JSONResponse({"detail": "internal server error"}, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)


app = create_app()
