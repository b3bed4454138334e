"""The prediction log's store and writer on real SQLite files: schema, batching, faults, retention."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from accidents.features import FEATURE_NAMES, SEED_EXAMPLE
from accidents.store import drift_results, estimates, received_alerts  # noqa: F401  (their tables are part of the migrated schema)
from accidents.store.prediction_log import (
    MIGRATIONS,
    SCHEMA_REVISION,
    VERSION_TABLE,
    create_log_engine,
    current_revision,
    ensure_schema,
    metadata,
    predictions,
    read_window,
)
from api.monitoring.writer import DROP_QUEUE_FULL, DROP_WRITE_FAILED, LogMetrics, PredictionLogWriter, ServedBatch
from tests.support.immutable import chattr_refused

pytestmark = pytest.mark.timeout(120)


def served(rows: int, ids: bool = True, at: datetime | None = None, version: str = "7") -> ServedBatch:
    features = np.tile(np.asarray(SEED_EXAMPLE, dtype=float), (rows, 1))
    features[:, FEATURE_NAMES.index("victim_age")] = np.nan  # nullable: stored as NULL
    probabilities = np.linspace(0.1, 0.9, rows)
    accident_ids = [f"2021{index:08d}" for index in range(rows)] if ids else None
    return ServedBatch(at or datetime.now(UTC), "req", version, "registry", "user", 0.5, features, probabilities,
                       (probabilities >= 0.5).astype(np.int8), accident_ids)  # fmt: skip


@pytest.fixture
def store(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine = create_log_engine(url, busy_timeout_seconds=0.2)
    ensure_schema(engine, url)
    yield url, engine
    engine.dispose()


def counter(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_migrations_build_exactly_the_declared_tables(store):
    url, engine = store
    with engine.connect() as connection:
        assert current_revision(connection) == SCHEMA_REVISION
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, metadata) == []
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION
    ensure_schema(engine, url)  # at head: a no-op


def test_every_row_is_written_with_its_values(store):
    url, engine = store
    registry = CollectorRegistry()
    writer = PredictionLogWriter(engine, LogMetrics(registry), batch_rows=700, flush_seconds=0.05)
    writer.start()
    sizes = [1, 3, 1000, 1, 48, 999, 2] * 20
    for size in sizes:
        assert writer.submit(served(size, ids=size != 3))
    assert writer.flush(60)
    writer.stop()
    total = sum(sizes)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(predictions)) == total
    frame = read_window(url)
    assert len(frame) == total and counter(registry, "prediction_log_rows_total") == total
    assert frame["victim_age"].isna().all() and (frame["place"] == SEED_EXAMPLE[0]).all()
    assert frame["accident_id"].isna().sum() == 3 * 20
    assert set(frame["model_version"]) == {"7"} and set(frame["caller_role"]) == {"user"}
    first = frame.iloc[:1000]
    assert np.allclose(first["probability"].to_numpy()[:1], [0.1])
    assert frame["logged_at"].dt.tz is not None


def test_full_queue_drops_and_counts(store):
    _, engine = store
    registry = CollectorRegistry()
    writer = PredictionLogWriter(engine, LogMetrics(registry), max_queue_rows=10)  # not started: nothing drains
    assert writer.submit(served(5)) and writer.submit(served(5))
    assert not writer.submit(served(5))
    assert counter(registry, "prediction_log_dropped_total", reason=DROP_QUEUE_FULL) == 5
    assert registry.get_sample_value("prediction_log_queue_depth") == 10


def test_locked_store_drops_counted_then_recovers(store, tmp_path):
    url, engine = store
    registry = CollectorRegistry()
    writer = PredictionLogWriter(engine, LogMetrics(registry), flush_seconds=0.05, write_attempts=2,
                                 retry_seconds=0.05)  # fmt: skip
    writer.start()
    locker = sqlite3.connect(tmp_path / "log.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another writer holds the lock: every insert times out
    try:
        started = time.monotonic()
        for _ in range(20):
            writer.submit(served(10))
        assert time.monotonic() - started < 1.0  # submitting never waits for the store
        deadline = time.monotonic() + 30
        while counter(registry, "prediction_log_dropped_total", reason=DROP_WRITE_FAILED) < 200:
            assert time.monotonic() < deadline, "rows neither written nor counted as dropped"
            time.sleep(0.05)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    for _ in range(5):
        writer.submit(served(10))
    assert writer.flush(30)
    writer.stop()
    assert counter(registry, "prediction_log_rows_total") == 50
    assert len(read_window(url)) == 50


def test_retention_deletes_old_rows_only(store):
    url, engine = store
    writer = PredictionLogWriter(engine, LogMetrics(CollectorRegistry()), retention_days=30, flush_seconds=0.05)
    writer.start()
    writer.submit(served(4, at=datetime.now(UTC) - timedelta(days=31)))
    writer.submit(served(2))
    assert writer.flush(30)
    writer._purge_old(every_seconds=0)
    writer.stop()
    kept = read_window(url)
    assert len(kept) == 2
    recent = read_window(url, since=datetime.now(UTC) - timedelta(hours=1), model_version="7")
    assert len(recent) == 2 and read_window(url, model_version="8").empty


def test_read_only_store_drops_counted_then_recovers(store, tmp_path):
    """The log's database and WAL files made immutable (chattr +i: even root cannot write them), then
    writable again. Not the -shm file: SQLite maps it into memory, and a write to the mapping of an
    immutable file kills the process with SIGBUS (seen here), which no application code can catch."""
    url, engine = store
    registry = CollectorRegistry()
    writer = PredictionLogWriter(engine, LogMetrics(registry), flush_seconds=0.05, write_attempts=2,
                                 retry_seconds=0.05)  # fmt: skip
    writer.start()
    writer.submit(served(3))
    assert writer.flush(30)  # the WAL and shared-memory files exist now
    files = [str(tmp_path / "log.db"), str(tmp_path / "log.db-wal")]
    chattr = subprocess.run(["chattr", "+i", *files, str(tmp_path)], capture_output=True, text=True)
    if chattr.returncode != 0:
        pytest.skip(chattr_refused(chattr))
    try:
        for _ in range(10):
            writer.submit(served(10))
        deadline = time.monotonic() + 30
        while counter(registry, "prediction_log_dropped_total", reason=DROP_WRITE_FAILED) < 100:
            assert time.monotonic() < deadline, "rows neither written nor counted as dropped"
            time.sleep(0.05)
    finally:
        subprocess.run(["chattr", "-i", *files, str(tmp_path)], check=True)
    writer.submit(served(7))
    assert writer.flush(30)
    writer.stop()
    assert counter(registry, "prediction_log_rows_total") == 10
    assert len(read_window(url)) == 10


def test_killed_insert_process_is_restarted_and_nothing_is_lost(store):
    """The insert process (api/monitoring/log_process.py) killed between writes: the next write
    finds its pipe broken, starts a new one and writes the batch on a retry."""
    url, engine = store
    registry = CollectorRegistry()
    writer = PredictionLogWriter(engine, LogMetrics(registry), flush_seconds=0.05, retry_seconds=0.05)
    writer.start()
    writer.submit(served(5))
    assert writer.flush(30)
    first = writer._inserter.process
    assert first is not None and first.poll() is None
    assert url.removeprefix("sqlite:///") not in " ".join(map(str, first.args))  # a URL may hold a password
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    writer.submit(served(7))
    assert writer.flush(30)
    second = writer._inserter.process
    assert second is not None and second.pid != first.pid
    writer.stop()
    assert second.poll() is not None  # stop() ends it
    assert counter(registry, "prediction_log_rows_total") == 12
    assert counter(registry, "prediction_log_dropped_total", reason=DROP_WRITE_FAILED) == 0
    assert len(read_window(url)) == 12


def test_insert_process_ends_with_the_api_process(store, tmp_path):
    """A process holding a writer killed with SIGKILL (no stop()): its insert process sees its
    pipe close and exits instead of living on as an orphan."""
    url, _ = store
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})
from prometheus_client import CollectorRegistry
from accidents.store.prediction_log import create_log_engine
from api.monitoring.writer import LogMetrics, PredictionLogWriter
from tests.api.monitoring.test_log_writer import served
writer = PredictionLogWriter(create_log_engine({url!r}), LogMetrics(CollectorRegistry()), flush_seconds=0.05)
writer.start()
writer.submit(served(3))
assert writer.flush(30)
print(writer._inserter.process.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr
    child = int(result.stdout.strip())
    deadline = time.monotonic() + 10
    while process_alive(child):
        assert time.monotonic() < deadline, f"insert process {child} outlived the process that started it"
        time.sleep(0.05)
    assert len(read_window(url)) == 3


def process_alive(pid: int) -> bool:
    """Running, not exited (an orphan's exit may leave a zombie until init reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_rows_are_stored_where_pipes_cannot_be_resized(store, monkeypatch):
    """macOS has no fcntl.F_SETPIPE_SZ (Linux only): the writer keeps the default pipe size and
    writes every row (the AttributeError used to kill its thread, so every row was dropped)."""
    import fcntl

    monkeypatch.delattr(fcntl, "F_SETPIPE_SZ")
    _, engine = store
    registry = CollectorRegistry()
    writer = PredictionLogWriter(engine, LogMetrics(registry), flush_seconds=0.05)
    writer.start()
    for size in (1, 1000, 3):
        assert writer.submit(served(size))
    assert writer.flush(30)
    writer.stop()
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(predictions)) == 1004
    assert counter(registry, "prediction_log_rows_total") == 1004
