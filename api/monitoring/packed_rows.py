"""The batch format the API's log writer (writer.py) pipes to the insert process (log_process.py):
both sides import it from here, so the child process needs neither the writer nor its metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class PackedRows:
    """Many served batches as a few arrays (what the API's thread builds: no per-row Python)."""

    shared: list[tuple[Any, ...]]  # per batch: InsertStatement.SHARED values, then PER_BATCH ones
    sizes: np.ndarray  # rows per batch
    accident_ids: list[str | None]  # per row
    features: np.ndarray  # (rows, 28) float64 (seed) or (rows, len(feature_names)), NaN = null
    probabilities: np.ndarray
    classes: np.ndarray
    champion_probabilities: np.ndarray  # NaN on served rows (shadow rows carry the champion's)
    champion_classes: np.ndarray  # float, NaN on served rows
    model: str = "seed"  # prediction_log.model of every row (accidents.store.prediction_log.SEED_MODEL)
    feature_names: tuple[str, ...] | None = None  # None: the seed's 28 columns; else JSON in report_features

    def __len__(self) -> int:
        return len(self.probabilities)
