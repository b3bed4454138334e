"""The monitoring dashboard: `GET /dashboard` (a static page: login form, plain-JS SVG charts, no
data in it) and the admin-only JSON aggregates it reads beside /monitoring/drift, /performance
and /model: the prediction distribution and volume (SQL aggregates over the prediction log) and
the recent pipeline runs with the reason each one started (MLflow's REST API, read-only).

Every number is computed by the database or stored by a job; the API only shapes it (no pandas,
no metrics code in this process: api/serving/lean_imports.py).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import Integer, String, case, cast, func, literal_column, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from accidents.config import EXPERIMENT_NAME
from accidents.store.prediction_log import predictions
from api.deps import AdminUser, PredictionLogDep, SettingsDep
from api.routes.monitoring import STORE_UNAVAILABLE, VERSION_PATTERN, IsoDateTime, StoredTime, _store_error
from api.serving.registry_client import MlflowRegistry, RegistryError

logger = logging.getLogger(__name__)
router = APIRouter(tags=["monitoring"])
ASSETS = Path(__file__).resolve().parents[1] / "dashboard"
PAGES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
# The page loads only its own script and style and talks only to this API.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
BUCKET_CHARS = {"minute": 16, "hour": 13, "day": 10}  # ISO prefix length: 2026-12-02T04:55
BUCKET_FORMATS = {"minute": "YYYY-MM-DD HH24:MI", "hour": "YYYY-MM-DD HH24", "day": "YYYY-MM-DD"}
MAX_BUCKETS = 500


@cache
def _asset(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


@router.get("/dashboard", response_class=Response, include_in_schema=False)
def dashboard_page() -> Response:
    """The dashboard's page (admins log in on it; it holds no data itself)."""
    return Response(_asset("index.html"), media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@router.get("/dashboard/{name}", response_class=Response, include_in_schema=False)
def dashboard_asset(name: str) -> Response:
    if name not in PAGES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such dashboard file")
    return Response(_asset(name), media_type=f"{PAGES[name]}; charset=utf-8", headers=SECURITY_HEADERS)


# ------------------------------------------------------------------------ prediction statistics


class VersionStats(BaseModel):
    model_version: str | None
    rows: int
    predicted_positive: int
    mean_probability: float
    first_logged_at: StoredTime
    last_logged_at: StoredTime
    histogram: list[int] = Field(description="rows per probability bin: [0, 1/bins), ..., [1 - 1/bins, 1]")


class VolumeBucket(BaseModel):
    bucket: str = Field(description="UTC period start: YYYY-MM-DD[ HH[:MM]]")
    model_version: str | None
    rows: int


class PredictionStats(BaseModel):
    since: datetime
    until: datetime | None
    bins: int
    rows: int
    versions: list[VersionStats] = Field(description="per model version, the most served first")
    volume: list[VolumeBucket] = Field(description=f"rows per period and version, oldest first (last {MAX_BUCKETS})")


def _bucket_expression(dialect: str, bucket: str) -> ColumnElement[Any]:
    column = predictions.c.logged_at
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), BUCKET_FORMATS[bucket])
    # SQLite keeps UTC date-times as ISO text "YYYY-MM-DD HH:MM:SS.ffffff"
    return func.substr(cast(column, String), 1, BUCKET_CHARS[bucket])


def _bin_expression(dialect: str, bins: int) -> ColumnElement[Any]:
    scaled = predictions.c.probability * bins
    index = func.floor(scaled) if dialect == "postgresql" else cast(scaled, Integer)  # SQLite's CAST truncates
    return case((index >= bins, bins - 1), else_=index)


