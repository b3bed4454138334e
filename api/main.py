"""The FastAPI application: `create_app()` builds it without side effects; its lifespan starts the
services (`api.services`: database, admin bootstrap, champion, alias poller) and closes them.

Run: `.venv/bin/uvicorn api.main:app --host 127.0.0.1 --port 8000`
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.core.config import Settings
from api.core.observability import Metrics, RequestMiddleware, configure_logging
from api.core.security import StartupRefusedError, startup_problems
from api.errors import add_exception_handlers
from api.openapi import complete_openapi, document_errors
from api.routes import alerts, auth, dashboard, model, monitoring, ops, predict, retrain, users
from api.services import start_services
from api.serving.lean_imports import keep_heavy_modules_out

logger = logging.getLogger("api")


def load_settings() -> Settings:
    """Settings from the environment / .env; a clear message and exit instead of a traceback."""
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        raise SystemExit(f"accidents API: invalid settings: {problems}") from None


def check_settings(settings: Settings) -> None:
    problems = startup_problems(settings)
    if problems:
        raise SystemExit(refusal(settings, problems))


def refusal(settings: Settings, problems: list[str]) -> str:
    lines = "\n  - ".join(problems)
    return f"accidents API: refusing to start with ENVIRONMENT={settings.environment.value}:\n  - {lines}"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    check_settings(settings)
    metrics = Metrics()  # before the lifespan: the request middleware is built with the app
    refusals: list[str] = []  # a start-up the lifespan refused, for _ReportRefusal
    app = FastAPI(
        title="Accidents severity API",
        version="1.0.0",
        summary="Predicts whether a French road accident has a killed or hospitalised victim (BAAC data).",
        lifespan=_lifespan(settings, metrics, refusals),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(RequestMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    # /predict first: a request is matched against the routes in this order (~25 us per request
    # when it came fourth, measured in process: issue #26); no two routers share a path
    routers = (predict.build_router(settings), ops.router, auth.router, users.router, model.router, retrain.router,
               monitoring.router, alerts.router, dashboard.router)  # fmt: skip
    for router in routers:
        document_errors(router)
        app.include_router(router)
    add_exception_handlers(app)
    complete_openapi(app, settings.password_min_length, routers)
    app.add_middleware(_ReportRefusal, refusals=refusals)
    return app


class _ReportRefusal:
    """Pure ASGI: a start-up the lifespan refused (StartupRefusedError, e.g. a stored admin with a demo
    password) is reported to the server as its message; Starlette would send a traceback."""

    def __init__(self, app: ASGIApp, refusals: list[str]) -> None:
        self.app = app
        self.refusals = refusals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)

        async def report(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and self.refusals:
                message = {**message, "message": self.refusals[-1]}
            await send(message)

        await self.app(scope, receive, report)


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def _lifespan(settings: Settings, metrics: Metrics, refusals: list[str]) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        try:
            services = await start_services(settings, metrics)
        except StartupRefusedError as error:
            refusals.append(refusal(settings, [str(error)]))  # reported by _ReportRefusal
            raise
        app.state.services = services  # read only through api.deps
        try:
            yield
        finally:
            services.close()

    return lifespan


def __getattr__(name: str) -> FastAPI:
    """`api.main:app`, what uvicorn serves: built on first access (PEP 562), after keeping pandas,
    pyarrow and pytest out of this process (api/serving/lean_imports.py); importing this module builds nothing."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    already = keep_heavy_modules_out()
    if already:
        logger.warning("already imported before the serving app was built: %s", ", ".join(already))
    globals()["app"] = served = create_app()
    return served
