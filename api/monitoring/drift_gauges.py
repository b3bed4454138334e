"""Prometheus gauges of what the monitoring jobs stored: the latest drift result (accidents.monitoring.drift)
and the estimated performance of each model version (accidents.monitoring.estimation), of each model.

The API never computes drift or estimates (Evidently, the estimator, pandas and scipy stay out of
the serving process): at each scrape it reads, per model (MONITORED: the seed's /predict traffic and
the report-time model's /v2/predict traffic), the newest row of `drift_results` and the newest
estimate of each version from `estimated_performance` (with the newest graded one, for the
estimate's error), cached for a few seconds. Every series carries `model` as well as `version`:
both registered models number their versions from 1, so the alert rules match on both.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from accidents.store.drift_results import VERDICTS, recent
from accidents.store.estimates import newest_per_version
from accidents.store.prediction_log import REPORT_TIME_MODEL, SEED_MODEL

logger = logging.getLogger(__name__)
MONITORED = (SEED_MODEL, REPORT_TIME_MODEL)  # prediction_log.model values the jobs store results of


def drift_families(rows: dict[str, dict[str, Any] | None]) -> list[GaugeMetricFamily]:
    """The gauges of each model's newest stored result (no series for a model before its first run)."""
    labels = ["model", "version"]
    features = GaugeMetricFamily("feature_drift_score", "Drift score per feature, latest drift run (higher: drift)",
                                 labels=["feature", *labels])  # fmt: skip
    drifted = GaugeMetricFamily("feature_drifted", "1 when the feature's score crossed its threshold, latest run",
                                labels=["feature", *labels])  # fmt: skip
    singles = [
        ("dataset_drift_share", "drifted_share", "Share of compared features that drifted, latest drift run"),
        ("prediction_drift_score", "prediction_drift", "Drift score of the predicted probabilities, latest run"),
        ("drift_window_rows", "window_rows", "Logged predictions in the latest drift run's window"),
        ("drift_reference_rows", "reference_rows", "Reference rows the latest drift run compared with"),
    ]
    single = {name: GaugeMetricFamily(name, help_text, labels=labels) for name, _, help_text in singles}
    verdict = GaugeMetricFamily("drift_verdict", "1 for the latest drift run's verdict, 0 for the others",
                                labels=["verdict", *labels])  # fmt: skip
    last = GaugeMetricFamily("drift_last_run_timestamp_seconds", "Unix time of the latest drift run", labels=labels)
    present = False
    for model, row in sorted(rows.items()):
        if row is None:
            continue
        present = True
        key = [model, row["model_version"] or "unknown"]
        for feature, score in sorted((row["feature_scores"] or {}).items()):
            if score is not None:
                features.add_metric([feature, *key], float(score))
        for feature in sorted(row["feature_scores"] or {}):
            drifted.add_metric([feature, *key], 1.0 if feature in (row["drifted_features"] or []) else 0.0)
        for name, column, _ in singles:
            if row[column] is not None:
                single[name].add_metric(key, float(row[column]))
        for name in VERDICTS:
            verdict.add_metric([name, *key], 1.0 if row["verdict"] == name else 0.0)
        last.add_metric(key, _epoch(row["computed_at"]))
    return [features, drifted, *single.values(), verdict, last] if present else []


def _epoch(moment: datetime) -> float:
    """SQLite returns the stored UTC time without its offset."""
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


# --- estimated performance ---------------------------------------------------------------------

# metric name -> (column of the newest estimate, help); model_estimate_auc_error: of the newest graded one
ESTIMATE_GAUGES = {
    "model_estimated_auc": ("roc_auc", "Estimated ROC AUC (CBPE) of the version's newest estimated window"),
    "model_estimated_f1": ("f1", "Estimated F1 at the version's threshold, newest estimated window"),
    "model_estimated_precision": ("precision", "Estimated precision, newest estimated window"),
    "model_estimated_recall": ("recall", "Estimated recall, newest estimated window"),
    "model_estimated_positive_rate": ("positive_rate", "Estimated share of severe accidents, newest estimated window"),
}
ESTIMATE_ERROR = "model_estimate_auc_error"


PerVersion = dict[str, dict[str, Any]]  # model version -> its newest estimate


def estimate_families(newest: dict[str, PerVersion], graded: dict[str, PerVersion]) -> list[GaugeMetricFamily]:
    """The estimate gauges, one series per model and version (none before the first estimate)."""
    families = []
    for name, (column, help_text) in ESTIMATE_GAUGES.items():
        family = GaugeMetricFamily(name, help_text, labels=["model", "version"])
        for model, rows in sorted(newest.items()):
            for version, row in sorted(rows.items()):
                family.add_metric([model, version], float(row[column]))
        families.append(family)
    error = GaugeMetricFamily(ESTIMATE_ERROR, "|estimated - realized| ROC AUC of the version's newest graded "
                              "window (label job)", labels=["model", "version"])  # fmt: skip
    for model, rows in sorted(graded.items()):
        for version, row in sorted(rows.items()):
            error.add_metric([model, version], abs(float(row["auc_error"])))
    families.append(error)
    return families


@dataclass
class Stored:
    """What one read of the store found, per model (MONITORED)."""

    drift: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    estimates: dict[str, PerVersion] = field(default_factory=dict)
    graded: dict[str, PerVersion] = field(default_factory=dict)


class DriftCollector(Collector):
    def __init__(self, engine: Engine, cache_seconds: float = 30.0):
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cached = Stored()
        self._read_at = -float("inf")
        self._lock = threading.Lock()

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # the registry must not call collect() at registration (the store may be slow)

    def _latest(self) -> Stored:
        with self._lock:
            if time.monotonic() - self._read_at >= self.cache_seconds:
                try:
                    stored = Stored()
                    for model in MONITORED:
                        rows = recent(self.engine, 1, model)
                        stored.drift[model] = rows[0] if rows else None
                        stored.estimates[model] = newest_per_version(self.engine, model=model)
                        stored.graded[model] = newest_per_version(self.engine, graded=True, model=model)
                    self._cached = stored
                except SQLAlchemyError as error:
                    logger.warning("drift results or estimates unreadable: %s", getattr(error, "orig", error))
                self._read_at = time.monotonic()
            return self._cached

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stored = self._latest()
        yield from drift_families(stored.drift)
        yield from estimate_families(stored.estimates, stored.graded)
