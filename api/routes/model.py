"""GET /model: what serves (loudly flagging synthetic data) and the shadow challenger, for /predict's
model and (`report_model`) /v2/predict's; POST /model/reload (admin): check the aliases now; POST
/model/promote and DELETE /model/challenger (admin): a challenger, the seed's by default or the
report-time model's with `?model=report_time` (issue #25: both have the same shadow lifecycle)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import SQLAlchemyError

from accidents.store.prediction_log import REPORT_TIME_MODEL, SEED_MODEL
from api.deps import AdminUser, Caller, MetricsDep, ModelName, ModelServiceDep, ServicesDep, model_query, serving_model
from api.errors import store_unavailable
from api.schemas import ChallengerInfo, DropResponse, ModelInfo, PromoteRequest, PromoteResponse, ReportModelInfo
from api.serving import promotion
from api.serving.model_service import ModelService, Served
from api.serving.registry_client import RegistryError

router = APIRouter(prefix="/model", tags=["model"])
SYNTHETIC_WARNING = (
    "SYNTHETIC DATA: this model was trained on generated demo data, not on real accident records; "
    "its predictions mean nothing. Provide the BAAC data (BAAC_DATA_DIR or network) and retrain."
)


@router.get("", response_model=ModelInfo, responses={503: {"description": "no model loaded yet"}})
def model_info(_: Caller, services: ServicesDep, served: Annotated[Served, Depends(serving_model)]) -> ModelInfo:
    info = describe(services.models, served, services.challenger)
    info.report_model = describe_report(services.report_models, services.report_challenger)
    return info


@router.post("/reload")
async def reload_model(_: AdminUser, models: ModelServiceDep, metrics: MetricsDep, services: ServicesDep
                       ) -> dict[str, Any]:  # fmt: skip
    """Check the registry's champion (and challenger, and the report-time model's champion and
    challenger) alias now; load and swap if it moved (a broken model is rejected)."""
    result = await run_in_threadpool(models.check)
    metrics.model_checks.labels(result.action).inc()
    if services.challenger is not None:
        challenged = await run_in_threadpool(services.challenger.check)
        metrics.shadow.checked(challenged.action)
    served = models.current
    info = describe(models, served, services.challenger).model_dump() if served else None
    answer = {"check": result.as_dict(), "model": info}
    if services.report_models is not None:  # the report-time model's alias (POST /v2/predict)
        answer["report_model_check"] = (await run_in_threadpool(services.report_models.check)).as_dict()
    if services.report_challenger is not None:
        challenged = await run_in_threadpool(services.report_challenger.check)
        metrics.shadow.checked(challenged.action, REPORT_TIME_MODEL)
        answer["report_challenger_check"] = challenged.as_dict()
    return answer


def describe(models: ModelService, served: Served, challenger: ModelService | None = None) -> ModelInfo:
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
        shadow_enabled=challenger is not None,
        challenger=_challenger_info(challenger.current if challenger else None),
    )


def describe_report(models: ModelService | None, challenger: ModelService | None) -> ReportModelInfo | None:
    """The report-time model (POST /v2/predict) as served, and its shadow challenger; None when off."""
    if models is None:
        return None
    served = models.current
    metadata = served.bundle.metadata if served is not None else None
    synthetic = metadata is not None and metadata.data_source != "real"
    return ReportModelInfo(
        model_name=models.model_name, loaded=served is not None,
        version=metadata.version if metadata else None, run_id=metadata.run_id if metadata else None,
        threshold=metadata.threshold if metadata else None, data_source=metadata.data_source if metadata else None,
        synthetic=synthetic, warning=SYNTHETIC_WARNING if synthetic else None,
        trained_at=metadata.trained_at if metadata else None,
        model_family=metadata.model_family if metadata else None,
        metrics=metadata.metrics if metadata else {}, source=served.source if served else None,
        degraded=models.degraded, loaded_at=served.loaded_at if served else None,
        last_check=models.last_check.as_dict() if models.last_check else None,
        shadow_enabled=challenger is not None,
        challenger=_challenger_info(challenger.current if challenger else None),
    )  # fmt: skip


def _challenger_info(served: Served | None) -> ChallengerInfo | None:
    if served is None:
        return None
    metadata = served.bundle.metadata
    return ChallengerInfo(
        version=metadata.version, run_id=metadata.run_id, threshold=metadata.threshold,
        data_source=metadata.data_source, trained_at=metadata.trained_at, model_family=metadata.model_family,
        metrics=metadata.metrics, loaded_at=served.loaded_at,
    )  # fmt: skip


# --- the shadow challenger: promote it or drop it (admin), audited in MLflow (api/serving/promotion.py)

REGISTRY_DOWN = {503: {"description": "MLflow registry or prediction log store unavailable (retry later)"}}
Model = Annotated[ModelName, model_query("whose challenger")]


@router.post("/promote", response_model=PromoteResponse,
             responses={409: {"description": "no challenger, or the promotion rule says no or cannot judge "
                                               "(override not set)"},
                        **REGISTRY_DOWN})  # fmt: skip
def promote_challenger(
    admin: AdminUser,
    services: ServicesDep,
    body: Annotated[PromoteRequest | None, Body()] = None,
    model: Model = SEED_MODEL,
) -> dict[str, Any]:
    """Make the loaded challenger the champion. The promotion rule of params.yaml (`promotion.rule`:
    margin or interval) judges the shadow evidence (realized AUC/F1 of both models on the same
    labelled live rows, and the label job's paired bootstrap 95 % intervals of their differences);
    without such evidence (or, under the interval rule, without an interval), or when the rule says
    no, only `{"override": true}` promotes. Who, when, the evidence, the intervals, the rule's
    verdict and the override are tagged on the promoted version. `model=report_time`: the report-time
    model's challenger (its own registered model, shadow evidence and served champion)."""
    request = body or PromoteRequest()
    with _as_http():
        return promotion.promote(services, admin.username, bool(request.override), request.reason, model)


@router.delete("/challenger", response_model=DropResponse,
               responses={409: {"description": "no challenger loaded"}, **REGISTRY_DOWN})  # fmt: skip
def drop_challenger(admin: AdminUser, services: ServicesDep, model: Model = SEED_MODEL) -> dict[str, Any]:
    """Stop shadowing the challenger (of `model`, the seed's by default): its alias is removed (the
    version stays in the registry, tagged)."""
    with _as_http():
        return promotion.drop(services, admin.username, model)


@contextmanager
def _as_http() -> Iterator[None]:
    """promotion's errors as the HTTP answers the routes document."""
    try:
        yield
    except promotion.RefusedError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    except promotion.RuleUnavailableError as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
    except SQLAlchemyError as error:
        raise store_unavailable(error) from error
    except RegistryError as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"MLflow registry unavailable: {error}",
                            headers={"Retry-After": "10"}) from None  # fmt: skip
