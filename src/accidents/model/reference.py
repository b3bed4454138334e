"""The reference profile of a model version: what monitoring compares served traffic with.

At train time (`accidents.pipeline.train`) a sample of the training rows (the model's own inputs: the
seed's 28 features, or the report-time model's 95), their accident dates and the model's predicted
probabilities on them is logged as a Parquet artifact of the version's MLflow
run (REFERENCE_ARTIFACT). The drift job (`accidents.monitoring.drift`) downloads the reference of the exact
version that served a window, so it never recomputes it and always compares with the data that
model saw; the dates let it compare a window with the reference rows of the same months.

pandas only (no scikit-learn, no Evidently): the pipeline (pandas 3) writes it, the monitoring
venv (pandas 2) reads it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from accidents.features import ACCIDENT_DATE, FEATURE_NAMES

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

REFERENCE_DIR = "reference"
REFERENCE_FILE = "reference.parquet"
REFERENCE_ARTIFACT = f"{REFERENCE_DIR}/{REFERENCE_FILE}"
PROBABILITY = "probability"
MONTH = "month"  # YYYY-MM of the accident, from its date
COLUMNS = (*FEATURE_NAMES, ACCIDENT_DATE, PROBABILITY)  # the seed's (a report-time reference: its 95 inputs)


def build(frame: pd.DataFrame, probabilities: np.ndarray, rows: int, seed: int,
          features: Sequence[str] = FEATURE_NAMES) -> pd.DataFrame:  # fmt: skip
    """A seeded random sample of `rows` training rows (0: all): the model's input `features`, the
    accident date and the probability."""
    import pandas as pd

    if len(probabilities) != len(frame):
        raise ValueError(f"{len(probabilities)} probabilities for {len(frame)} rows")
    reference = frame[list(features)].astype(float)
    reference[ACCIDENT_DATE] = (
        pd.to_datetime(frame[ACCIDENT_DATE]).dt.strftime("%Y-%m-%d") if ACCIDENT_DATE in frame else None
    )
    reference[PROBABILITY] = np.asarray(probabilities, dtype=float)
    if 0 < rows < len(reference):
        reference = reference.sample(n=rows, random_state=seed)
    return reference.sort_index().reset_index(drop=True)


def log(reference: pd.DataFrame) -> str:
    """Log the reference to the active MLflow run; its artifact path."""
    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / REFERENCE_FILE
        reference.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=REFERENCE_DIR)
    return REFERENCE_ARTIFACT


def download(client: MlflowClient, run_id: str, features: Sequence[str] = FEATURE_NAMES) -> pd.DataFrame:
    """The reference logged with a run, with the model's input `features` (a clear error when the
    run has none: trained before #13, or a report-time version trained before its drift monitoring)."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run_id, REFERENCE_ARTIFACT, folder)
        except (MlflowException, OSError) as error:
            raise LookupError(f"run {run_id} has no {REFERENCE_ARTIFACT} artifact (retrain to create it)") from error
        reference = pd.read_parquet(path)
    missing = sorted({*features, ACCIDENT_DATE, PROBABILITY} - set(reference.columns))
    if missing:
        raise LookupError(f"reference of run {run_id} lacks columns {missing}")
    return reference
