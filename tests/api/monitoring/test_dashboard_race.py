"""Issue #23 item 11a: /monitoring/prediction-stats (the dashboard's summary and histograms) while a
hot swap logs the first rows of a new version between its reads. It read the per-version summary
and the histogram in two statements: a version that appeared in between had histogram rows but no
summary row, a KeyError, a 500. Driven deterministically: the first row of the new version is
written right after the stats' first statement, on the real SQLite file and a real PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, insert

from accidents.features import FEATURE_NAMES, SEED_EXAMPLE
from accidents.store.prediction_log import create_log_engine, ensure_schema, predictions
from api.monitoring.queries import prediction_stats


@pytest.fixture(params=["sqlite", "postgresql"])
def log_engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'log.db'}"
    else:
        url = request.getfixturevalue("postgres").new_database("race")
    engine = create_log_engine(url)
    ensure_schema(engine, url)
    yield engine
    engine.dispose()


def row(version: str, probability: float) -> dict[str, object]:
    return {"logged_at": datetime.now(UTC), "request_id": "race", "model_version": version, "model_source": "registry",
            "caller_role": "user", **dict(zip(FEATURE_NAMES, SEED_EXAMPLE, strict=True)),
            "probability": probability, "predicted_class": int(probability >= 0.5), "threshold": 0.5}  # fmt: skip


def test_a_version_logged_between_the_reads_is_never_half_counted(log_engine):
    with log_engine.begin() as connection:
        connection.execute(insert(predictions), [row("1", 0.2), row("1", 0.7)])
    swapped: list[str] = []

    def hot_swap_after_first_read(connection, cursor, statement, *args) -> None:
        if not swapped and statement.lstrip().upper().startswith("SELECT"):
            swapped.append(statement)
            with log_engine.begin() as other:  # the new champion's first prediction, committed now
                other.execute(insert(predictions), [row("2", 0.9)])

    event.listen(log_engine, "after_cursor_execute", hot_swap_after_first_read)
    try:
        stats = prediction_stats(log_engine, since=datetime.now(UTC) - timedelta(hours=1), until=None,
                                 model_version=None, bins=10, bucket="hour")  # fmt: skip
    finally:
        event.remove(log_engine, "after_cursor_execute", hot_swap_after_first_read)
    assert swapped, "the hot swap did not happen during the read"
    for version in stats["versions"]:
        assert sum(version["histogram"]) == version["rows"], version
    assert stats["rows"] == sum(version["rows"] for version in stats["versions"])
    assert {version["model_version"] for version in stats["versions"]} <= {"1", "2"}
    first = next(version for version in stats["versions"] if version["model_version"] == "1")
    assert (first["rows"], first["predicted_positive"]) == (2, 1)
    assert first["mean_probability"] == pytest.approx(0.45)
    assert first["histogram"] == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0]
    assert first["first_logged_at"] <= first["last_logged_at"]
