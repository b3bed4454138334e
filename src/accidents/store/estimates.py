"""The estimated performance table: what each run of the estimation job (accidents.monitoring.estimation)
expected of one window, and, once labels arrive, what the window really scored.

BAAC labels come 6 to 18 months after the accidents; the CBPE estimate is what monitoring knows of
a version's quality until then. One row per estimated window (the drift job's window: model and
model version, first and last logged_at, rows; `model` "seed" or "report_time", revision 0008:
both registered models number their versions from 1, so readers filter on both): estimated ROC
AUC, F1, precision, recall at the version's threshold, positive rates, the calibration set's ECE
(raw and isotonic) and the method. The label job (accidents.monitoring.realized) grades the same
rows, on that model's logged rows, when their labels are published and fills realized_rows/auc/f1
and the errors (estimated − realized, signed). The API reads the newest row per model and version
for its gauges (api/monitoring/drift_gauges.py) and GET /monitoring/estimates. The table
lives in the prediction log's database and metadata (migration 0004). No pandas here. Measured
(SQLite, 1,000 stored estimates of 5 versions): newest_per_version reads in ~23 ms, its graded
variant in ~2 ms; the API does both at most once per 30 s, at a scrape, never on /predict.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Float, Index, Integer, String, Table, insert, or_, select, update
from sqlalchemy.engine import Engine

from accidents.store.prediction_log import ID_TYPE, MODEL_NAME_MAX_LENGTH, SEED_MODEL, metadata

ESTIMATED = ("roc_auc", "f1", "precision", "recall", "positive_rate", "predicted_positive_rate")

estimated_performance = Table(
    "estimated_performance",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column("computed_at", DateTime(timezone=True), nullable=False),
    Column("model_version", String(64), nullable=True),  # the version that served the window
    Column("window_start", DateTime(timezone=True), nullable=True),  # logged_at of the window's first row
    Column("window_end", DateTime(timezone=True), nullable=True),  # ... and of its last row
    Column("window_rows", Integer, nullable=False),
    *(Column(name, Float, nullable=False) for name in ESTIMATED),  # CBPE's estimate (predicted_positive_rate: observed)
    Column("threshold", Float, nullable=False),  # the version's decision threshold the F1 is estimated at
    Column("calibration_ece_raw", Float, nullable=True),  # ECE of the calibration set's raw probabilities
    Column("calibration_ece_isotonic", Float, nullable=True),  # ... after (cross-fitted) isotonic calibration
    Column("method", String(200), nullable=False),
    Column("mlflow_run_id", String(64), nullable=True),  # the run in the MLflow `monitoring` experiment
    # filled by the label job when the window's labels arrive (NULL until then)
    Column("graded_at", DateTime(timezone=True), nullable=True),
    Column("realized_rows", Integer, nullable=True),  # window rows joined with a label
    Column("realized_auc", Float, nullable=True),  # NULL: one class only among them
    Column("realized_f1", Float, nullable=True),
    Column("auc_error", Float, nullable=True),  # estimated − realized
    Column("f1_error", Float, nullable=True),
    # Which model's traffic (revision 0008), as prediction_log.model; estimates stored before it are the seed's.
    Column("model", String(MODEL_NAME_MAX_LENGTH), nullable=False, server_default=SEED_MODEL),
    Index("ix_estimated_performance_computed_at", "computed_at"),
)


def row_of(estimate: dict[str, Any], window_start: datetime | None, window_end: datetime | None,
           mlflow_run_id: str | None = None, computed_at: datetime | None = None,
           model: str = SEED_MODEL) -> dict[str, Any]:  # fmt: skip
    """The row of one estimate (`dataclasses.asdict` of accidents.monitoring.estimation.Estimate) of `model`."""
    calibration = estimate.get("calibration") or {}
    return {
        "computed_at": computed_at or datetime.now(UTC), "model_version": estimate["model_version"],
        "window_start": window_start, "window_end": window_end, "window_rows": int(estimate["window_rows"]),
        **{name: float(estimate[name]) for name in ESTIMATED}, "threshold": float(estimate["threshold"]),
        "calibration_ece_raw": calibration.get("ece_raw"), "calibration_ece_isotonic": calibration.get("ece_isotonic"),
        "method": str(estimate["method"])[:200], "mlflow_run_id": mlflow_run_id, "model": model,
    }  # fmt: skip


def store(engine: Engine, row: dict[str, Any]) -> int:
    """Insert one estimate; its id."""
    with engine.begin() as connection:
        return int(connection.execute(insert(estimated_performance).values(**row)).inserted_primary_key[0])


def recent(engine: Engine, limit: int = 20, model_version: str | None = None,
           model: str = SEED_MODEL) -> list[dict[str, Any]]:  # fmt: skip
    """The newest estimates of one model first."""
    table = estimated_performance
    newest_first = (table.c.computed_at.desc(), table.c.id.desc())
    query = select(table).where(table.c.model == model).order_by(*newest_first).limit(limit)
    if model_version is not None:
        query = query.where(table.c.model_version == model_version)
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings().all()]


def newest_per_version(engine: Engine, graded: bool = False, scan: int = 1000,
                       model: str = SEED_MODEL) -> dict[str, dict[str, Any]]:  # fmt: skip
    """The newest estimate of each version of `model` (graded: the newest graded one), among its last `scan`."""
    table = estimated_performance
    newest_first = (table.c.computed_at.desc(), table.c.id.desc())
    query = select(table).where(table.c.model == model).order_by(*newest_first).limit(scan)
    if graded:
        query = query.where(table.c.auc_error.is_not(None))
    newest: dict[str, dict[str, Any]] = {}
    with engine.connect() as connection:
        for row in connection.execute(query).mappings():
            newest.setdefault(row["model_version"] or "unknown", dict(row))
    return newest


def to_grade(engine: Engine, since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
    """Estimates of either model whose window is not fully labelled yet (never graded, or fewer
    labelled rows than window rows) and overlaps [since, until); oldest first (each says its `model`)."""
    table = estimated_performance
    query = select(table).where(
        table.c.window_start.is_not(None),
        or_(table.c.graded_at.is_(None), table.c.realized_rows < table.c.window_rows),
    )
    if since is not None:
        query = query.where(table.c.window_end >= since)
    if until is not None:
        query = query.where(table.c.window_start < until)
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query.order_by(table.c.id)).mappings().all()]


def record_grade(engine: Engine, estimate: dict[str, Any], rows: int, auc: float | None, f1: float | None) -> None:
    """The realized AUC/F1 of an estimate's window (its `rows` labelled rows) and the errors."""
    values = {
        "graded_at": datetime.now(UTC), "realized_rows": rows, "realized_auc": auc, "realized_f1": f1,
        "auc_error": None if auc is None else round(estimate["roc_auc"] - auc, 6),
        "f1_error": None if f1 is None else round(estimate["f1"] - f1, 6),
    }  # fmt: skip
    table = estimated_performance
    with engine.begin() as connection:
        connection.execute(update(table).where(table.c.id == estimate["id"]).values(**values))
