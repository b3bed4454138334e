"""Prometheus gauges of the latest drift result the drift job stored (accidents.monitoring.drift).

The API never computes drift (Evidently, pandas and scipy stay out of the serving process): at
each scrape it reads the newest row of `drift_results`, cached for a few seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from accidents.store.drift_results import VERDICTS, recent

logger = logging.getLogger(__name__)


def drift_families(row: dict[str, Any] | None) -> list[GaugeMetricFamily]:
    """The gauges of one stored result (none before the first run)."""
    if row is None:
        return []
    version = row["model_version"] or "unknown"
    labels = ["version"]
    features = GaugeMetricFamily("feature_drift_score", "Drift score per feature, latest drift run (higher: drift)",
                                 labels=["feature", "version"])  # fmt: skip
    for feature, score in sorted((row["feature_scores"] or {}).items()):
        if score is not None:
            features.add_metric([feature, version], float(score))
    drifted = GaugeMetricFamily("feature_drifted", "1 when the feature's score crossed its threshold, latest run",
                                labels=["feature", "version"])  # fmt: skip
    for feature in sorted(row["feature_scores"] or {}):
        drifted.add_metric([feature, version], 1.0 if feature in (row["drifted_features"] or []) else 0.0)
    families = [features, drifted]
    for name, column, help_text in (
        ("dataset_drift_share", "drifted_share", "Share of compared features that drifted, latest drift run"),
        ("prediction_drift_score", "prediction_drift", "Drift score of the predicted probabilities, latest run"),
        ("drift_window_rows", "window_rows", "Logged predictions in the latest drift run's window"),
        ("drift_reference_rows", "reference_rows", "Reference rows the latest drift run compared with"),
    ):
        family = GaugeMetricFamily(name, help_text, labels=labels)
        if row[column] is not None:
            family.add_metric([version], float(row[column]))
        families.append(family)
    verdict = GaugeMetricFamily("drift_verdict", "1 for the latest drift run's verdict, 0 for the others",
                                labels=["verdict", "version"])  # fmt: skip
    for name in VERDICTS:
        verdict.add_metric([name, version], 1.0 if row["verdict"] == name else 0.0)
    families.append(verdict)
    last = GaugeMetricFamily("drift_last_run_timestamp_seconds", "Unix time of the latest drift run", labels=labels)
    last.add_metric([version], _epoch(row["computed_at"]))
    families.append(last)
    return families


def _epoch(moment: datetime) -> float:
    """SQLite returns the stored UTC time without its offset."""
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


class DriftCollector(Collector):
    def __init__(self, engine: Engine, cache_seconds: float = 30.0):
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cached: dict[str, Any] | None = None
        self._read_at = -float("inf")
        self._lock = threading.Lock()

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # the registry must not call collect() at registration (the store may be slow)

    def _latest(self) -> dict[str, Any] | None:
        with self._lock:
            if time.monotonic() - self._read_at >= self.cache_seconds:
                try:
                    rows = recent(self.engine, 1)
                    self._cached = rows[0] if rows else None
                except SQLAlchemyError as error:
                    logger.warning("drift results unreadable: %s", getattr(error, "orig", error))
                self._read_at = time.monotonic()
            return self._cached

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from drift_families(self._latest())
