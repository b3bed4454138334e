"""The monitoring backtest, small (`python -m accidents.monitoring.backtest` in .venv-monitoring, as
`make monitoring-backtest` runs it): a model trained on 2020 serves 2021-01..03 of the real BAAC tables, one
month gets a night-only shift; the drift job, the CBPE estimate, the label job and the retrain policy run on
each window and the reports are written. The full year's goals are measured by the make target, not here."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(1800)
REPO = Path(__file__).resolve().parents[2]
MONITORING_PYTHON = REPO / ".venv-monitoring" / "bin" / "python"


@pytest.fixture(scope="module")
def report(baac_dir, tmp_path_factory) -> dict:
    if not MONITORING_PYTHON.exists():
        pytest.fail(f"{MONITORING_PYTHON} missing: run `make setup-monitoring`")
    out = tmp_path_factory.mktemp("reports")
    env = {**os.environ, "BAAC_DATA_DIR": str(baac_dir), "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    answer = subprocess.run(
        [str(MONITORING_PYTHON), "-m", "accidents.monitoring.backtest", "--months", "2021-01", "2021-02", "2021-03",
         "--shift", "night:2021-02", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=1700, check=False,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr[-4000:]
    assert {path.name for path in out.iterdir()} == {f"monitoring-backtest.{kind}" for kind in ("json", "md", "svg")}
    assert "| 2021-02+night |" in (out / "monitoring-backtest.md").read_text()
    return json.loads((out / "monitoring-backtest.json").read_text())


def test_each_month_is_served_whole_and_graded_by_the_label_job(report):
    windows = {w["name"]: w for w in report["windows"]}
    assert list(windows) == ["2021-01", "2021-02", "2021-02+night", "2021-03"]
    for name in ("2021-01", "2021-02", "2021-03"):
        month = windows[name]
        assert month["rows"] > 2500 and month["realized_auc"] is not None and month["estimated_auc"] is not None
        assert abs(month["auc_error"]) < 0.03 and abs(month["f1_error"]) < 0.04  # the year's goals: make target
        assert 0.003 < month["realized_auc_se"] < 0.02  # Hanley-McNeil for ~3,000 accidents: about 0.008
    assert report["model"]["trained_on"] == "2020-01..2020-09" and 0.8 < report["model"]["validation_auc"] < 0.9


def test_the_injected_night_shift_is_flagged_in_its_own_month_and_the_plain_months_are_not(report):
    windows = {w["name"]: w for w in report["windows"]}
    night = windows["2021-02+night"]
    assert night["verdict"] == "drift" and {"lum", "hour"} <= set(night["drifted_features"])
    assert [windows[m]["verdict"] for m in ("2021-01", "2021-02", "2021-03")] == ["no_drift"] * 3
    assert report["goals"]["shifts_flagged"] == "1 of 1" and report["goals"]["drift_alarms_unshifted"] == 0


def test_one_drifted_window_does_not_start_a_retrain(report):
    """2 of 3 (params.yaml): the night window drifts alone, so the policy waits."""
    for window in report["windows"]:
        assert window["decision"].startswith("no retrain: no evidence"), window
