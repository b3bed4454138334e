"""The FastAPI application: `create_app()` builds it without side effects; the lifespan opens the
database, bootstraps the admin, loads the champion and starts the alias poller.

Run: `.venv/bin/uvicorn api.main:app --host 127.0.0.1 --port 8000`
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.dependencies.models import Dependant
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from api.core.auth_cache import AuthCache
from api.core.config import DEMO_ADMIN_PASSWORD, Settings, production_problems
from api.core.observability import Metrics, RequestMiddleware, configure_logging
from api.core.security import jwt_secret
from api.core.throttle import LoginThrottle
from api.db import Database, bootstrap_admin
from api.deps import authenticated, get_session, require_admin
from api.inference import InferenceExecutor
from api.lean_imports import keep_heavy_modules_out
from api.model_service import ModelService
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
    routers = (ops.router, auth.router, users.router, predict.build_router(settings), model.router, retrain.router)
    for router in routers:
        _document_errors(router)
        app.include_router(router)
    _add_exception_handlers(app)
    _complete_openapi(app, settings.password_min_length, routers)
    return app


NEW_PASSWORD_FIELDS = {"UserCreate": "password", "UserUpdate": "password", "PasswordChange": "new_password"}


def _complete_openapi(app: FastAPI, min_length: int, routers: tuple[APIRouter, ...]) -> None:
    """What FastAPI cannot infer: the configured minimum password length (PASSWORD_MIN_LENGTH) the
    routes enforce, and the JSON body of routes that answer with their own (non-JSONResponse)
    response class, which FastAPI declares as a bare string."""
    own_json = {
        (route.path, method.lower()): route.response_model
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and route.response_model is not None and _own_json_class(route)
        for method in route.methods
    }
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema["components"]["schemas"]
            for model_name, field in NEW_PASSWORD_FIELDS.items():
                spec = components[model_name]["properties"][field]
                for option in (spec, *spec.get("anyOf", ())):
                    if option.get("type") == "string":
                        option["minLength"] = max(min_length, option.get("minLength", 0))
            for (path, method), response_model in own_json.items():
                for answer in schema["paths"][path][method]["responses"].values():
                    content = answer.get("content", {}).get("application/json")
                    if content is not None and content.get("schema") == {"type": "string"}:
                        model_schema = response_model.model_json_schema(ref_template="#/components/schemas/{model}")
                        components.update(model_schema.pop("$defs", {}))
                        components[response_model.__name__] = model_schema
                        content["schema"] = {"$ref": f"#/components/schemas/{response_model.__name__}"}
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _own_json_class(route: APIRoute) -> bool:
    response_class = getattr(route.response_class, "value", route.response_class)
    return response_class.media_type == "application/json" and not issubclass(response_class, JSONResponse)


def _document_errors(router: APIRouter) -> None:
    """Declare in OpenAPI the errors the shared dependencies answer, on exactly the routes using them."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        calls = set(_dependency_calls(route.dependant))
        for dependency, code, description in (
            (authenticated, 401, "not authenticated: token missing, invalid, expired or revoked"),
            (require_admin, 403, "admin role required"),
            (authenticated, 503, "users database unavailable (retry later)"),
            (get_session, 503, "users database unavailable (retry later)"),
        ):
            if dependency in calls:
                route.responses.setdefault(code, {"description": description})
        if route.body_field is not None:  # FastAPI parses the body: bytes that are not JSON/form text at all
            route.responses.setdefault(400, {"description": "request body cannot be parsed (encoding, nesting)"})
            route.responses.setdefault(413, {"description": "request body too large"})


def _dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _dependency_calls(dependency)


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
    app.state.db = Database(settings.database, settings.database_busy_timeout_seconds)
    app.state.auth_cache = AuthCache(settings.auth_cache_seconds)
    app.state.db.on_user_change(app.state.auth_cache.invalidate)
    app.state.inference = InferenceExecutor()
    await run_in_threadpool(_prepare_database, app.state.db, settings)
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

    @app.exception_handler(OperationalError)
    async def _database_unavailable(request: Request, error: OperationalError) -> JSONResponse:
        # locked past the busy timeout, read-only, disk full, server gone: the client may retry later
        logger.error("users database unavailable on %s %s: %s", request.method, request.url.path, error.orig)
        return JSONResponse(
            {"detail": "users database unavailable (locked, read-only or unreachable): retry later"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
        return JSONResponse({"detail": "internal server error"}, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)


def __getattr__(name: str) -> FastAPI:
    """`api.main:app`, what uvicorn serves: built on first access (PEP 562), after keeping pandas,
    pyarrow and pytest out of this process (api/lean_imports.py); importing this module builds nothing."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    already = keep_heavy_modules_out()
    if already:
        logger.warning("already imported before the serving app was built: %s", ", ".join(already))
    globals()["app"] = served = create_app()
    return served
