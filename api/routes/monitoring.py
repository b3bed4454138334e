"""GET /monitoring/predictions, /performance, /drift and /shadow: what the API served, how it did,
whether the traffic drifted from what the model learned, and how the shadow challenger compares
with the champion (admin only)."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from accidents.features import FEATURE_NAMES
from accidents.store import drift_results
from accidents.store.prediction_log import predictions, realized
from api.deps import AdminUser, PredictionLogDep
from api.monitoring.accident_ids import ID_PATTERN
from api.monitoring.shadow_report import shadow_report

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/monitoring", tags=["monitoring"])
VERSION_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
STORE_UNAVAILABLE = {503: {"description": "prediction log store unavailable (retry later)"}}


def _iso_only(value: object) -> object:
    """Pydantic reads "170" as a Unix timestamp; the parameter is documented (and meant) as ISO 8601."""
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[\d.]+(e[+-]?\d+)?\s*", value, flags=re.IGNORECASE):
        raise ValueError("expected an ISO 8601 date-time (e.g. 2026-12-01T00:00:00Z), not a number")
    return value


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _in_utc(value: datetime) -> datetime:
    """The moment in UTC; one that leaves datetime's range once converted (0001-01-01T00:00+01:00)
    is the caller's mistake (422), not an OverflowError (500)."""
    try:
        return _utc(value).astimezone(UTC)
    except OverflowError:
        raise ValueError("date-time out of range once converted to UTC") from None


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_in_utc)]
# A time read back from the store: UTC, which SQLite returns without its offset.
StoredTime = Annotated[datetime, AfterValidator(_utc)]


class LoggedPrediction(BaseModel):
    id: int
    logged_at: StoredTime
    request_id: str
    model_version: str | None
    model_source: str
    caller_role: str
    accident_id: str | None
    features: dict[str, float | None] = Field(description="the 28 values as received after validation")
    probability: float
    predicted_class: int = Field(description="1: at least one person killed or hospitalised")
    threshold: float


class PredictionPage(BaseModel):
    items: list[LoggedPrediction] = Field(description="newest first")
    next_before_id: int | None = Field(description="pass as before_id for the next (older) page; null: last page")


class RealizedResult(BaseModel):
    model_version: str
    month: str | None = Field(description="YYYY-MM of the accidents; null: all months")
    computed_at: StoredTime
    job_id: str
    rows_logged: int
    rows_labelled: int
    rows_unlabelled: int
    roc_auc: float | None
    f1: float | None
    precision: float | None
    recall: float | None
    positive_rate: float | None
    predicted_positive_rate: float | None
    mean_probability: float | None
    brier: float | None
    ece: float | None
    label_source: str
    mlflow_run_id: str | None


class DriftResult(BaseModel):
    id: int
    computed_at: StoredTime
    window_start: StoredTime | None = Field(description="logged_at of the window's oldest prediction")
    window_end: StoredTime | None = Field(description="logged_at of the window's newest prediction")
    window_rows: int
    model_version: str | None = Field(description="the model version that served the window")
    reference_rows: int = Field(description="rows of that version's training reference compared with")
    feature_scores: dict[str, float | None] = Field(description="drift score per compared feature (higher: more drift)")
    drifted_features: list[str]
    drifted_share: float | None
    prediction_drift: float | None = Field(description="drift score of the predicted probabilities")
    verdict: str = Field(description="drift | no_drift | not_enough_data")
    report_run_id: str | None = Field(description="MLflow run (experiment `monitoring`) holding the HTML report")
    method: str


def _store_error(error: SQLAlchemyError) -> HTTPException:
    logger.error("prediction log store unavailable: %s", getattr(error, "orig", error))
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "prediction log store unavailable: retry later",
                         headers={"Retry-After": "5"})  # fmt: skip


