"""A version's calibration set: its validation probabilities and labels, logged by `train` beside the
model as the MLflow artifact `calibration/calibration.parquet`.

Monitoring estimates the served version's performance before labels from it
(accidents.monitoring.estimation, CBPE: isotonic calibration fitted on this set). It lives here, not
in the estimation module, so that the `train` stage depends on this file only, not on the monitoring
and store modules the estimation job imports (tests/pipeline/test_dvc_deps.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from accidents.features import TARGET

if TYPE_CHECKING:
    import pandas as pd

PROBABILITY = "probability"
CALIBRATION_DIR = "calibration"
CALIBRATION_FILE = "calibration.parquet"
CALIBRATION_ARTIFACT = f"{CALIBRATION_DIR}/{CALIBRATION_FILE}"


def calibration_frame(probability: np.ndarray, truth: np.ndarray) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({PROBABILITY: np.asarray(probability, dtype=float), TARGET: np.asarray(truth, dtype=int)})


def log_calibration(probability: np.ndarray, truth: np.ndarray) -> str:
    """Log a version's calibration set (validation probabilities and labels) to the active MLflow run."""
    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / CALIBRATION_FILE
        calibration_frame(probability, truth).to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=CALIBRATION_DIR)
    return CALIBRATION_ARTIFACT
