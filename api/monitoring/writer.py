"""The prediction log's writer: off the request path, batched, bounded, never blocking /predict.

`submit` (on the request path) appends one small record per request, arrays untouched, to a
bounded in-memory queue: a lock and a deque append, a few microseconds. A background thread
drains the queue every FLUSH_SECONDS (sooner when a batch is full), turns the records into rows
and inserts them with one SQLAlchemy Core executemany per batch. When the store is slow or down,
/predict keeps answering: a batch that cannot be written after a few attempts is dropped, rows
that do not fit in the full queue are dropped, both counted in `prediction_log_dropped_total`
and logged (one summary line per interval, not one per request). While the store is healthy
nothing is lost: the queue is large, and stop() writes what is left before the process exits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import Boolean, Float, delete
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from accidents.features import FEATURE_NAMES
from accidents.prediction_log import predictions
from api.monitoring.drops import DropReport, wait_idle

logger = logging.getLogger(__name__)

DROP_QUEUE_FULL = "queue_full"
DROP_WRITE_FAILED = "write_failed"
DROP_SHUTDOWN = "shutdown"


@dataclass(frozen=True, slots=True)
class ServedBatch:
    """What one /predict request served, as it was served: built on the request path, so cheap."""

    logged_at: datetime
    request_id: str
    model_version: str | None
    model_source: str
    caller_role: str
    threshold: float
    features: np.ndarray  # (n, 28) float64, NaN = null, as validated
    probabilities: np.ndarray
    classes: np.ndarray
    accident_ids: list[str | None] | None
    # shadow rows (api/shadow.py): the challenger's predictions above, the champion's here
    shadow: bool = False
    champion_version: str | None = None
    champion_probabilities: np.ndarray | None = None
    champion_classes: np.ndarray | None = None

    def rows(self, common: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """One parameter tuple per scored row, in InsertStatement.COLUMNS order (NaN -> NULL);
        `common`: the bound values of this batch's shared columns."""
        values = self.features.astype(object)
        values[np.isnan(self.features)] = None
        ids = self.accident_ids or [None] * len(values)
        threshold = (self.threshold,)
        if self.champion_probabilities is None:
            champion = [(self.shadow, self.champion_version, None, None)] * len(values)
        else:
            theirs = zip(self.champion_probabilities.tolist(), self.champion_classes.tolist(), strict=True)
            champion = [(self.shadow, self.champion_version, p, c) for p, c in theirs]
        return [
            (*common, accident_id, *row, p, c, *threshold, *theirs)
            for row, p, c, accident_id, theirs in zip(values.tolist(), self.probabilities.tolist(),
                                                      self.classes.tolist(), ids, champion, strict=True)
        ]  # fmt: skip

    def shared(self) -> tuple[Any, ...]:
        return (self.logged_at, self.request_id, self.model_version, self.model_source, self.caller_role)


class InsertStatement:
    """The log's INSERT compiled once for the engine's dialect, executed as one driver-level
    executemany: SQLAlchemy Core's per-row parameter processing cost ~60 us a row here (about
    8,000 rows/s); positional tuples through `exec_driver_sql` reach the goal of >= 20,000 rows/s.
    Bind processors (SQLite's datetime format) run once per batch, on the shared columns only."""

    SHARED = ("logged_at", "request_id", "model_version", "model_source", "caller_role")
    COLUMNS = (*SHARED, "accident_id", *FEATURE_NAMES, "probability", "predicted_class", "threshold",
               "shadow", "champion_version", "champion_probability", "champion_class")  # fmt: skip

    def __init__(self, engine: Engine):
        dialect = engine.dialect
        compiled = predictions.insert().compile(dialect=dialect, column_keys=list(self.COLUMNS))
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        order = list(compiled.positiontup or self.COLUMNS)
        if order != list(self.COLUMNS):
            raise RuntimeError(f"unexpected parameter order of the log's INSERT: {order}")
        processors = {
            name: predictions.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.COLUMNS
        }
        # Per-row columns get Python floats, ints, bools, str or None from rows(): a Float's `to_float`
        # or a Boolean's int conversion would return them unchanged for the drivers (sqlite3 and
        # psycopg take bools); any other conversion would be skipped, so refuse it.
        plain = (Float, Boolean)
        per_row = [name for name in self.COLUMNS[len(self.SHARED) :]
                   if processors[name] is not None and not isinstance(predictions.c[name].type, plain)]  # fmt: skip
        if per_row:
            raise RuntimeError(f"columns needing per-row conversion: {per_row}")
        self._shared = [processors[name] for name in self.SHARED]
        # PostgreSQL with psycopg 3: COPY ... FROM STDIN, one round trip for the whole batch
        # (executemany gave ~5,000 rows/s there); every other database: one executemany.
        self.copy_sql = None
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            quoted = ", ".join(dialect.identifier_preparer.quote(name) for name in self.COLUMNS)
            self.copy_sql = f"COPY {dialect.identifier_preparer.format_table(predictions)} ({quoted}) FROM STDIN"

    def shared_values(self, batch: ServedBatch) -> tuple[Any, ...]:
        return tuple(value if convert is None else convert(value)
                     for convert, value in zip(self._shared, batch.shared(), strict=True))  # fmt: skip

    def parameters(self, batches: list[ServedBatch]) -> list[Any]:
        rows = [row for batch in batches for row in batch.rows(self.shared_values(batch))]
        if self.positional or self.copy_sql is not None:
            return rows
        return [dict(zip(self.COLUMNS, row, strict=True)) for row in rows]

    def execute(self, connection: Connection, rows: list[Any]) -> None:
        if self.copy_sql is None:
            connection.exec_driver_sql(self.sql, rows)
            return
        driver = connection.connection.driver_connection  # psycopg.Connection, in this transaction
        with driver.cursor() as cursor, cursor.copy(self.copy_sql) as copy:
            for row in rows:
                copy.write_row(row)


class LogMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.rows = Counter("prediction_log_rows", "Rows written to the prediction log", registry=registry)
        self.dropped = Counter(
            "prediction_log_dropped", "Served rows the prediction log could not keep", ["reason"], registry=registry
        )
        self.queue_depth = Gauge("prediction_log_queue_depth", "Rows waiting to be written", registry=registry)
        self.write_seconds = Histogram(
            "prediction_log_write_seconds", "Time of one batch insert", registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
        )  # fmt: skip
        for reason in (DROP_QUEUE_FULL, DROP_WRITE_FAILED, DROP_SHUTDOWN):
            self.dropped.labels(reason)  # exported at 0 from the start


class PredictionLogWriter:
    def __init__(
        self,
        engine: Engine,
        metrics: LogMetrics,
        max_queue_rows: int = 100_000,
        batch_rows: int = 5_000,
        flush_seconds: float = 0.2,
        retention_days: float = 0,
        write_attempts: int = 3,
        retry_seconds: float = 0.5,
        report_seconds: float = 10.0,
    ):
        self.engine = engine
        self.metrics = metrics
        self.max_queue_rows = max_queue_rows
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.retention = timedelta(days=retention_days) if retention_days > 0 else None
        self.write_attempts = write_attempts
        self.retry_seconds = retry_seconds
        self._queue: deque[ServedBatch] = deque()
        self._queued_rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drops = DropReport(metrics.dropped, "prediction log", "prediction_log_dropped", logger, logging.ERROR,
                                 report_seconds)  # fmt: skip
        self._last_purge = 0.0
        self._insert = InsertStatement(engine)
        self._writing = False  # a taken batch is being written (flush() waits for it)
        metrics.queue_depth.set_function(lambda: self._queued_rows)

    # --- request path -----------------------------------------------------------------------

    def submit(self, batch: ServedBatch) -> bool:
        """Queue what a request served; False (rows counted as dropped) when the queue is full."""
        size = len(batch.probabilities)
        with self._lock:
            if self._queued_rows + size > self.max_queue_rows or self._stop.is_set():
                full = True
            else:
                full = False
                self._queue.append(batch)
                self._queued_rows += size
                if self._queued_rows >= self.batch_rows:
                    self._wake.set()
        if full:
            self._dropped(DROP_QUEUE_FULL, size)
        return not full

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    # --- background thread --------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (within `timeout`), then stop; rows left behind are counted."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            left = self._queued_rows
            self._queue.clear()
            self._queued_rows = 0
        if left:
            self._dropped(DROP_SHUTDOWN, left)
        self._report(force=True)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty (tests, benchmarks); False on timeout."""
        return wait_idle(self._wake, lambda: self._queued_rows == 0 and not self._writing, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self._drain()
            self._purge_old()
            self._report()
        self._drain()  # stop(): what is still queued goes in

    def _drain(self) -> None:
        while batches := self._take():
            self._write(batches)

    def _take(self) -> list[ServedBatch]:
        taken: list[ServedBatch] = []
        rows = 0
        with self._lock:
            while self._queue and rows < self.batch_rows:
                batch = self._queue.popleft()
                taken.append(batch)
                rows += len(batch.probabilities)
            self._queued_rows -= rows
            self._writing = bool(taken)
        return taken

    def _write(self, batches: list[ServedBatch]) -> None:
        try:
            rows = self._insert.parameters(batches)
        except Exception:  # a record that cannot become rows must not stop the writer
            logger.exception("prediction log: could not build rows")
            self._dropped(DROP_WRITE_FAILED, sum(len(batch.probabilities) for batch in batches))
            self._writing = False
            return
        for attempt in range(1, self.write_attempts + 1):
            started = time.perf_counter()
            try:
                with self.engine.begin() as connection:
                    self._insert.execute(connection, rows)
            except (SQLAlchemyError, OSError) as error:
                if attempt == self.write_attempts or self._stop.is_set():
                    logger.error("prediction log: %d rows not written after %d attempts: %s", len(rows), attempt,
                                 getattr(error, "orig", error))  # fmt: skip
                    self._dropped(DROP_WRITE_FAILED, len(rows))
                    break
                time.sleep(self.retry_seconds * attempt)
            else:
                self.metrics.write_seconds.observe(time.perf_counter() - started)
                self.metrics.rows.inc(len(rows))
                break
        self._writing = False

    def _purge_old(self, every_seconds: float = 3600) -> None:
        """Retention: delete rows older than PREDICTION_LOG_RETENTION_DAYS, hourly, from this thread."""
        if self.retention is None or time.monotonic() - self._last_purge < every_seconds:
            return
        self._last_purge = time.monotonic()
        cutoff = datetime.now(UTC) - self.retention
        try:
            with self.engine.begin() as connection:
                deleted = connection.execute(delete(predictions).where(predictions.c.logged_at < cutoff)).rowcount
        except (SQLAlchemyError, OSError) as error:
            logger.warning("prediction log: retention purge failed: %s", getattr(error, "orig", error))
            return
        if deleted:
            logger.info("prediction log: deleted %d rows older than %s", deleted, cutoff.isoformat())

    # --- accounting ---------------------------------------------------------------------------

    def _dropped(self, reason: str, rows: int) -> None:
        self._drops.add(reason, rows)

    def _report(self, force: bool = False) -> None:
        self._drops.report(force)