@router.get("/predictions", response_model=PredictionPage, responses=STORE_UNAVAILABLE)
def logged_predictions(
    _: AdminUser,
    log: PredictionLogDep,
    since: Annotated[IsoDateTime | None, Query(description="logged at or after (ISO 8601; UTC if no offset)")] = None,
    until: Annotated[IsoDateTime | None, Query(description="logged before")] = None,
    model_version: Annotated[str | None, Query(pattern=VERSION_PATTERN)] = None,
    accident_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**62, description="page cursor (next_before_id)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Logged predictions, newest first, filtered by time range, model version and accident id."""
    query = (
        select(predictions).where(predictions.c.shadow.is_(False)).order_by(predictions.c.id.desc()).limit(limit + 1)
    )
    if since is not None:
        query = query.where(predictions.c.logged_at >= _utc(since).astimezone(UTC))
    if until is not None:
        query = query.where(predictions.c.logged_at < _utc(until).astimezone(UTC))
    if model_version is not None:
        query = query.where(predictions.c.model_version == model_version)
    if accident_id is not None:
        query = query.where(predictions.c.accident_id == accident_id)
    if before_id is not None:
        query = query.where(predictions.c.id < before_id)
    try:
        with log.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
    except SQLAlchemyError as error:
        raise _store_error(error) from None
    page = rows[:limit]
    items = [
        {**{key: row[key] for key in LoggedPrediction.model_fields if key != "features" and key in row},
         "features": {name: row[name] for name in FEATURE_NAMES}}
        for row in page
    ]  # fmt: skip
    return {"items": items, "next_before_id": page[-1]["id"] if len(rows) > limit else None}


@router.get("/performance", response_model=list[RealizedResult], responses=STORE_UNAVAILABLE)
def realized_performance(
    _: AdminUser,
    log: PredictionLogDep,
    model_version: Annotated[str | None, Query(pattern=VERSION_PATTERN)] = None,
) -> list[dict[str, Any]]:
    """The label job's latest results: per model version, all months (month null) then each month."""
    latest_job = select(realized.c.job_id).order_by(realized.c.computed_at.desc(), realized.c.id.desc()).limit(1)
    if model_version is not None:
        latest_job = latest_job.where(realized.c.model_version == model_version)
    query = select(realized).where(
        realized.c.job_id == latest_job.scalar_subquery(), realized.c.shadow_challenger.is_(None)
    )  # shadow comparisons: /monitoring/shadow
    if model_version is not None:
        query = query.where(realized.c.model_version == model_version)
    try:
        with log.engine.connect() as connection:
            rows = connection.execute(query.order_by(realized.c.model_version, realized.c.id)).mappings().all()
    except SQLAlchemyError as error:
        raise _store_error(error) from None
    return [dict(row) for row in rows]


@router.get("/drift", response_model=list[DriftResult], responses=STORE_UNAVAILABLE)
def drift(
    _: AdminUser,
    log: PredictionLogDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[dict[str, Any]]:
    """The drift job's results (`python -m accidents.monitoring.drift`), newest first."""
    try:
        return drift_results.recent(log.engine, limit)
    except SQLAlchemyError as error:
        raise _store_error(error) from None


class RealizedGrade(BaseModel):
    roc_auc: float | None
    f1: float | None
    precision: float | None
    recall: float | None
    rows_labelled: int
    rows_unlabelled: int
    computed_at: StoredTime


class ShadowRealized(BaseModel):
    job_id: str
    challenger: RealizedGrade | None = None
    champion: RealizedGrade | None = None


class ShadowComparison(BaseModel):
    challenger_version: str | None
    champion_version: str | None
    rows: int = Field(description="shadow rows logged: live rows scored by both models")
    agreement_rate: float = Field(description="share of those rows where both predict the same class")
    challenger_positive_rate: float
    champion_positive_rate: float
    positive_rate_difference: float = Field(description="challenger minus champion")
    first_logged_at: StoredTime
    last_logged_at: StoredTime
    realized: ShadowRealized | None = Field(description="label job: both graded on the same labelled shadow rows")


@router.get("/shadow", response_model=list[ShadowComparison], responses=STORE_UNAVAILABLE)
def shadow_comparison(
    _: AdminUser,
    log: PredictionLogDep,
    challenger_version: Annotated[str | None, Query(pattern=VERSION_PATTERN)] = None,
) -> list[dict[str, Any]]:
    """Per challenger version (and the champion it shadowed): agreement, positive rates and, once the
    label job ran, realized AUC/F1 of both on the same rows. Newest first."""
    try:
        return shadow_report(log.engine, challenger_version)
    except SQLAlchemyError as error:
        raise _store_error(error) from None
