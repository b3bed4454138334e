"""Operations: liveness, readiness, Prometheus metrics.

All three are `async def` and do no I/O: they never wait for a thread of the request pool, which a
users database that stopped answering could hold (the pool runs logins and account routes).
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import (
    NO_MODEL,
    USERS_DATABASE_UNAVAILABLE,
    MetricsDep,
    ModelServiceDep,
    ReportModelsDep,
    UsersDatabaseDep,
)

router = APIRouter(tags=["ops"])


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


NOT_READY = "no model loaded yet, or the users database has been down longer than AUTH_MAX_STALE_SECONDS"


@router.get("/ready", responses={503: {"description": NOT_READY}})
async def ready(models: ModelServiceDep, users_database: UsersDatabaseDep, report_models: ReportModelsDep
                ) -> JSONResponse:  # fmt: skip
    """Readiness: a model is loaded and /predict can answer known tokens.

    While the users database does not answer, /predict serves tokens from their last known state
    for AUTH_MAX_STALE_SECONDS: the replica can still serve, so /ready says 200 with
    `users_database: "down"` and `degraded: true`. Load balancers (HAProxy, the Kubernetes readiness
    probe) route on /ready, and every replica shares the database: a 503 here would take all of them
    out at once and turn a users-database outage into a full one. Past that bound it cannot serve:
    503. The report-time model (/v2/predict) is reported (`report_model_version`, null when none is
    loaded) but does not decide readiness: /predict serves without it.
    """
    served = models.current
    if served is None:
        return JSONResponse({"status": "not ready", "detail": NO_MODEL}, status_code=503)
    down_for = round(users_database.staleness(), 1)
    if not users_database.available and down_for >= users_database.cache.max_stale:
        detail = {"status": "not ready", "detail": USERS_DATABASE_UNAVAILABLE, "users_database_down_seconds": down_for}
        return JSONResponse(detail, status_code=503)
    body = {
        "status": "ready",
        "model_version": served.version,
        "source": served.source,
        "degraded": models.degraded or not users_database.available,
        "users_database": "up" if users_database.available else "down",
        "report_model_version": report_models.current.version if report_models and report_models.current else None,
    }
    if not users_database.available:
        body["users_database_down_seconds"] = down_for
    return JSONResponse(body)


@router.get("/metrics", response_class=Response)
async def metrics(registry_metrics: MetricsDep) -> Response:
    return Response(generate_latest(registry_metrics.registry), media_type=CONTENT_TYPE_LATEST)
