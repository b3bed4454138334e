"""Prometheus gauges of the realized performance the label job stored (accidents.monitoring.realized).

The API never computes them (no pandas or metrics code in the serving process for this): at
each scrape it reads the latest overall row per model and version from `realized_performance`,
cached for a few seconds so a scrape storm is one query. Both models are exported, each under its
`model` label ("seed" for /predict, "report_time" for /v2/predict): both number their versions
from 1, so a version alone would mix them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from accidents.store.prediction_log import realized

logger = logging.getLogger(__name__)

# metric name -> (column, help)
GAUGES = {
    "model_realized_auc": ("roc_auc", "Realized ROC AUC on labelled logged predictions (label job)"),
    "model_realized_f1": ("f1", "Realized F1 on labelled logged predictions"),
    "model_realized_precision": ("precision", "Realized precision on labelled logged predictions"),
    "model_realized_recall": ("recall", "Realized recall on labelled logged predictions"),
    "model_realized_ece": ("ece", "Expected calibration error on labelled logged predictions"),
    "model_labelled_rows": ("rows_labelled", "Logged accidents joined with a label"),
    "model_unlabelled_rows": ("rows_unlabelled", "Logged accidents with no label yet"),
}
RECENT_ROWS = 1000


def latest_overall(engine: Engine) -> list[dict[str, Any]]:
    """The newest overall (all months) result of each version of each model (a version number is
    only unique within its model: the seed's v1 and the report-time model's v1 are two models)."""
    query = (
        select(realized)
        .where(realized.c.month.is_(None), realized.c.shadow_challenger.is_(None))  # shadow pairs: shadow.py
        .order_by(realized.c.computed_at.desc(), realized.c.id.desc())
        .limit(RECENT_ROWS)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        latest.setdefault((row["model"], row["model_version"]), dict(row))
    return list(latest.values())


class RealizedPerformanceCollector(Collector):
    def __init__(self, engine: Engine, cache_seconds: float = 30.0):
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cached: list[dict[str, Any]] = []
        self._read_at = -float("inf")
        self._lock = threading.Lock()

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # the registry must not call collect() at registration (the store may be slow)

    def _results(self) -> list[dict[str, Any]]:
        with self._lock:
            if time.monotonic() - self._read_at >= self.cache_seconds:
                try:
                    self._cached = latest_overall(self.engine)
                except SQLAlchemyError as error:
                    logger.warning("realized performance unreadable: %s", getattr(error, "orig", error))
                self._read_at = time.monotonic()
            return self._cached

    def collect(self) -> Iterator[GaugeMetricFamily]:
        results = self._results()
        for name, (column, help_text) in GAUGES.items():
            family = GaugeMetricFamily(name, help_text, labels=["model", "version"])
            for row in results:
                if row[column] is not None:
                    family.add_metric([row["model"], row["model_version"]], float(row[column]))
            yield family
