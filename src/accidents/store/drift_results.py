"""The drift results table: what each run of the drift job (`accidents.monitoring.drift`) concluded.

One row per run: the window of logged traffic it compared (time range, rows, the model and model
version that served it: `model` "seed" or "report_time", revision 0008; their version numbers
overlap, so readers filter on both), the reference it compared with (rows of that version's training profile), the
per-feature scores, the drifted features and share, the prediction drift and the verdict. The
table lives in the prediction log's database and metadata (its migrations create it); the API
reads the newest row for its Prometheus gauges and `GET /monitoring/drift`. No pandas here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, DateTime, Float, Index, Integer, String, Table, insert, select
from sqlalchemy.engine import Engine

from accidents.store.prediction_log import ID_TYPE, MODEL_NAME_MAX_LENGTH, SEED_MODEL, metadata

VERDICT_DRIFT = "drift"
VERDICT_NO_DRIFT = "no_drift"
VERDICT_NOT_ENOUGH_DATA = "not_enough_data"
VERDICTS = (VERDICT_DRIFT, VERDICT_NO_DRIFT, VERDICT_NOT_ENOUGH_DATA)

drift_results = Table(
    "drift_results",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column("computed_at", DateTime(timezone=True), nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=True),  # logged_at of the window's first row
    Column("window_end", DateTime(timezone=True), nullable=True),  # ... and of its last row
    Column("window_rows", Integer, nullable=False),
    Column("model_version", String(64), nullable=True),  # the version that served the window
    Column("reference_rows", Integer, nullable=False),  # reference rows compared (0: no comparison)
    Column("feature_scores", JSON, nullable=False),  # {feature: score}: Evidently distance above the noise floor
    Column("drifted_features", JSON, nullable=False),  # [feature, ...] whose score crossed its threshold
    Column("drifted_share", Float, nullable=True),  # drifted / compared features
    Column("prediction_drift", Float, nullable=True),  # score of the predicted probabilities
    Column("verdict", String(16), nullable=False),  # one of VERDICTS
    Column("report_run_id", String(64), nullable=True),  # MLflow run (experiment `monitoring`) with the HTML report
    Column("method", String(200), nullable=False),  # library, version, tests, reference selection
    # Which model's traffic (revision 0008), as prediction_log.model; results stored before it are the seed's.
    Column("model", String(MODEL_NAME_MAX_LENGTH), nullable=False, server_default=SEED_MODEL),
    Index("ix_drift_results_computed_at", "computed_at"),
)


def store(engine: Engine, result: dict[str, Any]) -> int:
    """Insert one result; its id."""
    with engine.begin() as connection:
        return int(connection.execute(insert(drift_results).values(**result)).inserted_primary_key[0])


def recent(engine: Engine, limit: int = 1, model: str = SEED_MODEL) -> list[dict[str, Any]]:
    """The newest results of one model's traffic first."""
    table = drift_results
    query = (
        select(table).where(table.c.model == model).order_by(table.c.computed_at.desc(), table.c.id.desc()).limit(limit)
    )
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings().all()]
