"""The prediction log's writer: off the request path, batched, bounded, never blocking /predict.

`submit` (on the request path) appends one small record per request, arrays untouched, to a
bounded in-memory queue: a lock and a deque append, a few microseconds. A background thread
drains the queue every FLUSH_SECONDS (sooner when a batch is full), packs the records into a few
arrays and pipes them to the insert process (api/monitoring/log_process.py), which turns them
into rows and inserts them, one transaction per batch: per-row work holds no GIL of the API's.
When the store is slow or down (or the insert process dies: it is restarted),
/predict keeps answering: a batch that cannot be written after a few attempts is dropped, rows
that do not fit in the full queue are dropped, both counted in `prediction_log_dropped_total`
and logged (one summary line per interval, not one per request). While the store is healthy
nothing is lost: the queue is large, and stop() writes what is left before the process exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from accidents.store.prediction_log import SEED_MODEL, predictions
from api.monitoring.drops import DropReport, wait_idle
from api.monitoring.packed_rows import PackedRows

logger = logging.getLogger(__name__)

DROP_QUEUE_FULL = "queue_full"
DROP_WRITE_FAILED = "write_failed"
DROP_SHUTDOWN = "shutdown"
PIPE_BYTES = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size; a 5,000-row batch packs to ~1.2 MB


@dataclass(frozen=True, slots=True)
class ServedBatch:
    """What one /predict or /v2/predict request served, as it was served: built on the request
    path, so cheap. `model` says which (prediction_log.model); the seed's features go to its 28
    columns, any other model's (`feature_names`, its inputs in order) to report_features."""

    logged_at: datetime
    request_id: str
    model_version: str | None
    model_source: str
    caller_role: str
    threshold: float
    features: np.ndarray  # (n, 28) float64 for the seed, (n, len(feature_names)) otherwise; NaN = null
    probabilities: np.ndarray
    classes: np.ndarray
    accident_ids: list[str | None] | None
    # shadow rows (api/serving/shadow.py): the challenger's predictions above, the champion's here
    shadow: bool = False
    champion_version: str | None = None
    champion_probabilities: np.ndarray | None = None
    champion_classes: np.ndarray | None = None
    model: str = SEED_MODEL
    feature_names: tuple[str, ...] | None = None  # None: the seed's FEATURE_NAMES (its own columns)

    def shared(self) -> tuple[Any, ...]:
        """InsertStatement.SHARED values, then its PER_BATCH ones."""
        return (self.logged_at, self.request_id, self.model_version, self.model_source, self.caller_role,
                self.threshold, self.shadow, self.champion_version, self.model)  # fmt: skip


def pack_all(batches: list[ServedBatch]) -> list[PackedRows]:
    """The batches packed per model (one PackedRows per model and feature list, in order of first
    appearance): the seed's rows and the report-time model's have different inputs."""
    groups: dict[tuple[str, tuple[str, ...] | None], list[ServedBatch]] = {}
    for batch in batches:
        groups.setdefault((batch.model, batch.feature_names), []).append(batch)
    return [pack(group) for group in groups.values()]


def pack(batches: list[ServedBatch]) -> PackedRows:
    """The batches (of one model and feature list) as a few arrays: whole-array numpy work and one
    small tuple per batch."""
    nothing = [np.full(len(batch.probabilities), np.nan) for batch in batches]
    champion_probabilities = [
        none if batch.champion_probabilities is None else batch.champion_probabilities
        for batch, none in zip(batches, nothing, strict=True)
    ]
    champion_classes = [
        none if batch.champion_classes is None else batch.champion_classes.astype(float)
        for batch, none in zip(batches, nothing, strict=True)
    ]
    return PackedRows(
        shared=[batch.shared() for batch in batches],
        sizes=np.array([len(batch.probabilities) for batch in batches], dtype=np.int64),
        accident_ids=[
            accident_id
            for batch in batches
            for accident_id in (batch.accident_ids or [None] * len(batch.probabilities))
        ],
        features=np.concatenate([batch.features for batch in batches]),
        probabilities=np.concatenate([batch.probabilities for batch in batches]),
        classes=np.concatenate([batch.classes for batch in batches]),
        champion_probabilities=np.concatenate(champion_probabilities),
        champion_classes=np.concatenate(champion_classes),
        model=batches[0].model,
        feature_names=batches[0].feature_names,
    )


