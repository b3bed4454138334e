"""The prediction log as an API service: its engine, writer and gauges, started and stopped with
the app. Built from the settings by the lifespan; `record` is what /predict and /v2/predict call
(the latter with model="report_time" and its feature names)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from accidents.store.prediction_log import SEED_MODEL, create_log_engine, ensure_schema
from api.monitoring.drift_gauges import DriftCollector
from api.monitoring.gauges import RealizedPerformanceCollector
from api.monitoring.writer import LogMetrics, PredictionLogWriter, ServedBatch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogOptions:
    enabled: bool
    url: str
    queue_rows: int
    batch_rows: int
    flush_seconds: float
    retention_days: float
    busy_timeout_seconds: float = 1.0  # a locked log waits this long per attempt, off the request path
    gauges_cache_seconds: float = 30.0


class PredictionLog:
    def __init__(self, options: LogOptions, metrics: LogMetrics, registry: CollectorRegistry):
        self.options = options
        self.metrics = metrics  # created with the app's metrics: the same counters across restarts
        self.registry = registry
        self.engine: Engine | None = None
        self.writer: PredictionLogWriter | None = None
        self._gauges: RealizedPerformanceCollector | None = None
        self._drift_gauges: DriftCollector | None = None

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def start(self) -> None:
        """Open the store and migrate it (also when logging is off: the gauges and the read route
        still serve what is stored), then start the writer when logging is on."""
        options = self.options
        self.engine = create_log_engine(options.url, options.busy_timeout_seconds)
        ensure_schema(self.engine, options.url)
        self._gauges = RealizedPerformanceCollector(self.engine, options.gauges_cache_seconds)
        self.registry.register(self._gauges)
        self._drift_gauges = DriftCollector(self.engine, options.gauges_cache_seconds)
        self.registry.register(self._drift_gauges)
        if options.enabled:
            self.writer = PredictionLogWriter(
                self.engine,
                self.metrics,
                max_queue_rows=options.queue_rows,
                batch_rows=options.batch_rows,
                flush_seconds=options.flush_seconds,
                retention_days=options.retention_days,
                busy_timeout_seconds=options.busy_timeout_seconds,
            )
            self.writer.start()
        logger.info("prediction log %s", "on" if options.enabled else "off (PREDICTION_LOG_ENABLED=false)")

    def stop(self) -> None:
        if self.writer is not None:
            self.writer.stop()
        for gauges in (self._gauges, self._drift_gauges):
            if gauges is not None:
                self.registry.unregister(gauges)
        if self.engine is not None:
            self.engine.dispose()

    def record(
        self,
        request_id: str,
        model_version: str | None,
        model_source: str,
        caller_role: str,
        threshold: float,
        features: np.ndarray,
        probabilities: np.ndarray,
        classes: np.ndarray,
        accident_ids: list[str | None] | None,
        model: str = SEED_MODEL,
        feature_names: tuple[str, ...] | None = None,
    ) -> None:
        """Queue what one request served (no I/O; a full queue drops and counts). `model`: which
        model served it (prediction_log.model); `feature_names`: its inputs' names when they are
        not the seed's 28 columns (stored as JSON in report_features)."""
        writer = self.writer
        if writer is None:
            return
        writer.submit(
            ServedBatch(datetime.now(UTC), request_id, model_version, model_source, caller_role, threshold,
                        features, probabilities, classes, accident_ids, model=model, feature_names=feature_names)
        )  # fmt: skip
