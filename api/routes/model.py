"""GET /model: what serves (loudly flagging synthetic data); POST /model/reload (admin): check the alias now."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from api.deps import AdminUser, Caller, MetricsDep, ModelServiceDep, serving_model
from api.model_service import ModelService, Served
from api.schemas import ModelInfo

router = APIRouter(prefix="/model", tags=["model"])
SYNTHETIC_WARNING = (
    "SYNTHETIC DATA: this model was trained on generated demo data, not on real accident records; "
    "its predictions mean nothing. Provide the BAAC data (BAAC_DATA_DIR or network) and retrain."
)


@router.get("", response_model=ModelInfo, responses={503: {"description": "no model loaded yet"}})
def model_info(_: Caller, models: ModelServiceDep, served: Annotated[Served, Depends(serving_model)]) -> ModelInfo:
    return describe(models, served)


@router.post("/reload")
async def reload_model(_: AdminUser, models: ModelServiceDep, metrics: MetricsDep) -> dict[str, Any]:
    """Check the registry's champion alias now; load and swap if it moved (a broken model is rejected)."""
    result = await run_in_threadpool(models.check)
    metrics.model_checks.labels(result.action).inc()
    served = models.current
    return {"check": result.as_dict(), "model": describe(models, served).model_dump() if served else None}


def describe(models: ModelService, served: Served) -> ModelInfo:
    metadata = served.bundle.metadata
    synthetic = metadata.data_source != "real"
    return ModelInfo(
        model_name=metadata.model_name,
        version=metadata.version,
        run_id=metadata.run_id,
        threshold=metadata.threshold,
        data_source=metadata.data_source,
        synthetic=synthetic,
        warning=SYNTHETIC_WARNING if synthetic else None,
        trained_at=metadata.trained_at,
        model_family=metadata.model_family,
        metrics=metadata.metrics,
        source=served.source,
        degraded=models.degraded,
        loaded_at=served.loaded_at,
        tracking_uri=models.tracking_uri,
        last_check=models.last_check.as_dict() if models.last_check else None,
    )
