"""Issue #25: the prediction log says which model served each row (revision 0006). Real SQLite
files and a real PostgreSQL (the COPY path of the insert process): a 0005 log with rows upgrades
and its rows read as the seed's; the writer logs the seed's and the report-time model's rows side
by side (the latter's inputs as JSON); the seed's readers never see the report-time rows, even
when both models serve a version "1"."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from alembic import command
from alembic.config import Config
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from accidents.features import FEATURE_NAMES, SEED_EXAMPLE
from accidents.monitoring.realized import estimate_windows
from accidents.monitoring.retrain_decision import recent_estimates, recent_evidence
from accidents.report_time.features import REPORT_FEATURES, example_row
from accidents.store import drift_results, estimates
from accidents.store.database import migration_lock
from accidents.store.prediction_log import (
    MIGRATIONS,
    REPORT_TIME_MODEL,
    SCHEMA_REVISION,
    SEED_MODEL,
    create_log_engine,
    current_revision,
    ensure_schema,
    migrate,
    predictions,
    read_window,
    realized,
)
from api.monitoring.gauges import RealizedPerformanceCollector, latest_overall
from api.monitoring.queries import latest_realized, logged_predictions, prediction_stats
from api.monitoring.writer import LogMetrics, PredictionLogWriter, ServedBatch

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return request.getfixturevalue("postgres").new_database("served_model")


def seed_batch(rows: int, version: str, at: datetime | None = None) -> ServedBatch:
    features = np.tile(np.asarray(SEED_EXAMPLE, dtype=float), (rows, 1))
    probabilities = np.linspace(0.1, 0.9, rows)
    return ServedBatch(at or datetime.now(UTC), "seed-req", version, "registry", "user", 0.5, features,
                       probabilities, (probabilities >= 0.5).astype(np.int8),
                       [f"2021{index:08d}" for index in range(rows)])  # fmt: skip


def report_batch(rows: int, version: str, at: datetime | None = None) -> ServedBatch:
    features = np.tile(np.asarray(example_row()), (rows, 1))
    features[:, 0] = np.arange(rows)  # one value per row, to check each row got its own inputs
    features[:, 1] = np.nan  # missing: stored as null
    probabilities = np.full(rows, 0.8)
    return ServedBatch(at or datetime.now(UTC), "report-req", version, "registry", "admin", 0.3, features,
                       probabilities, np.ones(rows, dtype=np.int8),
                       [f"2021{index:08d}" for index in range(rows)],
                       model=REPORT_TIME_MODEL, feature_names=REPORT_FEATURES)  # fmt: skip


def write(url: str, batches: list[ServedBatch]) -> None:
    """Through the API's writer and its insert process, as /predict and /v2/predict log."""
    engine = create_log_engine(url)
    ensure_schema(engine, url)
    writer = PredictionLogWriter(engine, LogMetrics(CollectorRegistry()), batch_rows=10_000, flush_seconds=0.05)
    for batch in batches:  # queued before the writer starts: one write holds both models' rows
        assert writer.submit(batch)
    writer.start()
    assert writer.flush(60)
    writer.stop()
    engine.dispose()


def log_at_revision(log_url: str, revision: str) -> Engine:
    """A prediction log created at an older schema revision (alembic, under the schema's lock)."""
    engine = create_log_engine(log_url)
    with engine.begin() as connection:
        migration_lock(connection, "accidents-prediction-log-schema")
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return engine


def test_a_0005_log_with_rows_upgrades_and_its_rows_are_the_seeds(log_url):
    engine = log_at_revision(log_url, "0005")
    with engine.begin() as connection:
        assert current_revision(connection) == "0005"
        row = {"logged_at": datetime.now(UTC), "request_id": "old", "model_version": "4", "model_source": "registry",
               "caller_role": "user", **dict(zip(FEATURE_NAMES, SEED_EXAMPLE, strict=True)), "probability": 0.6,
               "predicted_class": 1, "threshold": 0.5}  # fmt: skip
        # the 0005 table's columns only (the INSERT names the given columns)
        connection.execute(insert(predictions).values([row, {**row, "request_id": "older"}]))
    engine.dispose()
    assert migrate(log_url) == SCHEMA_REVISION  # 0006 and every later revision
    frame = read_window(log_url, model=None)
    assert sorted(frame["request_id"]) == ["old", "older"]
    assert set(frame["model"]) == {SEED_MODEL} and frame["report_features"].isna().all()
    assert len(read_window(log_url)) == 2  # the seed's, by default