class InsertError(Exception):
    """A write the insert process did not make; `retry`: worth another attempt."""

    def __init__(self, message: str, retry: bool = True):
        super().__init__(message)
        self.retry = retry


class InsertProcess:
    """The insert process (api/monitoring/log_process.py), started on first use and again after
    it died. Used by the writer's thread only."""

    def __init__(self, url: str, busy_timeout_seconds: float, reply_timeout_seconds: float):
        self.url = url
        self.busy_timeout_seconds = busy_timeout_seconds
        self.reply_timeout_seconds = reply_timeout_seconds
        self.process: subprocess.Popen | None = None
        self._requests: Connection | None = None
        self._replies: Connection | None = None

    def insert(self, payload: bytes) -> int:
        """Rows written; InsertError when they were not (the transaction was rolled back)."""
        try:
            if self.process is None:
                self._start()
            self._requests.send_bytes(payload)
            if not self._replies.poll(self.reply_timeout_seconds):
                raise TimeoutError(f"no answer within {self.reply_timeout_seconds:.0f} s")
            status, value = self._replies.recv()
        except (OSError, EOFError) as error:  # did not start, died or hung: a new one on the next attempt
            exit_code = self.stop(timeout=1.0)
            lost = f"insert process lost ({type(error).__name__}: {error}; exit code {exit_code})"
            raise InsertError(lost) from None
        if status != "ok":
            raise InsertError(value, retry=status == "error")
        return value

    def _start(self) -> None:
        theirs_read, ours_write = os.pipe()
        ours_read, theirs_write = os.pipe()
        # a whole batch in one write (each write hands the GIL over); Linux only: elsewhere (macOS)
        # the default pipe size only means more, smaller writes
        resize = getattr(fcntl, "F_SETPIPE_SZ", None)
        if resize is not None:
            with contextlib.suppress(OSError):
                fcntl.fcntl(ours_write, resize, PIPE_BYTES)
        package_root = Path(__file__).resolve().parents[2]  # where `api` is importable from
        path = os.pathsep.join(filter(None, [str(package_root), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api.monitoring.log_process", str(theirs_read), str(theirs_write)],
                pass_fds=(theirs_read, theirs_write), env=env, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            os.close(theirs_read)
            os.close(theirs_write)
        self._requests = Connection(ours_write, readable=False)
        self._replies = Connection(ours_read, writable=False)
        # the database URL may hold a password: on the pipe, never in the command line (ps shows it)
        self._requests.send((self.url, self.busy_timeout_seconds))
        logger.info("prediction log: insert process started (pid %d)", self.process.pid)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Close its pipe (it exits after the write in progress); kill it after `timeout`."""
        for pipe in (self._requests, self._replies):
            if pipe is not None:
                pipe.close()
        self._requests = self._replies = None
        process, self.process = self.process, None
        if process is None:
            return None
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


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
        busy_timeout_seconds: float = 1.0,
        reply_timeout_seconds: float = 120.0,
    ):
        """`engine`: the log's (retention runs here; the insert process opens the same URL with
        `busy_timeout_seconds`); a write unanswered for `reply_timeout_seconds` counts as failed."""
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
        url = engine.url.render_as_string(hide_password=False)
        self._inserter = InsertProcess(url, busy_timeout_seconds, reply_timeout_seconds)
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
        self._inserter.stop()
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
        rows = sum(len(batch.probabilities) for batch in batches)
        try:
            payload = pickle.dumps(pack_all(batches), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # a record that cannot be packed must not stop the writer
            logger.exception("prediction log: could not pack rows")
            self._dropped(DROP_WRITE_FAILED, rows)
            self._writing = False
            return
        for attempt in range(1, self.write_attempts + 1):
            started = time.perf_counter()
            try:
                written = self._inserter.insert(payload)
            except InsertError as error:
                if not error.retry or attempt == self.write_attempts or self._stop.is_set():
                    logger.error("prediction log: %d rows not written after %d attempts: %s", rows, attempt, error)
                    self._dropped(DROP_WRITE_FAILED, rows)
                    break
                time.sleep(self.retry_seconds * attempt)
            else:
                self.metrics.write_seconds.observe(time.perf_counter() - started)
                self.metrics.rows.inc(written)
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
