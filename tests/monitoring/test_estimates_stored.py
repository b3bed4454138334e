"""Estimated performance stored, then graded when labels arrive, on a real SQLite file and a real
PostgreSQL server: the estimation CLI (.venv-monitoring) stores its estimate of a logged window of
real 2021 accidents (real Num_Acc) in `estimated_performance`; the label job (CLI, official 2021
tables) fills the realized AUC/F1 of exactly that window's labelled rows and the error, and a
second label job leaves it as it is."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from accidents.data.labelled import load_accidents
from accidents.features import FEATURE_NAMES, SEED_EXAMPLE, TARGET
from accidents.store import estimates
from accidents.store.prediction_log import create_log_engine, ensure_schema, predictions
from tests.support.monitoring import run_cli
from tests.support.project import REPO

pytestmark = pytest.mark.timeout(900)
MONITORING_PYTHON = REPO / ".venv-monitoring" / "bin" / "python"
THRESHOLD = 0.35
START = datetime(2026, 11, 2, tzinfo=UTC)
WINDOW_ROWS, NO_ID_ROWS, CALIBRATION_ROWS = 3000, 100, 8000


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return request.getfixturevalue("postgres").new_database("estimates")


def scores(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Probabilities that rank severe accidents higher, far from calibrated."""
    return np.clip(0.25 * truth + rng.beta(2, 5, len(truth)), 0, 1)


def served(at: datetime, version: str, probability: float, accident_id: str | None) -> dict:
    return {"logged_at": at, "request_id": "r", "model_version": version, "model_source": "registry",
            "caller_role": "user", "accident_id": accident_id, "probability": probability,
            "predicted_class": int(probability >= THRESHOLD), "threshold": THRESHOLD, "shadow": False,
            **dict(zip(FEATURE_NAMES, SEED_EXAMPLE, strict=True))}  # fmt: skip


def log_traffic(url: str, window: pd.DataFrame, probability: np.ndarray) -> None:
    """The window (version 7, with ids), rows of it with no id, and what must stay out of it: version 7
    before --from, version 6 inside the range."""
    rows = [served(START + timedelta(seconds=i), "7", float(p), acc) for i, (acc, p) in
            enumerate(zip(window["Num_Acc"], probability, strict=True))]  # fmt: skip
    rows += [served(START + timedelta(seconds=i, milliseconds=500), "7", 0.9, None) for i in range(NO_ID_ROWS)]
    rows += [served(START - timedelta(hours=1, seconds=i), "7", 0.01, acc)
             for i, acc in enumerate(window["Num_Acc"][:50])]  # fmt: skip
    rows += [served(START + timedelta(seconds=i, milliseconds=250), "6", 0.99, acc)
             for i, acc in enumerate(window["Num_Acc"][:50])]  # fmt: skip
    engine = create_log_engine(url)
    ensure_schema(engine, url)
    with engine.begin() as connection:
        connection.execute(predictions.insert(), rows)
    engine.dispose()


def stored(url: str) -> list[dict]:
    engine = create_log_engine(url)
    try:
        return estimates.recent(engine, 10)
    finally:
        engine.dispose()


