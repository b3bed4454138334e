"""The drift job (`python -m accidents.monitoring.drift`, run in .venv-monitoring as the DAG runs it) on real
accidents: specific (a same-distribution window, small or large, raises nothing), sensitive (a
night-only stream drifts on hour and lum), not_enough_data below the minimum, results stored.

The reference is built by accidents.model.reference from the real 2020-01..2021-03 accidents (the
default split's training period) with the probabilities of the real trained champion; windows
are real 2021-07..12 accidents scored by the same model, written through the API's log writer.
The MLflow side (reference of the exact served version, report run) is covered end to end in
tests/e2e/test_monitoring_loop.py.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from accidents.config import load_params
from accidents.data.labelled import load_accidents
from accidents.features import ACCIDENT_ID, FEATURE_NAMES
from accidents.model import reference
from accidents.monitoring.drift import Settings, matched_reference
from accidents.stage import PipelineError
from accidents.store import drift_results
from accidents.store.prediction_log import create_log_engine, ensure_schema
from api.monitoring.writer import LogMetrics, PredictionLogWriter, ServedBatch

pytestmark = pytest.mark.timeout(600)
REPO = Path(__file__).resolve().parents[2]
MONITORING_PYTHON = REPO / ".venv-monitoring" / "bin" / "python"


@pytest.fixture(scope="module")
def accidents(baac_dir, champion_bundle) -> pd.DataFrame:
    frame, _ = load_accidents(date(2020, 1, 1), date(2021, 12, 31), source="official")
    frame[reference.PROBABILITY] = champion_bundle.predict_proba(frame[list(FEATURE_NAMES)].to_numpy(dtype=float))
    return frame


@pytest.fixture(scope="module")
def reference_file(accidents, tmp_path_factory) -> Path:
    training = accidents[accidents["date"] < "2021-04-01"]
    profile = reference.build(training, training[reference.PROBABILITY].to_numpy(), 30000, seed=0)
    assert len(profile) == 30000 and list(profile.columns) == list(reference.COLUMNS)
    assert profile["date"].min() >= "2020-01-01" and profile["date"].max() < "2021-04-01"
    path = tmp_path_factory.mktemp("reference") / "reference.parquet"
    profile.to_parquet(path, index=False)
    return path


def log_window(url: str, rows: pd.DataFrame) -> None:
    """Served predictions of `rows`, through the API's writer (version "1")."""
    engine = create_log_engine(url)
    ensure_schema(engine, url)
    writer = PredictionLogWriter(engine, LogMetrics(CollectorRegistry()), max_queue_rows=len(rows) + 1,
                                 batch_rows=1000, flush_seconds=0.05, retention_days=0)  # fmt: skip
    writer.start()
    probabilities = rows[reference.PROBABILITY].to_numpy()
    features, ids = rows[list(FEATURE_NAMES)].to_numpy(dtype=float), rows[ACCIDENT_ID].astype(str).tolist()
    classes = (probabilities >= 0.5).astype(np.int8)
    writer.submit(ServedBatch(datetime.now(UTC), "test", "1", "registry", "user", 0.5, features, probabilities,
                              classes, ids))  # fmt: skip
    assert writer.flush(60)
    writer.stop()
    engine.dispose()


