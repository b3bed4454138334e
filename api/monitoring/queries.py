"""The monitoring routes' reads: logged predictions, the label job's latest results, aggregates of
what was served (computed by the database, not in Python) and the pipeline's recent MLflow runs.
Store functions raise SQLAlchemyError; the routes turn it into a 503."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, String, case, cast, func, literal_column, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from accidents.config import EXPERIMENT_NAME
from accidents.features import FEATURE_NAMES
from accidents.store.prediction_log import SEED_MODEL, predictions, realized
from api.monitoring.schemas import MAX_BUCKETS, LoggedPrediction
from api.serving.registry_client import MlflowRegistry

BUCKET_CHARS = {"minute": 16, "hour": 13, "day": 10}  # ISO prefix length: 2026-12-02T04:55
BUCKET_FORMATS = {"minute": "YYYY-MM-DD HH24:MI", "hour": "YYYY-MM-DD HH24", "day": "YYYY-MM-DD"}


def _served_rows(since: datetime | None, until: datetime | None, model_version: str | None) -> list[Any]:
    """The filter of both reads of served rows: the seed model's (/predict: its 28 features; the
    report-time model's versions overlap its numbers), logged in [since, until), of one version
    (shadow rows are the shadow report's)."""
    conditions = [predictions.c.shadow.is_(False), predictions.c.model == SEED_MODEL]
    if since is not None:
        conditions.append(predictions.c.logged_at >= since)
    if until is not None:
        conditions.append(predictions.c.logged_at < until)
    if model_version is not None:
        conditions.append(predictions.c.model_version == model_version)
    return conditions


def logged_predictions(
    engine: Engine,
    *,
    since: datetime | None,
    until: datetime | None,
    model_version: str | None,
    accident_id: str | None,
    before_id: int | None,
    limit: int,
) -> dict[str, Any]:
    """Served predictions, newest first (times in UTC), one page and the cursor to the next."""
    query = (
        select(predictions)
        .where(*_served_rows(since, until, model_version))
        .order_by(predictions.c.id.desc())
        .limit(limit + 1)
    )
    if accident_id is not None:
        query = query.where(predictions.c.accident_id == accident_id)
    if before_id is not None:
        query = query.where(predictions.c.id < before_id)
    with engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    page = rows[:limit]
    items = [
        {**{key: row[key] for key in LoggedPrediction.model_fields if key != "features" and key in row},
         "features": {name: row[name] for name in FEATURE_NAMES}}
        for row in page
    ]  # fmt: skip
    return {"items": items, "next_before_id": page[-1]["id"] if len(rows) > limit else None}


def latest_realized(engine: Engine, model_version: str | None, model: str = SEED_MODEL) -> list[dict[str, Any]]:
    """The label job's latest results of `model`: per version, all months (month null) then each month."""
    latest_job = (
        select(realized.c.job_id)
        .where(realized.c.model == model)
        .order_by(realized.c.computed_at.desc(), realized.c.id.desc())
        .limit(1)
    )
    if model_version is not None:
        latest_job = latest_job.where(realized.c.model_version == model_version)
    query = select(realized).where(
        realized.c.job_id == latest_job.scalar_subquery(),
        realized.c.shadow_challenger.is_(None),  # shadow comparisons: shadow_report
        realized.c.model == model,
    )
    if model_version is not None:
        query = query.where(realized.c.model_version == model_version)
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(realized.c.model_version, realized.c.id)).mappings().all()
    return [dict(row) for row in rows]


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


