"""The retrain decision (accidents.monitoring.retrain_decision): evidence, single flight and cooldown, as pure
functions on the values the monitoring DAG gathers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from accidents.config import load_params
from accidents.monitoring.retrain_decision import PipelineRun, Thresholds, decide, evidence_of

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
THRESHOLDS = Thresholds(realized_auc_drop=0.05, cooldown_days=7)
DRIFT = {"verdict": "drift", "model_version": "4", "drifted_features": ["hour", "lum"], "drifted_share": 0.21,
         "prediction_drift": 0.09, "window_rows": 5000}  # fmt: skip


def test_thresholds_come_from_params_yaml():
    params = load_params()["monitoring"]
    thresholds = Thresholds.from_params({"monitoring": params})
    assert (thresholds.realized_auc_drop, thresholds.cooldown_days) == (params["realized_auc_drop"],
                                                                         params["cooldown_days"])  # fmt: skip


def test_a_drift_verdict_of_the_champion_is_evidence_with_its_reason():
    evidence = evidence_of(DRIFT, None, "4", 0.78, THRESHOLDS)
    assert evidence == ["drift: drifted share 0.21 (hour, lum), prediction drift 0.090 on 5000 rows of version 4"]
    decision = decide(evidence, [], NOW, THRESHOLDS)
    assert decision.retrain and decision.reason.startswith("drift: ")


def test_no_drift_another_version_or_no_data_is_no_evidence():
    assert evidence_of({**DRIFT, "verdict": "no_drift"}, None, "4", 0.78, THRESHOLDS) == []
    assert evidence_of({**DRIFT, "verdict": "not_enough_data"}, None, "4", 0.78, THRESHOLDS) == []
    assert evidence_of(DRIFT, None, "5", 0.78, THRESHOLDS) == []  # a retired version's drift
    assert evidence_of(None, None, None, None, THRESHOLDS) == []
    assert not decide([], [], NOW, THRESHOLDS).retrain


def test_realized_auc_drop_counts_from_its_threshold():
    performance = {"model_version": "4", "roc_auc": 0.72}
    assert evidence_of(None, performance, "4", 0.78, THRESHOLDS)[0].startswith("performance: realized AUC 0.7200")
    assert evidence_of(None, {**performance, "roc_auc": 0.74}, "4", 0.78, THRESHOLDS) == []  # 0.04 < 0.05
    assert evidence_of(None, {**performance, "roc_auc": None}, "4", 0.78, THRESHOLDS) == []  # one class only
    assert evidence_of(None, performance, "4", None, THRESHOLDS) == []  # champion never evaluated
    both = evidence_of(DRIFT, performance, "4", 0.78, THRESHOLDS)
    assert [item.split(":")[0] for item in both] == ["drift", "performance"]


def test_never_while_a_run_is_queued_or_running():
    evidence = evidence_of(DRIFT, None, "4", 0.78, THRESHOLDS)
    for state in ("queued", "running"):
        decision = decide(evidence, [PipelineRun("manual__1", state, NOW, "manual: admin")], NOW, THRESHOLDS)
        assert not decision.retrain and "manual__1" in decision.reason and state in decision.reason


def test_cooldown_after_a_monitoring_run_only():
    evidence = evidence_of(DRIFT, None, "4", 0.78, THRESHOLDS)
    recent_drift = PipelineRun("manual__2", "success", NOW - timedelta(days=6, hours=23), "drift: ...")
    decision = decide(evidence, [recent_drift], NOW, THRESHOLDS)
    assert not decision.retrain and decision.reason.startswith("cooldown: run manual__2")
    after = PipelineRun("manual__2", "failed", NOW - timedelta(days=7, minutes=1), "performance: ...")
    assert decide(evidence, [after], NOW, THRESHOLDS).retrain
    others = [PipelineRun("manual__3", "success", NOW - timedelta(hours=1), "manual: admin"),
              PipelineRun("manual__4", "success", NOW - timedelta(hours=2), "new official data: 2022")]  # fmt: skip
    assert decide(evidence, others, NOW, THRESHOLDS).retrain  # people and new data are not rate-limited
