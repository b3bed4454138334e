"""Operations: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import NO_MODEL, MetricsDep, ModelServiceDep

router = APIRouter(tags=["ops"])


@router.get("/health")
def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "no model loaded yet"}})
def ready(models: ModelServiceDep) -> JSONResponse:
    """Readiness: a model is loaded and /predict can answer."""
    served = models.current
    if served is None:
        return JSONResponse({"status": "not ready", "detail": NO_MODEL}, status_code=503)
    return JSONResponse(
        {"status": "ready", "model_version": served.version, "source": served.source, "degraded": models.degraded}
    )


@router.get("/metrics", response_class=Response)
def metrics(registry_metrics: MetricsDep) -> Response:
    return Response(generate_latest(registry_metrics.registry), media_type=CONTENT_TYPE_LATEST)
