"""What the API's background workers (the prediction log's writer, the shadow scorer) share: rows
dropped off the request path, counted per reason and logged once per interval (not once per
request), and the wait for an empty queue that tests and benchmarks use."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import Counter


class DropReport:
    def __init__(self, counter: Counter, what: str, field: str, logger: logging.Logger, level: int,
                 report_seconds: float = 10.0, labels: tuple[str, ...] = ()):  # fmt: skip
        self.counter = counter  # labelled by reason, then `labels` (the shadow's model)
        self.labels = labels
        self.what, self.field = what, field  # "prediction log", "prediction_log_dropped"
        self.logger, self.level = logger, level
        self.report_seconds = report_seconds
        self._lock = threading.Lock()
        self._unreported: dict[str, int] = {}
        self._detail: str | None = None
        self._last_report = time.monotonic()

    def add(self, reason: str, rows: int, detail: str | None = None) -> None:
        self.counter.labels(reason, *self.labels).inc(rows)
        with self._lock:
            self._unreported[reason] = self._unreported.get(reason, 0) + rows
            self._detail = detail or self._detail

    def report(self, force: bool = False) -> None:
        """One log line per interval with the rows dropped meanwhile (and the last error given)."""
        if not self._unreported or (not force and time.monotonic() - self._last_report < self.report_seconds):
            return
        with self._lock:
            counts, self._unreported = self._unreported, {}
            detail, self._detail = self._detail, None
        self._last_report = time.monotonic()
        summary = ", ".join(f"{n} ({reason})" for reason, n in counts.items())
        last = f"; last error: {detail}" if detail else ""
        fields = {"fields": {self.field: counts}}
        self.logger.log(self.level, "%s: dropped %s rows%s", self.what, summary, last, extra=fields)


def wait_idle(wake: threading.Event, idle: Callable[[], bool], timeout: float) -> bool:
    """Wake the worker and wait until `idle()` (its queue empty, nothing in hand); False on timeout."""
    deadline = time.monotonic() + timeout
    wake.set()
    while time.monotonic() < deadline:
        if idle():
            return True
        time.sleep(0.01)
    return False
