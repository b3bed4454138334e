"""The models the pipeline takes through train -> evaluate -> promotion: one description each.

`train` and `evaluate` run the same functions for every model (fit, threshold on validation,
MLflow run, registration with the serving tags and a calibration set, the promotion rule of
accidents.model.promotion, `champion` / `challenger` aliases); a `ModelLine` says where that
model's rows, files and registered name are and which contract row it must score.
`params.yaml` `pipeline.models` selects the models a run trains (accidents.stage.selected).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from accidents.config import Paths
from accidents.features import ACCIDENT_ID, FEATURE_NAMES, SEED_EXAMPLE, TARGET
from accidents.model.modeling import fit_model
from accidents.report_time.features import REPORT_FEATURES, example_row
from accidents.report_time.model import fit as fit_report_time
from accidents.stage import REGISTERED_NAMES, REPORT_TIME, SEED

Fit = Callable[[dict[str, Any], np.ndarray, np.ndarray, np.ndarray, np.ndarray], Any]


@dataclass(frozen=True)
class ModelLine:
    """One model's place in the pipeline: its rows, its files and its registered name."""

    key: str  # its name in `pipeline.models` (and the `model` tag of its MLflow runs)
    registered_name: str
    feature_names: tuple[str, ...]
    example: tuple[float, ...]  # the contract row check_model scores before storing or loading it
    fit: Fit
    params_section: str  # params.yaml section holding its hyperparameters
    processed: Path  # folder of its train / val / test splits and summary.json
    split_suffix: str
    challenger: Path
    champion: Path
    train_report: Path
    metrics: Path
    test_by_month: Path
    backtest: Path  # accidents.pipeline.backtest's results (JSON; the table beside it as .md)
    validation_plots: Path
    test_plots: Path

    def split(self, name: str) -> Path:
        return self.processed / f"{name}{self.split_suffix}"

    def read_split(self, name: str) -> pd.DataFrame:
        path = self.split(name)
        if self.split_suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={ACCIDENT_ID: str})

    def xy(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Inputs in contract order as floats (what serving feeds the model), and the target."""
        return frame[list(self.feature_names)].to_numpy(dtype=float), frame[TARGET].to_numpy(dtype=int)


def seed_line(project: Paths) -> ModelLine:
    return ModelLine(
        key=SEED, registered_name=REGISTERED_NAMES[SEED], feature_names=FEATURE_NAMES, example=tuple(SEED_EXAMPLE),
        fit=fit_model, params_section="train", processed=project.processed, split_suffix=".csv",
        challenger=project.challenger, champion=project.champion, train_report=project.train_report,
        metrics=project.metrics, test_by_month=project.test_by_month, backtest=project.backtest,
        validation_plots=project.plots / "validation", test_plots=project.plots / "test",
    )  # fmt: skip


def report_time_line(project: Paths) -> ModelLine:
    files = project.report_time
    return ModelLine(
        key=REPORT_TIME, registered_name=REGISTERED_NAMES[REPORT_TIME], feature_names=REPORT_FEATURES,
        example=tuple(example_row()), fit=fit_report_time, params_section="report_time",
        processed=files.processed, split_suffix=".parquet", challenger=files.challenger, champion=files.champion,
        train_report=files.train_report, metrics=files.metrics, test_by_month=files.test_by_month,
        backtest=files.backtest, validation_plots=files.validation_plots, test_plots=files.test_plots,
    )  # fmt: skip
