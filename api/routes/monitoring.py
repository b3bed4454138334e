"""GET /monitoring/*: what the API served (/predictions, /prediction-stats), how it did
(/performance; estimated before labels: /estimates), whether the traffic drifted from what the
model learned (/drift), how the shadow challenger compares with the champion (/shadow) and why the
pipeline last ran (/retrains); admin only. The reads themselves live in api/monitoring/ (queries,
shadow_report) and accidents.store; this file only maps HTTP to them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy.exc import SQLAlchemyError

from accidents.store import drift_results, estimates
from accidents.store.prediction_log import SEED_MODEL
from api.deps import AdminUser, ModelName, PredictionLogDep, SettingsDep, model_query
from api.errors import store_unavailable
from api.monitoring import queries
from api.monitoring.schemas import (
    VERSION_PATTERN,
    DriftResult,
    EstimatedPerformance,
    IsoDateTime,
    PipelineRuns,
    PredictionPage,
    PredictionStats,
    RealizedResult,
    ShadowComparison,
)
from api.monitoring.shadow_report import shadow_report
from api.serving.accident_ids import ID_PATTERN
from api.serving.registry_client import MlflowRegistry, RegistryError

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/monitoring", tags=["monitoring"])
STORE_UNAVAILABLE = {503: {"description": "prediction log store unavailable (retry later)"}}
Version = Annotated[str | None, Query(pattern=VERSION_PATTERN)]
Until = Annotated[IsoDateTime | None, Query(description="logged before")]


@router.get("/predictions", response_model=PredictionPage, responses=STORE_UNAVAILABLE)
def logged_predictions(
    _: AdminUser,
    log: PredictionLogDep,
    since: Annotated[IsoDateTime | None, Query(description="logged at or after (ISO 8601; UTC if no offset)")] = None,
    until: Until = None,
    model_version: Version = None,
    accident_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**62, description="page cursor (next_before_id)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Logged predictions, newest first, filtered by time range, model version and accident id."""
    try:
        return queries.logged_predictions(log.engine, since=since, until=until, model_version=model_version,
                                          accident_id=accident_id, before_id=before_id, limit=limit)  # fmt: skip
    except SQLAlchemyError as error:
        raise store_unavailable(error) from None


@router.get("/performance", response_model=list[RealizedResult], responses=STORE_UNAVAILABLE)
def realized_performance(
    _: AdminUser,
    log: PredictionLogDep,
    model_version: Version = None,
    model: Annotated[ModelName, model_query("whose grades")] = SEED_MODEL,
) -> list[dict[str, Any]]:
    """The label job's latest results of one model: per version, all months (month null) then each month."""
    try:
        return queries.latest_realized(log.engine, model_version, model)
    except SQLAlchemyError as error:
        raise store_unavailable(error) from None


@router.get("/drift", response_model=list[DriftResult], responses=STORE_UNAVAILABLE)
def drift(
    _: AdminUser,
    log: PredictionLogDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    model: Annotated[ModelName, model_query("whose traffic")] = SEED_MODEL,
) -> list[dict[str, Any]]:
    """The drift job's results of one model's traffic (`python -m accidents.monitoring.drift`), newest first."""
    try:
        return drift_results.recent(log.engine, limit, model)
    except SQLAlchemyError as error:
        raise store_unavailable(error) from None


@router.get("/shadow", response_model=list[ShadowComparison], responses=STORE_UNAVAILABLE)
def shadow_comparison(
    _: AdminUser,
    log: PredictionLogDep,
    challenger_version: Version = None,
    model: Annotated[ModelName, model_query("whose shadow")] = SEED_MODEL,
) -> list[dict[str, Any]]:
    """Per challenger version of one model (and the champion it shadowed): agreement, positive rates
    and, once the label job ran, realized AUC/F1 of both on the same rows. Newest first."""
    try:
        return shadow_report(log.engine, challenger_version, model)
    except SQLAlchemyError as error:
        raise store_unavailable(error) from None


@router.get("/prediction-stats", response_model=PredictionStats, responses=STORE_UNAVAILABLE)
def prediction_stats(
    _: AdminUser,
    log: PredictionLogDep,
    since: Annotated[IsoDateTime | None, Query(description="logged at or after (default: 30 days ago)")] = None,
    until: Until = None,
    model_version: Version = None,
    bins: Annotated[int, Query(ge=2, le=100, description="probability histogram bins")] = 20,
    bucket: Annotated[Literal["minute", "hour", "day"], Query(description="volume period")] = "hour",
) -> dict[str, Any]:
    """What was served: per model version the rows, the positive rate and the histogram of the
    served probabilities, and the volume per period; aggregated by the database."""
    start = since or datetime.now(UTC) - timedelta(days=30)  # IsoDateTime: already in UTC
    try:
        return queries.prediction_stats(log.engine, since=start, until=until, model_version=model_version, bins=bins,
                                        bucket=bucket)  # fmt: skip
    except SQLAlchemyError as error:
        raise store_unavailable(error) from None


@router.get("/retrains", response_model=PipelineRuns)
def pipeline_runs(
    _: AdminUser,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    """The pipeline's recent training runs, newest first, with the reason each started (MLflow's
    REST API). MLflow down is not the caller's error nor the API's: an empty, flagged answer."""
    registry = MlflowRegistry(settings.mlflow_tracking_uri, settings.mlflow_timeout_seconds)
    try:
        return {"runs": queries.pipeline_runs(registry, limit), "available": True}
    except (RegistryError, KeyError, TypeError, ValueError) as error:
        logger.warning("pipeline runs unreadable: %s", error)
        return {"runs": [], "available": False, "detail": "MLflow unreachable: retry later"}
    finally:
        registry.close()


# --- estimated performance ----------------------------------------------------------------------


@router.get("/estimates", response_model=list[EstimatedPerformance], responses=STORE_UNAVAILABLE)
def estimated_performance(
    _: AdminUser,
    log: PredictionLogDep,
    model_version: Version = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 30,
    model: Annotated[ModelName, model_query("whose estimates")] = SEED_MODEL,
) -> list[dict[str, Any]]:
    """The estimation job's results of one model (`accidents estimate`: CBPE before labels), newest
    first, with the realized AUC/F1 and the error once the label job graded the same window."""
    try:
        return estimates.recent(log.engine, limit, model_version, model)
    except SQLAlchemyError as error:
        raise store_unavailable(error) from None