def test_both_models_rows_are_logged_and_the_seeds_readers_see_only_the_seeds(log_url):
    before = datetime.now(UTC) - timedelta(seconds=1)
    write(log_url, [seed_batch(5, "1"), report_batch(3, "1"), seed_batch(2, "1"), report_batch(1, "2")])
    everything = read_window(log_url, model=None)
    assert len(everything) == 11
    seed = read_window(log_url)
    assert len(seed) == 7 and set(seed["model"]) == {SEED_MODEL} and seed["report_features"].isna().all()
    assert (seed["place"] == SEED_EXAMPLE[0]).all()
    reports = read_window(log_url, model=REPORT_TIME_MODEL)
    assert len(reports) == 4 and set(reports["model_version"]) == {"1", "2"}
    assert set(reports["caller_role"]) == {"admin"} and set(reports["threshold"]) == {0.3}
    assert reports[list(FEATURE_NAMES)].isna().all().all()  # the seed's 28 columns stay NULL
    expected = example_row()
    for position, text in zip([0, 1, 2, 0], reports["report_features"], strict=True):
        logged = json.loads(text)
        assert list(logged) == list(REPORT_FEATURES)
        assert logged[REPORT_FEATURES[0]] == position and logged[REPORT_FEATURES[1]] is None
        rest = np.array([np.nan if logged[name] is None else logged[name] for name in REPORT_FEATURES[2:]])
        assert np.allclose(rest, expected[2:], equal_nan=True)  # NaN (missing) -> null
    # the API's monitoring reads: seed version "1" only, never mixed with the report-time "1"
    engine = create_log_engine(log_url)
    try:
        stats = prediction_stats(engine, since=before, until=None, model_version=None, bins=10, bucket="minute")
        assert stats["rows"] == 7 and [item["model_version"] for item in stats["versions"]] == ["1"]
        page = logged_predictions(engine, since=None, until=None, model_version="1", accident_id=None,
                                  before_id=None, limit=100)  # fmt: skip
        assert len(page["items"]) == 7
    finally:
        engine.dispose()


def test_each_models_grades_are_read_apart(log_url):
    """Revision 0007: realized_performance says which model a grade is of. Both models have a
    version 1: the gauges export each model's newest grade under its own `model` label (keyed by
    version alone, the newer report-time grade would hide the seed's), /monitoring/performance reads
    the seed's by default and ?model=report_time the report-time model's."""
    engine = create_log_engine(log_url)
    ensure_schema(engine, log_url)
    row = {"job_id": "job", "model_version": "1", "month": None, "rows_logged": 10, "rows_labelled": 10,
           "rows_unlabelled": 0, "label_source": "test"}  # fmt: skip
    earlier = datetime.now(UTC) - timedelta(minutes=1)
    with engine.begin() as connection:
        connection.execute(insert(realized).values(**row, computed_at=earlier, roc_auc=0.81))  # the seed's: default
        connection.execute(insert(realized).values(**row, computed_at=datetime.now(UTC), roc_auc=0.86,
                                                   model=REPORT_TIME_MODEL))  # newer  # fmt: skip
    try:
        assert sorted((r["model"], r["roc_auc"]) for r in latest_overall(engine)) == [
            (REPORT_TIME_MODEL, 0.86), (SEED_MODEL, 0.81)]  # fmt: skip
        registry = CollectorRegistry()
        registry.register(RealizedPerformanceCollector(engine, cache_seconds=0))
        exposition = generate_latest(registry).decode()
        assert 'model_realized_auc{model="seed",version="1"} 0.81' in exposition
        assert 'model_realized_auc{model="report_time",version="1"} 0.86' in exposition
        assert [(r["model"], r["roc_auc"]) for r in latest_realized(engine, None)] == [(SEED_MODEL, 0.81)]
        report_time = latest_realized(engine, "1", REPORT_TIME_MODEL)
        assert [(r["model"], r["roc_auc"]) for r in report_time] == [(REPORT_TIME_MODEL, 0.86)]
    finally:
        engine.dispose()