@router.get("/monitoring/prediction-stats", response_model=PredictionStats, responses=STORE_UNAVAILABLE)
def prediction_stats(
    _: AdminUser,
    log: PredictionLogDep,
    since: Annotated[IsoDateTime | None, Query(description="logged at or after (default: 30 days ago)")] = None,
    until: Annotated[IsoDateTime | None, Query(description="logged before")] = None,
    model_version: Annotated[str | None, Query(pattern=VERSION_PATTERN)] = None,
    bins: Annotated[int, Query(ge=2, le=100, description="probability histogram bins")] = 20,
    bucket: Annotated[Literal["minute", "hour", "day"], Query(description="volume period")] = "hour",
) -> dict[str, Any]:
    """What was served: per model version the rows, the positive rate and the histogram of the
    served probabilities, and the volume per period; aggregated by the database."""
    start = since or datetime.now(UTC) - timedelta(days=30)  # IsoDateTime: already in UTC
    end = until
    conditions = [predictions.c.logged_at >= start, predictions.c.shadow.is_(False)]  # served rows (shadow: its panel)
    if end is not None:
        conditions.append(predictions.c.logged_at < end)
    if model_version is not None:
        conditions.append(predictions.c.model_version == model_version)
    version = predictions.c.model_version
    try:
        with log.engine.connect() as connection:
            dialect = connection.dialect.name
            summary = connection.execute(
                select(
                    version,
                    func.count(),
                    func.sum(predictions.c.predicted_class),
                    func.avg(predictions.c.probability),
                    func.min(predictions.c.logged_at),
                    func.max(predictions.c.logged_at),
                )
                .where(*conditions)
                .group_by(version)
            ).all()
            bin_index = _bin_expression(dialect, bins).label("bin")
            histogram = connection.execute(
                select(version, bin_index, func.count()).where(*conditions).group_by(version, literal_column("bin"))
            ).all()
            period = _bucket_expression(dialect, bucket).label("period")
            volume = connection.execute(
                select(period, version, func.count())
                .where(*conditions)
                .group_by(literal_column("period"), version)
                .order_by(literal_column("period").desc())
                .limit(MAX_BUCKETS)
            ).all()
    except SQLAlchemyError as error:
        raise _store_error(error) from None
    counts: dict[str | None, list[int]] = {row[0]: [0] * bins for row in summary}
    for row_version, index, count in histogram:
        counts[row_version][min(max(int(index), 0), bins - 1)] += int(count)
    versions = [
        {"model_version": row[0], "rows": int(row[1]), "predicted_positive": int(row[2] or 0),
         "mean_probability": float(row[3]), "first_logged_at": row[4], "last_logged_at": row[5],
         "histogram": counts[row[0]]}
        for row in sorted(summary, key=lambda row: -row[1])
    ]  # fmt: skip
    return {
        "since": start,
        "until": end,
        "bins": bins,
        "rows": sum(item["rows"] for item in versions),
        "versions": versions,
        "volume": [_bucket_out(row) for row in reversed(volume)],
    }


def _bucket_out(row: Any) -> dict[str, Any]:
    return {"bucket": str(row[0]).replace("T", " "), "model_version": row[1], "rows": int(row[2])}


# --------------------------------------------------------------------------------- pipeline runs


class PipelineRun(BaseModel):
    run_id: str
    run_name: str | None
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    reason: str | None = Field(description="why it ran: the run's `run_reason` tag (the DAG's conf, a shell)")
    promotion: str | None = Field(description="promoted | rejected (evaluate stage)")
    promotion_reason: str | None
    test_roc_auc: float | None
    test_f1: float | None


def _time(milliseconds: object) -> datetime | None:
    return datetime.fromtimestamp(int(milliseconds) / 1000, UTC) if milliseconds else None  # type: ignore[call-overload]


def _run_out(run: dict[str, Any]) -> dict[str, Any]:
    info, data = run.get("info", {}), run.get("data", {})
    tags = {tag["key"]: tag["value"] for tag in data.get("tags", ())}
    metrics = {metric["key"]: float(metric["value"]) for metric in data.get("metrics", ())}
    return {
        "run_id": info["run_id"],
        "run_name": info.get("run_name"),
        "status": info.get("status", "UNKNOWN"),
        "started_at": _time(info.get("start_time")),
        "ended_at": _time(info.get("end_time")),
        "reason": tags.get("run_reason"),
        "promotion": tags.get("promotion"),
        "promotion_reason": tags.get("promotion_reason"),
        "test_roc_auc": metrics.get("test_roc_auc"),
        "test_f1": metrics.get("test_f1"),
    }


class PipelineRuns(BaseModel):
    runs: list[PipelineRun] = Field(description="newest first")
    available: bool = Field(description="false: MLflow could not be read (runs is empty, detail says why)")
    detail: str | None = None


@router.get("/monitoring/retrains", response_model=PipelineRuns)
def pipeline_runs(
    _: AdminUser,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    """The pipeline's recent training runs, newest first, with the reason each started (MLflow's
    REST API). MLflow down is not the caller's error nor the API's: an empty, flagged answer."""
    registry = MlflowRegistry(settings.mlflow_tracking_uri, settings.mlflow_timeout_seconds)
    try:
        runs = registry.recent_runs(EXPERIMENT_NAME, limit)
        return {"runs": [_run_out(run) for run in runs if run.get("info", {}).get("run_id")], "available": True}
    except (RegistryError, KeyError, TypeError, ValueError) as error:
        logger.warning("pipeline runs unreadable: %s", error)
        return {"runs": [], "available": False, "detail": "MLflow unreachable: retry later"}
    finally:
        registry.close()