def test_the_estimate_is_stored_and_the_label_job_records_its_error(log_url, tmp_path, baac_dir, monkeypatch):
    monkeypatch.setenv("BAAC_DATA_DIR", str(baac_dir))
    if not MONITORING_PYTHON.exists():
        pytest.fail(f"{MONITORING_PYTHON} missing: run `make setup-monitoring`")
    accidents, _ = load_accidents(date(2021, 1, 1), date(2021, 12, 31), "official")
    rng = np.random.default_rng(0)
    picked = accidents.sample(WINDOW_ROWS + CALIBRATION_ROWS, random_state=0).reset_index(drop=True)
    window, calibration = picked.iloc[:WINDOW_ROWS], picked.iloc[WINDOW_ROWS:]
    truth = window[TARGET].to_numpy(dtype=int)
    probability = scores(truth, rng)
    calibration_file = tmp_path / "calibration.csv"
    pd.DataFrame({"probability": scores(calibration[TARGET].to_numpy(dtype=int), rng),
                  "grav": calibration[TARGET].to_numpy(dtype=int)}).to_csv(calibration_file, index=False)  # fmt: skip
    log_traffic(log_url, window, probability)
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "BAAC_DATA_DIR": str(baac_dir)}

    answer = subprocess.run(
        [str(MONITORING_PYTHON), "-m", "accidents.cli", "estimate", "--log-url", log_url, "--calibration",
         str(calibration_file), "--model-version", "7", "--from", START.isoformat(), "--to",
         (START + timedelta(days=1)).isoformat(), "--rows", "0", "--threshold", str(THRESHOLD)],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr[-3000:]
    result = json.loads(answer.stdout.strip().splitlines()[-1])
    (row,) = stored(log_url)
    assert result["id"] == row["id"] and result["window_rows"] == row["window_rows"] == WINDOW_ROWS + NO_ID_ROWS
    for name in estimates.ESTIMATED:
        assert row[name] == pytest.approx(result["estimate"][name])
    assert row["model_version"] == "7" and row["threshold"] == THRESHOLD
    assert row["calibration_ece_raw"] == pytest.approx(result["estimate"]["calibration"]["ece_raw"])
    assert row["window_start"].replace(tzinfo=UTC) == START and row["realized_auc"] is None and row["graded_at"] is None

    def label_job() -> dict:
        run_cli("accidents.monitoring.realized", "--log-url", log_url, "--source", "official", "--no-mlflow", env=env)
        (graded,) = stored(log_url)
        return graded

    graded = label_job()
    # exactly the window's rows with an id: not version 6's, not those logged before it
    realized_auc = roc_auc_score(truth, probability)
    realized_f1 = f1_score(truth, probability >= THRESHOLD)
    assert graded["realized_rows"] == WINDOW_ROWS
    assert abs(graded["realized_auc"] - realized_auc) < 1e-9 and abs(graded["realized_f1"] - realized_f1) < 1e-9
    assert graded["auc_error"] == pytest.approx(row["roc_auc"] - realized_auc, abs=1e-6)
    assert graded["f1_error"] == pytest.approx(row["f1"] - realized_f1, abs=1e-6)
    assert abs(graded["auc_error"]) < 0.02 and graded["graded_at"] is not None  # CBPE on a covariate-stable window
    again = label_job()
    assert {k: again[k] for k in ("realized_rows", "realized_auc", "realized_f1", "auc_error")} == \
        {k: graded[k] for k in ("realized_rows", "realized_auc", "realized_f1", "auc_error")}  # fmt: skip


def test_windows_with_no_label_yet_stay_to_grade(log_url, baac_dir):
    """An estimate whose accidents have no published labels (a 2099 id) keeps NULL realized values
    and is still to grade; one outside the job's range is not considered."""
    engine = create_log_engine(log_url)
    ensure_schema(engine, log_url)
    estimate = {"model_version": "3", "window_rows": 1, "roc_auc": 0.8, "f1": 0.5, "precision": 0.4, "recall": 0.6,
                "positive_rate": 0.2, "predicted_positive_rate": 0.3, "threshold": 0.5, "method": "test",
                "calibration": {"ece_raw": 0.1, "ece_isotonic": 0.01}}  # fmt: skip
    first = estimates.store(engine, estimates.row_of(estimate, START, START + timedelta(hours=1)))
    estimates.store(engine, estimates.row_of(estimate, START - timedelta(days=30), START - timedelta(days=29)))
    assert [e["id"] for e in estimates.to_grade(engine, START - timedelta(days=1))] == [first]
    with engine.begin() as connection:
        connection.execute(predictions.insert(), [served(START, "3", 0.7, "209900000001")])
    engine.dispose()
    run_cli("accidents.monitoring.realized", "--log-url", log_url, "--source", "official", "--no-mlflow",
            "--from", (START - timedelta(days=1)).isoformat(),
            env={**os.environ, "BAAC_DATA_DIR": str(baac_dir)})  # fmt: skip
    rows = {row["id"]: row for row in stored(log_url)}
    assert rows[first]["graded_at"] is None and rows[first]["realized_auc"] is None


def test_the_retrain_decision_counts_the_stored_estimates_k_of_n(log_url):
    """The decision CLI's evidence includes the last votes_window stored estimates (oldest first): two
    estimated-AUC drops of the champion among the last three windows are evidence naming them."""
    from accidents.monitoring.retrain_decision import Thresholds, recent_estimates, stored_evidence

    engine = create_log_engine(log_url)
    ensure_schema(engine, log_url)
    base = {"model_version": "4", "window_rows": 5000, "f1": 0.5, "precision": 0.4, "recall": 0.6, "threshold": 0.3,
            "positive_rate": 0.2, "predicted_positive_rate": 0.3, "method": "test", "calibration": {}}  # fmt: skip
    ids = [estimates.store(engine, estimates.row_of({**base, "roc_auc": auc}, START + timedelta(days=day),
                                                    START + timedelta(days=day, hours=1),
                                                    computed_at=START + timedelta(days=day)))
           for day, auc in enumerate((0.70, 0.79, 0.72, 0.73))]  # fmt: skip
    engine.dispose()
    windows = recent_estimates(log_url, 3)
    assert [w["id"] for w in windows] == ids[1:]
    thresholds = Thresholds(realized_auc_drop=0.05, estimated_auc_drop=0.03, votes_needed=2, votes_window=3,
                            cooldown_days=7)  # fmt: skip
    (evidence,), drifts, months = stored_evidence(log_url, "4", 0.78, thresholds)  # what the decision CLI weighs
    assert drifts == months == []
    assert evidence.startswith("estimated performance: estimated AUC 0.03 or more below the test AUC 0.7800")
    assert f"#{ids[2]} " in evidence and f"#{ids[3]} " in evidence and f"#{ids[1]} " not in evidence