def monitor(url: str, reference_path: Path, *args: str) -> dict:
    if not MONITORING_PYTHON.exists():
        pytest.fail(f"{MONITORING_PYTHON} missing: run `make setup-monitoring`")
    result = subprocess.run(
        [
            str(MONITORING_PYTHON),
            "-m",
            "accidents.monitoring.drift",
            "--log-url",
            url,
            "--reference",
            str(reference_path),
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[monitor] window:" in result.stderr  # progress on stderr, the result on stdout
    return json.loads(result.stdout.strip().splitlines()[-1])


def second_half_2021(accidents: pd.DataFrame) -> pd.DataFrame:
    return accidents[accidents["date"] >= "2021-07-01"]


@pytest.mark.parametrize("rows", [1000, 5000])
def test_same_distribution_windows_raise_nothing(accidents, reference_file, tmp_path, rows):
    """Unshifted 2021-07..12 traffic vs the 2020-07..12 reference rows (seasonal): no feature past
    its threshold, also at the minimum window size where sampling alone moves the raw distances."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log_window(url, second_half_2021(accidents).sample(n=rows, random_state=rows))
    result = monitor(url, reference_file)
    assert result["verdict"] == "no_drift", {key: result[key] for key in ("feature_scores", "drifted_features")}
    assert result["drifted_features"] == [] and result["window_rows"] == rows
    assert result["prediction_drift"] < 0.1
    assert set(result["feature_scores"]) == set(FEATURE_NAMES) - {"year_acc", "jour", "mois", "com"}
    assert "reference months 7,8,9,10,11,12" in result["method"]


def test_night_traffic_drifts_on_the_features_night_changes(accidents, reference_file, tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    night = second_half_2021(accidents).query("lum >= 3")
    log_window(url, night.sample(n=3000, random_state=0))
    result = monitor(url, reference_file)
    assert result["verdict"] == "drift", {key: result[key] for key in ("feature_scores", "drifted_features")}
    assert {"hour", "lum"} <= set(result["drifted_features"])
    assert result["feature_scores"]["lum"] > 0.3 and result["drifted_share"] >= 0.1
    stored = drift_results.recent(create_log_engine(url), 1)[0]  # what the API's gauges read
    assert stored["verdict"] == "drift" and stored["feature_scores"] == result["feature_scores"]
    assert stored["model_version"] == "1" and stored["report_run_id"] is None  # a file reference: no MLflow run


def test_below_the_minimum_window_there_is_no_verdict(accidents, reference_file, tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log_window(url, second_half_2021(accidents).sample(n=999, random_state=0))
    result = monitor(url, reference_file)
    assert result["verdict"] == "not_enough_data" and result["window_rows"] == 999
    assert result["feature_scores"] == {} and result["drifted_share"] is None
    assert monitor(url, reference_file, "--rows", "500")["window_rows"] == 500  # the newest 500 only


def test_the_reference_is_matched_on_the_windows_months(reference_file):
    """Seasonal comparison: the window's month mix, as many rows as the scarcest month allows; the
    whole reference when a month is missing or seasonal is off."""
    profile = pd.read_parquet(reference_file)
    window = pd.DataFrame({"mois": [7.0] * 300 + [8.0] * 100})
    matched, months = matched_reference(window, profile, Settings())
    assert months == [7, 8] and set(matched["mois"]) == {7.0, 8.0}
    shares = matched["mois"].value_counts(normalize=True)
    assert shares[7.0] == pytest.approx(0.75, abs=0.01)
    available = profile["mois"].value_counts()
    assert len(matched) == pytest.approx(min(available[7.0] / 0.75, available[8.0] / 0.25), abs=2)  # scarcest whole
    assert matched_reference(window, profile[profile["mois"] != 8], Settings())[1] == []  # month 8 missing
    assert matched_reference(window, profile, Settings(seasonal=False))[0] is profile
    with pytest.raises(PipelineError, match="outside the contract"):
        Settings.from_params({"monitoring": {"excluded_features": ["hours"]}})


def test_the_report_time_models_compared_inputs_are_its_own():
    """Its 95 inputs but the calendar and com (params.yaml), each compared as a code or a number as
    accidents.report_time.features declares; the seed's exclusions name the seed's inputs only."""
    from accidents.monitoring.drift import inputs_of
    from accidents.report_time.features import REPORT_FEATURES

    settings = Settings.from_params(load_params())
    inputs = inputs_of("report_time")
    assert settings.compared_of(inputs) == tuple(f for f in REPORT_FEATURES if f not in ("month", "weekday", "com"))
    assert {"lum", "lightest_catv", "dep"} <= inputs.codes and not {"n_users", "age_mean", "vma"} & inputs.codes
    assert settings.compared == settings.compared_of(inputs_of("seed"))  # the seed's 24, as before
    with pytest.raises(PipelineError, match="outside the contract of the report_time model"):
        Settings.from_params({"monitoring": {"report_time_excluded_features": ["mois"]}})


def test_the_window_is_the_seed_models_rows_only(tmp_path):
    """Issue #25: /v2/predict's rows (model "report_time", versions from 1 too) share the log with
    /predict's. The drift window (and the estimation job, which reads it through read_traffic) is
    the seed's: newer report-time rows neither pick the version nor join a seed version's window."""
    from accidents.monitoring.drift import read_traffic
    from accidents.report_time.features import REPORT_FEATURES, example_row
    from accidents.store.prediction_log import REPORT_TIME_MODEL, SEED_MODEL
    from tests.api.monitoring.test_served_model import report_batch, seed_batch, write

    assert len(example_row()) == len(REPORT_FEATURES)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    write(url, [seed_batch(300, "3"), report_batch(500, "1")])  # the report-time rows are the newest
    engine = create_log_engine(url)
    try:
        window, version = read_traffic(engine, Settings(), None, None, None)
        assert version == "3" and len(window) == 300 and set(window["model"]) == {SEED_MODEL}
        write(url, [seed_batch(200, "1"), report_batch(400, "1")])  # a seed "1" and a report-time "1"
        window, version = read_traffic(engine, Settings(), None, None, None)
        assert version == "1" and len(window) == 200 and set(window["model"]) == {SEED_MODEL}
        window, _ = read_traffic(engine, Settings(), None, None, "1")
        assert len(window) == 200 and window["report_features"].isna().all()
        assert REPORT_TIME_MODEL not in set(window["model"])
    finally:
        engine.dispose()