def test_a_0007_logs_drift_results_and_estimates_upgrade_and_each_models_are_read_apart(log_url):
    """Revision 0008: drift results and estimates say which model's traffic they are of. A 0007 log's
    results read as the seed's; after it, both models have a version 1 and the seed's readers (the
    API's gauges and routes by default, the retrain decision) never see the report-time model's
    results, which model=report_time reads; the label job grades each estimate on its own model's rows."""
    engine = log_at_revision(log_url, "0007")
    now = datetime.now(UTC)
    drift = {"computed_at": now - timedelta(minutes=2), "window_rows": 10, "model_version": "1",
             "reference_rows": 0, "feature_scores": {}, "drifted_features": [], "verdict": "no_drift",
             "method": "old"}  # fmt: skip
    estimate = {"model_version": "1", "window_rows": 10, "roc_auc": 0.7, "f1": 0.5, "precision": 0.4,
                "recall": 0.6, "positive_rate": 0.3, "predicted_positive_rate": 0.3, "threshold": 0.5,
                "method": "old"}  # fmt: skip
    start, end = now - timedelta(hours=1), now - timedelta(minutes=30)
    old_estimate = estimates.row_of(estimate, start, end, computed_at=now - timedelta(minutes=2))
    del old_estimate["model"]  # the 0007 table has no such column
    with engine.begin() as connection:  # the INSERTs name the given columns only
        connection.execute(insert(drift_results.drift_results).values(**drift))
        connection.execute(insert(estimates.estimated_performance).values(**old_estimate))
    engine.dispose()
    assert migrate(log_url) == SCHEMA_REVISION
    engine = create_log_engine(log_url)
    try:
        assert [(r["model"], r["method"]) for r in drift_results.recent(engine, 5)] == [(SEED_MODEL, "old")]
        assert [(r["model"], r["method"]) for r in estimates.recent(engine, 5)] == [(SEED_MODEL, "old")]
        # newer results of the report-time model's version 1
        drift_results.store(engine, {**drift, "computed_at": now, "method": "new", "model": REPORT_TIME_MODEL})
        estimates.store(engine, estimates.row_of({**estimate, "method": "new"}, start, end, computed_at=now,
                                                 model=REPORT_TIME_MODEL))  # fmt: skip
        assert [r["method"] for r in drift_results.recent(engine, 5)] == ["old"]
        assert [r["method"] for r in drift_results.recent(engine, 5, REPORT_TIME_MODEL)] == ["new"]
        assert [r["method"] for r in estimates.recent(engine, 5, "1")] == ["old"]
        assert [r["method"] for r in estimates.recent(engine, 5, "1", REPORT_TIME_MODEL)] == ["new"]
        assert estimates.newest_per_version(engine)["1"]["method"] == "old"
        assert estimates.newest_per_version(engine, model=REPORT_TIME_MODEL)["1"]["method"] == "new"
        drifts, _ = recent_evidence(log_url, 5)
        assert [r["method"] for r in drifts] == ["old"] and [r["method"] for r in recent_estimates(log_url, 5)] == [
            "old"
        ]
    finally:
        engine.dispose()
    # the label job grades each estimate on its own model's rows: 2 seed rows, 3 report-time rows
    write(
        log_url, [seed_batch(2, "1", start + timedelta(minutes=1)), report_batch(3, "1", start + timedelta(minutes=2))]
    )
    engine = create_log_engine(log_url)
    try:
        pending = {e["model"]: len(rows) for e, rows in estimate_windows(engine, None, None)}
        assert pending == {SEED_MODEL: 2, REPORT_TIME_MODEL: 3}
    finally:
        engine.dispose()