def prediction_stats(
    engine: Engine, *, since: datetime, until: datetime | None, model_version: str | None, bins: int, bucket: str
) -> dict[str, Any]:
    """What was served: per model version the rows, the positive rate and the histogram of the
    served probabilities, and the volume per period; aggregated by the database."""
    conditions = _served_rows(since, until, model_version)
    version = predictions.c.model_version
    with engine.connect() as connection:
        dialect = connection.dialect.name
        # One statement for the summary and the histogram: two would each see the rows committed
        # when it ran, and a version whose first rows landed in between (a hot swap) had histogram
        # bins but no summary (a KeyError, a 500: issue #23 item 11).
        bin_index = _bin_expression(dialect, bins).label("bin")
        per_bin = connection.execute(
            select(
                version,
                bin_index,
                func.count(),
                func.sum(predictions.c.predicted_class),
                func.sum(predictions.c.probability),
                func.min(predictions.c.logged_at),
                func.max(predictions.c.logged_at),
            )
            .where(*conditions)
            .group_by(version, literal_column("bin"))
        ).all()
        period = _bucket_expression(dialect, bucket).label("period")
        volume = connection.execute(
            select(period, version, func.count())
            .where(*conditions)
            .group_by(literal_column("period"), version)
            .order_by(literal_column("period").desc())
            .limit(MAX_BUCKETS)
        ).all()
    versions = sorted(_per_version(per_bin, bins), key=lambda item: -item["rows"])
    return {
        "since": since,
        "until": until,
        "bins": bins,
        "rows": sum(item["rows"] for item in versions),
        "versions": versions,
        "volume": [_bucket_out(row) for row in reversed(volume)],
    }


def _per_version(per_bin: list[Any], bins: int) -> list[dict[str, Any]]:
    """The per-(version, bin) aggregates summed per version: rows, positives, mean, first/last, histogram."""
    found: dict[str | None, dict[str, Any]] = {}
    for row_version, index, count, positive, probability_sum, first, last in per_bin:
        item = found.setdefault(row_version, {"model_version": row_version, "rows": 0, "predicted_positive": 0,
                                              "probability_sum": 0.0, "first_logged_at": first,
                                              "last_logged_at": last, "histogram": [0] * bins})  # fmt: skip
        item["rows"] += int(count)
        item["predicted_positive"] += int(positive or 0)
        item["probability_sum"] += float(probability_sum)
        item["first_logged_at"] = min(item["first_logged_at"], first)
        item["last_logged_at"] = max(item["last_logged_at"], last)
        item["histogram"][min(max(int(index), 0), bins - 1)] += int(count)
    return [{**item, "mean_probability": item.pop("probability_sum") / item["rows"]} for item in found.values()]


def _bucket_out(row: Any) -> dict[str, Any]:
    return {"bucket": str(row[0]).replace("T", " "), "model_version": row[1], "rows": int(row[2])}


def _time(milliseconds: object) -> datetime | None:
    return datetime.fromtimestamp(int(milliseconds) / 1000, UTC) if milliseconds else None  # type: ignore[call-overload]


def _run_out(run: dict[str, Any]) -> dict[str, Any]:
    info, data = run.get("info", {}), run.get("data", {})
    tags = {tag["key"]: tag["value"] for tag in data.get("tags", ())}
    metrics = {metric["key"]: float(metric["value"]) for metric in data.get("metrics", ())}
    return {
        "run_id": info["run_id"],
        "run_name": info.get("run_name"),
        "model": tags.get("model", SEED_MODEL),
        "status": info.get("status", "UNKNOWN"),
        "started_at": _time(info.get("start_time")),
        "ended_at": _time(info.get("end_time")),
        "reason": tags.get("run_reason"),
        "promotion": tags.get("promotion"),
        "promotion_reason": tags.get("promotion_reason"),
        "test_roc_auc": metrics.get("test_roc_auc"),
        "test_f1": metrics.get("test_f1"),
    }


def pipeline_runs(registry: MlflowRegistry, limit: int) -> list[dict[str, Any]]:
    """The pipeline's recent training runs, newest first, with the reason each started."""
    runs = registry.recent_runs(EXPERIMENT_NAME, limit)
    return [_run_out(run) for run in runs if run.get("info", {}).get("run_id")]
