"""Operations: liveness, readiness, Prometheus metrics.

All three are `async def` and do no I/O: they never wait for a thread of the request pool, which a
users database that stopped answering could hold (the pool runs logins and account routes).
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import NO_MODEL, USERS_DATABASE_UNAVAILABLE, MetricsDep, ModelServiceDep, UsersDatabaseDep

router = APIRouter(tags=["ops"])


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "no model loaded yet, or the users database does not answer"}})
async def ready(models: ModelServiceDep, users_database: UsersDatabaseDep) -> JSONResponse:
    """Readiness: a model is loaded and the users database answers (its last probe or lookup).
    While it does not, /predict still serves tokens from their last known state (bounded)."""
    served = models.current
    if served is None:
        return JSONResponse({"status": "not ready", "detail": NO_MODEL}, status_code=503)
    if not users_database.available:
        staleness = round(users_database.staleness(), 1)
        detail = {"status": "not ready", "detail": USERS_DATABASE_UNAVAILABLE, "users_database_down_seconds": staleness}
        return JSONResponse(detail, status_code=503)
    return JSONResponse(
        {"status": "ready", "model_version": served.version, "source": served.source, "degraded": models.degraded}
    )


@router.get("/metrics", response_class=Response)
async def metrics(registry_metrics: MetricsDep) -> Response:
    return Response(generate_latest(registry_metrics.registry), media_type=CONTENT_TYPE_LATEST)
