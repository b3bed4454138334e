"""Estimated performance before labels (accidents.monitoring.estimation, our CBPE, in .venv-monitoring):
the CLI on a logged window recovers the realized AUC and F1 from badly calibrated probabilities, reports the
calibration error, and runs without NannyML."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from accidents.features import FEATURE_NAMES, SEED_EXAMPLE
from accidents.store.prediction_log import create_log_engine, ensure_schema, predictions

pytestmark = pytest.mark.timeout(900)
REPO = Path(__file__).resolve().parents[2]
MONITORING_PYTHON = REPO / ".venv-monitoring" / "bin" / "python"
THRESHOLD = 0.3
START = datetime(2026, 11, 2, tzinfo=UTC)


def monitoring_python() -> str:
    if not MONITORING_PYTHON.exists():
        pytest.fail(f"{MONITORING_PYTHON} missing: run `make setup-monitoring`")
    return str(MONITORING_PYTHON)


def job_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}


def miscalibrated(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose true probability is score squared: far from calibrated (ECE ~0.15)."""
    rng = np.random.default_rng(seed)
    score = rng.beta(2, 2, rows)
    return score, (rng.random(rows) < score**2).astype(int)


def test_the_estimate_of_a_logged_window_matches_its_realized_performance(tmp_path):
    calibration_score, calibration_truth = miscalibrated(10000, 1)
    calibration = tmp_path / "calibration.csv"
    pd.DataFrame({"probability": calibration_score, "grav": calibration_truth}).to_csv(calibration, index=False)
    score, truth = miscalibrated(5000, 2)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine = create_log_engine(url)
    ensure_schema(engine, url)
    with engine.begin() as connection:
        connection.execute(predictions.insert(), [
            {"logged_at": START + timedelta(seconds=i), "request_id": f"r{i}", "model_version": "7",
             "model_source": "registry", "caller_role": "user", "probability": float(p),
             "predicted_class": int(p >= THRESHOLD), "threshold": THRESHOLD, "shadow": False,
             **dict(zip(FEATURE_NAMES, SEED_EXAMPLE, strict=True))}
            for i, p in enumerate(score)])  # fmt: skip
    engine.dispose()
    answer = subprocess.run(
        [monitoring_python(), "-m", "accidents.cli", "estimate", "--log-url", url, "--calibration", str(calibration),
         "--from", START.isoformat(), "--to", (START + timedelta(days=1)).isoformat(), "--rows", "0"],
        capture_output=True, text=True, env=job_env(), timeout=600, check=False,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr[-3000:]
    result = json.loads(answer.stdout.strip().splitlines()[-1])
    estimate = result["estimate"]
    assert (result["model_version"], result["window_rows"], estimate["threshold"]) == ("7", 5000, THRESHOLD)
    assert abs(estimate["roc_auc"] - roc_auc_score(truth, score)) < 0.01
    assert abs(estimate["f1"] - f1_score(truth, score >= THRESHOLD)) < 0.015
    assert abs(estimate["positive_rate"] - truth.mean()) < 0.01
    assert estimate["predicted_positive_rate"] == pytest.approx((score >= THRESHOLD).mean())
    calibration_error = estimate["calibration"]
    assert calibration_error["applied"] and calibration_error["rows"] == 10000
    assert calibration_error["ece_raw"] > 0.1 > 0.02 > calibration_error["ece_isotonic"]
    assert calibration_error["brier_isotonic"] < calibration_error["brier_raw"]
    assert estimate["method"].startswith("CBPE (NannyML 0.13.1's binary rules, own implementation)")


def test_a_bad_calibration_set_is_a_clear_error(tmp_path):
    bad = tmp_path / "calibration.csv"
    pd.DataFrame({"probability": [0.2, 0.4], "grav": [0, 0]}).to_csv(bad, index=False)
    code = ("import sys, pandas as pd; from accidents.monitoring.estimation import estimate\n"
            "estimate([0.1, 0.5], pd.read_csv(sys.argv[1]), 0.3)")  # fmt: skip
    answer = subprocess.run([monitoring_python(), "-c", code, str(bad)], capture_output=True, text=True,
                            env=job_env(), timeout=600, check=False)  # fmt: skip
    assert answer.returncode != 0 and "calibration set needs both classes" in answer.stderr


def test_the_monitoring_venv_estimates_without_nannyml():
    """Our own CBPE: NannyML (and its ~2 GB: xgboost, lightgbm, FLAML, kaleido...) stays out of the monitoring
    venv and the Airflow image; tests/monitoring/test_cbpe_matches_nannyml.py checks the numbers."""
    code = """
import json, sys
import numpy as np
from accidents.monitoring.estimation import calibration_frame, estimate
rng = np.random.default_rng(0)
score = rng.random(2000)
estimate(score[:1000], calibration_frame(score[1000:], (rng.random(1000) < score[1000:]).astype(int)), 0.5)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("nannyml", "lightgbm", "xgboost", "flaml"))))
"""
    answer = subprocess.run([monitoring_python(), "-c", code], capture_output=True, text=True, env=job_env(),
                            timeout=600, check=False)  # fmt: skip
    assert answer.returncode == 0, answer.stderr[-3000:]
    assert json.loads(answer.stdout.strip().splitlines()[-1]) == []
    locked = (REPO / "requirements" / "monitoring.txt").read_text().lower().splitlines()
    assert not {"nannyml", "xgboost", "lightgbm", "flaml"} & {line.split("==")[0] for line in locked if "==" in line}


def test_a_version_without_a_calibration_set_is_a_clear_error_in_the_monitoring_venv(tmp_path):
    """The registry path the DAG's `estimate` task takes, in the venv it runs in (no treelite there:
    the job must not import the model store), against a real MLflow registry that lacks the version."""
    code = ("import sys; from mlflow import MlflowClient\n"
            "from accidents.monitoring.estimation import download_calibration\n"
            "download_calibration(MlflowClient(tracking_uri=sys.argv[1], registry_uri=sys.argv[1]), '7')")  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    answer = subprocess.run([monitoring_python(), "-c", code, uri], capture_output=True, text=True,
                            env=job_env(), timeout=600, check=False)  # fmt: skip
    assert answer.returncode != 0
    assert "ModuleNotFoundError" not in answer.stderr, answer.stderr[-2000:]
    assert "version 7 of accidents-severity has no calibration set" in answer.stderr, answer.stderr[-2000:]
