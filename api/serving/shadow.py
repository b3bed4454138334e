"""The shadow challenger: a share of live rows scored by the registry's `challenger` OFF the request path.

One `ShadowScorer` per served model: the seed's beside /predict, the report-time model's beside
/v2/predict (its registered name's own `challenger` alias, api/services.py). Each logs its rows under
its model's name and inputs (prediction_log.model, as that model's served rows are), and the
Prometheus series carry a `model` label: both registered models number their versions from 1, so
(challenger 2, champion 1) of one would otherwise add up with the other's.

/predict (or /v2/predict) answers with the champion alone, then `submit` (a few microseconds: a random draw, a lock,
a deque append) queues the sampled rows with the champion's predictions. A task on the event loop
(`start_on_loop`) scores them in batches every 50 ms with the challenger
loaded at that moment, counts agreement and positive rates per
(challenger, champion, model) for Prometheus, and writes them to the prediction log as shadow rows
(`shadow` true, the champion's prediction of the same row beside the challenger's). A challenger
that is missing, fails to load (api.serving.model_service keeps it out) or fails to score never reaches a
response: the rows are dropped and counted (`shadow_dropped_total{reason,model}`) and logged once per
interval. A full queue drops too (bounded memory), like the prediction log's writer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from accidents.model.compiled_trees import MAX_ROWS as COMPILED_MAX_ROWS
from accidents.store.prediction_log import SEED_MODEL
from api.monitoring.drops import DropReport, wait_idle
from api.monitoring.writer import ServedBatch
from api.serving.model_service import Served

logger = logging.getLogger(__name__)

DROP_QUEUE_FULL = "queue_full"
DROP_NO_CHALLENGER = "no_challenger"
DROP_SCORE_FAILED = "score_failed"
DROP_SHUTDOWN = "shutdown"
DROP_REASONS = (DROP_QUEUE_FULL, DROP_NO_CHALLENGER, DROP_SCORE_FAILED, DROP_SHUTDOWN)
# The task scores what is queued every WAKE_SECONDS, up to BATCH_ROWS rows in one call: the
# compiled trees' range (accidents.model.compiled_trees.MAX_ROWS), so one call costs about what one row
# does, and requests never wake the scorer one by one.
WAKE_SECONDS = 0.05
BATCH_ROWS = COMPILED_MAX_ROWS


@dataclass(frozen=True, slots=True)
class ShadowRequest:
    """What the champion served for the sampled rows of one request."""

    request_id: str
    caller_role: str
    rows: np.ndarray
    champion_version: str | None
    champion_probabilities: np.ndarray
    champion_classes: np.ndarray
    accident_ids: list[str | None] | None


class ShadowTotals(Collector):
    """Agreement and positive rates per (challenger, champion, model) since the process started:
    shadow_rows_total, shadow_agreement_rate, shadow_positive_rate_difference (challenger - champion).
    `model` is the prediction log's name of the shadowed model ("seed", "report_time")."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, str, str], list[int]] = {}  # rows, agreements, challenger +, champion +

    def add(self, challenger: str, champion: str, classes: np.ndarray, champion_classes: np.ndarray,
            model: str = SEED_MODEL) -> None:  # fmt: skip
        rows, agree = len(classes), int(np.sum(classes == champion_classes))
        with self._lock:
            totals = self._totals.setdefault((challenger, champion, model), [0, 0, 0, 0])
            totals[0] += rows
            totals[1] += agree
            totals[2] += int(classes.sum())
            totals[3] += int(champion_classes.sum())

    def snapshot(self) -> dict[tuple[str, str, str], list[int]]:
        with self._lock:
            return {pair: list(values) for pair, values in self._totals.items()}

    def describe(self) -> list[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        labels = ["challenger_version", "champion_version", "model"]
        rows = CounterMetricFamily("shadow_rows", "Live rows scored by the challenger in the shadow", labels=labels)
        agreement = GaugeMetricFamily("shadow_agreement_rate", "Share of shadow rows where challenger and champion "
                                      "predict the same class", labels=labels)  # fmt: skip
        difference = GaugeMetricFamily(
            "shadow_positive_rate_difference",
            "Predicted positive rate of the challenger minus the champion's, on the same shadow rows",
            labels=labels,
        )
        for pair, (count, agree, positive, champion_positive) in self.snapshot().items():
            rows.add_metric(list(pair), count)
            if count:
                agreement.add_metric(list(pair), agree / count)
                difference.add_metric(list(pair), (positive - champion_positive) / count)
        yield rows
        yield agreement
        yield difference


class ShadowMetrics:
    """The shadow's series, shared by both models' scorers; each series says which model (`model`)."""

    def __init__(self, registry: CollectorRegistry):
        self.totals = ShadowTotals()
        registry.register(self.totals)
        self.dropped = Counter("shadow_dropped", "Rows sampled for the shadow but not scored", ["reason", "model"],
                               registry=registry)  # fmt: skip
        self.checks = Counter("challenger_checks", "Challenger alias checks by outcome", ["action", "model"],
                              registry=registry)  # fmt: skip
        self.export(SEED_MODEL)

    def export(self, model: str) -> None:
        """The model's drop counters, exported at 0 from the start."""
        for reason in DROP_REASONS:
            self.dropped.labels(reason, model)

    def checked(self, action: str, model: str = SEED_MODEL) -> None:
        """One check of a challenger alias (CheckResult.action) of `model`."""
        self.checks.labels(action, model).inc()


class ShadowScorer:
    """`model` and `feature_names`: the shadowed model's name in the prediction log and its logged
    inputs (ServedBatch's; None: the seed's 28 columns)."""

    def __init__(
        self,
        challenger: Callable[[], Served | None],
        metrics: ShadowMetrics,
        log: Callable[[ServedBatch], object] | None,
        share: float,
        max_queue_rows: int = 10_000,
        report_seconds: float = 10.0,
        model: str = SEED_MODEL,
        feature_names: tuple[str, ...] | None = None,
    ):
        self._challenger = challenger
        self.metrics = metrics
        self.model, self.feature_names = model, feature_names
        metrics.export(model)
        self._log = log  # the prediction log's submit (None: logging off)
        self.share = share
        self.max_queue_rows = max_queue_rows
        self._queue: deque[ShadowRequest] = deque()
        self._queued_rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._drops = DropReport(metrics.dropped, f"shadow ({model})", "shadow_dropped", logger, logging.WARNING,
                                 report_seconds, labels=(model,))  # fmt: skip

    # --- request path -----------------------------------------------------------------------

    def submit(
        self,
        request_id: str,
        caller_role: str,
        rows: np.ndarray,
        champion_version: str | None,
        probabilities: np.ndarray,
        classes: np.ndarray,
        accident_ids: list[str | None] | None,
    ) -> None:
        """Queue the sampled share of a served request (no scoring here)."""
        if self._challenger() is None or self.share <= 0:
            return
        if self.share < 1:
            if len(rows) == 1:
                if random.random() >= self.share:  # noqa: S311 - sampling, not security
                    return
            else:
                keep = np.random.random(len(rows)) < self.share
                if not keep.any():
                    return
                rows, probabilities, classes = rows[keep], probabilities[keep], classes[keep]
                if accident_ids is not None:
                    accident_ids = [each for each, kept in zip(accident_ids, keep.tolist(), strict=True) if kept]
        item = ShadowRequest(request_id, caller_role, rows, champion_version, probabilities, classes, accident_ids)
        with self._lock:
            full = self._queued_rows + len(rows) > self.max_queue_rows or self._stop.is_set()
            if not full:
                self._queue.append(item)
                self._queued_rows += len(rows)
        if full:
            self._dropped(DROP_QUEUE_FULL, len(rows))

    # --- scoring, off the request path -------------------------------------------------------

    def start_on_loop(self) -> None:
        """The API's mode: a task on the running event loop scores what is queued every
        WAKE_SECONDS, one batched call between requests. Measured: a second Python thread doing the
        same work slowed /predict at 16 connections by 33-96 % (it contends with the event loop for
        the GIL), far more than the work itself costs. Batches above BATCH_ROWS (scikit-learn, which
        releases the GIL) go to a worker thread."""
        self._task = asyncio.get_running_loop().create_task(self._tick_forever(), name="shadow-scorer")

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            await asyncio.sleep(WAKE_SECONDS)
            try:
                while not self._stop.is_set() and (items := self._take()):
                    if sum(len(item.rows) for item in items) > BATCH_ROWS:
                        await loop.run_in_executor(None, self._score, items)
                    else:
                        self._score(items)
                    self._busy = False
                    await asyncio.sleep(0)  # let requests in between batches
            finally:
                self._busy = False
            self._report()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
        with self._lock:
            left, self._queued_rows = self._queued_rows, 0
            self._queue.clear()
        if left:
            self._dropped(DROP_SHUTDOWN, left)
        self._report(force=True)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row is scored (tests, benchmarks; from another thread than the
        scorer's); False on timeout."""
        return wait_idle(self._wake, lambda: self._queued_rows == 0 and not self._busy, timeout)

    def _take(self) -> list[ShadowRequest]:
        """Queued requests, up to BATCH_ROWS rows (at least one request): scored in one call."""
        taken: list[ShadowRequest] = []
        rows = 0
        with self._lock:
            while self._queue and (not taken or rows + len(self._queue[0].rows) <= BATCH_ROWS):
                item = self._queue.popleft()
                taken.append(item)
                rows += len(item.rows)
            self._queued_rows -= rows
            self._busy = bool(taken)
        return taken

    def _score(self, items: list[ShadowRequest]) -> None:
        served = self._challenger()  # grabbed once, like a request grabs the champion
        count = sum(len(item.rows) for item in items)
        if served is None:
            self._dropped(DROP_NO_CHALLENGER, count)
            return
        bundle = served.bundle
        rows = items[0].rows if len(items) == 1 else np.vstack([item.rows for item in items])
        try:
            probabilities = np.asarray(bundle.predict_proba(rows), dtype=float)
            if probabilities.shape != (count,) or not np.all((probabilities >= 0) & (probabilities <= 1)):
                raise ValueError(f"invalid probabilities of shape {probabilities.shape}")
        except Exception as error:  # whatever the challenger does, the shadow only counts it
            self._dropped(DROP_SCORE_FAILED, count, f"challenger {served.version}: {error!r}")
            return
        metadata = bundle.metadata
        classes = (probabilities >= metadata.threshold).astype(np.int8)
        now = datetime.now(UTC)
        start = 0
        for item in items:
            end = start + len(item.rows)
            mine, my_classes = probabilities[start:end], classes[start:end]
            self.metrics.totals.add(served.version or "unknown", item.champion_version or "unknown", my_classes,
                                    item.champion_classes, self.model)  # fmt: skip
            if self._log is not None:
                self._log(ServedBatch(
                    now, item.request_id, metadata.version, served.source, item.caller_role, metadata.threshold,
                    item.rows, mine, my_classes, item.accident_ids, shadow=True,
                    champion_version=item.champion_version, champion_probabilities=item.champion_probabilities,
                    champion_classes=item.champion_classes, model=self.model, feature_names=self.feature_names,
                ))  # fmt: skip
            start = end

    # --- accounting ---------------------------------------------------------------------------

    def _dropped(self, reason: str, rows: int, detail: str | None = None) -> None:
        self._drops.add(reason, rows, detail)

    def _report(self, force: bool = False) -> None:
        self._drops.report(force)
