"""The retrain decision (accidents.monitoring.retrain_decision): k-of-n evidence, single flight and cooldown, as
pure functions on the values the monitoring DAG gathers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from accidents.config import load_params
from accidents.monitoring.retrain_decision import PipelineRun, Thresholds, decide, evidence_of, recent_evidence
from accidents.store import drift_results
from accidents.store.prediction_log import create_log_engine, ensure_schema, realized

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
THRESHOLDS = Thresholds(realized_auc_drop=0.05, estimated_auc_drop=0.03, votes_needed=2, votes_window=3,
                        cooldown_days=7)  # fmt: skip
ONE_OF_ONE = Thresholds(realized_auc_drop=0.05, votes_needed=1, votes_window=1, cooldown_days=7)
DRIFT = {"verdict": "drift", "model_version": "4", "drifted_features": ["hour", "lum"], "drifted_share": 0.21,
         "prediction_drift": 0.09, "window_rows": 5000, "id": 12, "window_start": "2026-12-01",
         "window_end": "2026-12-02"}  # fmt: skip
CALM = {**DRIFT, "verdict": "no_drift", "drifted_features": [], "drifted_share": 0.0, "id": 11}


def drift_windows(*verdicts: str) -> list[dict]:
    return [{**(DRIFT if v == "drift" else CALM), "id": i, "verdict": v} for i, v in enumerate(verdicts, 1)]


def test_thresholds_come_from_params_yaml():
    params = load_params()["monitoring"]
    thresholds = Thresholds.from_params({"monitoring": params})
    for name in ("realized_auc_drop", "estimated_auc_drop", "votes_needed", "votes_window", "cooldown_days"):
        assert getattr(thresholds, name) == params[name]


def test_drift_in_k_of_the_last_n_windows_is_evidence_naming_the_windows_that_voted():
    evidence = evidence_of(drift_windows("drift", "no_drift", "drift"), [], "4", 0.78, THRESHOLDS)
    assert evidence == ["drift: 2 of the last 3 windows of version 4 drifted (#1 2026-12-01..2026-12-02: share 0.21 "
                        "(hour, lum), prediction drift 0.090, 5000 rows; #3 2026-12-01..2026-12-02: share 0.21 "
                        "(hour, lum), prediction drift 0.090, 5000 rows)"]  # fmt: skip
    decision = decide(evidence, [], NOW, THRESHOLDS)
    assert decision.retrain and decision.reason.startswith("drift: 2 of the last 3")


def test_one_drifted_window_is_not_evidence_nor_votes_older_than_n():
    assert evidence_of(drift_windows("no_drift", "no_drift", "drift"), [], "4", 0.78, THRESHOLDS) == []
    assert (
        evidence_of(drift_windows("drift", "drift", "no_drift", "no_drift", "drift"), [], "4", 0.78, THRESHOLDS) == []
    )
    decision = decide([], [], NOW, THRESHOLDS)
    assert not decision.retrain and "2 of the last 3 windows" in decision.reason


def test_one_of_one_keeps_the_single_window_rule():
    assert evidence_of(drift_windows("drift"), [], "4", 0.78, ONE_OF_ONE)[0].startswith("drift: 1 of the last 1")


def test_no_drift_another_version_or_no_data_is_no_evidence():
    assert evidence_of(drift_windows("not_enough_data", "not_enough_data"), [], "4", 0.78, THRESHOLDS) == []
    assert evidence_of(drift_windows("drift", "drift"), [], "5", 0.78, THRESHOLDS) == []  # a retired version's drift
    assert evidence_of([], [], None, None, THRESHOLDS) == []
    # not_enough_data windows neither vote nor push votes out of the last n
    windows = drift_windows("drift", "not_enough_data", "not_enough_data", "drift")
    assert evidence_of(windows, [], "4", 0.78, THRESHOLDS)[0].startswith("drift: 2 of the last 2")


def test_estimated_auc_drop_in_k_of_n_windows():
    estimates = [{"model_version": "4", "name": f"week {i}", "roc_auc": auc} for i, auc in
                 enumerate((0.74, 0.76, 0.749), 1)]  # fmt: skip
    evidence = evidence_of([], [], "4", 0.78, THRESHOLDS, estimates)
    assert evidence == ["estimated performance: estimated AUC 0.03 or more below the test AUC 0.7800 of version 4 "
                        "in 2 of the last 3 windows (week 1: 0.7400; week 3: 0.7490)"]  # fmt: skip
    assert evidence_of([], [], "4", 0.78, THRESHOLDS, estimates[1:2] + [estimates[2]] * 0) == []
    assert evidence_of([], [], "4", None, THRESHOLDS, estimates) == []  # champion never evaluated


def test_realized_auc_drop_counts_per_month_from_its_threshold():
    months = [{"model_version": "4", "month": m, "roc_auc": auc} for m, auc in
              (("2021-01", 0.72), ("2021-02", 0.74), ("2021-03", 0.73))]  # fmt: skip
    evidence = evidence_of([], months, "4", 0.78, THRESHOLDS)
    assert (
        evidence[0].startswith("performance: realized AUC 0.05 or more below")
        and "(2021-01: 0.7200; 2021-03" in evidence[0]
    )
    assert evidence_of([], months[:2], "4", 0.78, THRESHOLDS) == []  # 0.04 < 0.05 in 2021-02: one vote
    assert evidence_of([], [{**m, "roc_auc": None} for m in months], "4", 0.78, THRESHOLDS) == []  # one class only
    both = evidence_of(drift_windows("drift", "drift"), months, "4", 0.78, THRESHOLDS)
    assert [item.split(":")[0] for item in both] == ["drift", "performance"]


def test_never_while_a_run_is_queued_or_running():
    evidence = evidence_of(drift_windows("drift", "drift"), [], "4", 0.78, THRESHOLDS)
    for state in ("queued", "running"):
        decision = decide(evidence, [PipelineRun("manual__1", state, NOW, "manual: admin")], NOW, THRESHOLDS)
        assert not decision.retrain and "manual__1" in decision.reason and state in decision.reason


def test_cooldown_after_a_monitoring_run_only():
    evidence = evidence_of(drift_windows("drift", "drift"), [], "4", 0.78, THRESHOLDS)
    recent_drift = PipelineRun("manual__2", "success", NOW - timedelta(days=6, hours=23), "drift: ...")
    decision = decide(evidence, [recent_drift], NOW, THRESHOLDS)
    assert not decision.retrain and decision.reason.startswith("cooldown: run manual__2")
    estimated = PipelineRun("manual__5", "success", NOW - timedelta(days=1), "estimated performance: ...")
    assert not decide(evidence, [estimated], NOW, THRESHOLDS).retrain
    after = PipelineRun("manual__2", "failed", NOW - timedelta(days=7, minutes=1), "performance: ...")
    assert decide(evidence, [after], NOW, THRESHOLDS).retrain
    others = [PipelineRun("manual__3", "success", NOW - timedelta(hours=1), "manual: admin"),
              PipelineRun("manual__4", "success", NOW - timedelta(hours=2), "new official data: 2022")]  # fmt: skip
    assert decide(evidence, others, NOW, THRESHOLDS).retrain  # people and new data are not rate-limited


def test_the_cli_gathers_the_last_n_drift_results_and_the_newest_label_jobs_months(tmp_path):
    """recent_evidence on a real store: drift results oldest first (the newest votes_window), and only the
    per-month rows of the newest label job (an older job's months, overall rows and shadow rows left out)."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine = create_log_engine(url)
    ensure_schema(engine, url)
    for number, verdict in enumerate(("drift", "no_drift", "drift", "drift")):
        drift_results.store(engine, {**DRIFT, "id": None, "verdict": verdict, "window_start": None, "window_end": None,
                                     "computed_at": NOW + timedelta(hours=number), "reference_rows": 30000,
                                     "feature_scores": {}, "report_run_id": None, "method": "test"})  # fmt: skip
    rows = [("old", "2021-01", 0.60, None, 0), ("new", "2021-02", 0.72, None, 1), ("new", "2021-03", 0.71, None, 1),
            ("new", None, 0.715, None, 1), ("new", None, 0.70, "5", 1)]  # fmt: skip
    with engine.begin() as connection:
        connection.execute(realized.insert(), [
            {"computed_at": NOW + timedelta(days=day), "job_id": job, "model_version": "4", "month": month,
             "roc_auc": auc, "rows_logged": 10, "rows_labelled": 10, "rows_unlabelled": 0, "label_source": "test",
             "shadow_challenger": challenger} for job, month, auc, challenger, day in rows])  # fmt: skip
    engine.dispose()
    drifts, months = recent_evidence(url, 3)
    assert [d["verdict"] for d in drifts] == ["no_drift", "drift", "drift"]
    assert [(m["month"], m["roc_auc"]) for m in months] == [("2021-02", 0.72), ("2021-03", 0.71)]
    evidence = evidence_of(drifts, months, "4", 0.78, THRESHOLDS)
    assert [item.split(":")[0] for item in evidence] == ["drift", "performance"]


def test_each_models_evidence_is_gathered_apart_and_named(tmp_path):
    """Issue #25: the report-time model's drift results and label-job months (its version "4" as the
    seed's) are its evidence, named as its; the seed's evidence never counts them, nor theirs the seed's."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine = create_log_engine(url)
    ensure_schema(engine, url)
    for number, (model, verdict) in enumerate([("seed", "no_drift"), ("report_time", "drift"), ("seed", "no_drift"),
                                               ("report_time", "drift"), ("seed", "no_drift")]):  # fmt: skip
        drift_results.store(engine, {**DRIFT, "id": None, "verdict": verdict, "window_start": None, "window_end": None,
                                     "computed_at": NOW + timedelta(hours=number), "reference_rows": 30000,
                                     "feature_scores": {}, "report_run_id": None, "method": "test",
                                     "model": model})  # fmt: skip
    rows = [("seed", "2021-02", 0.77), ("report_time", "2021-02", 0.70), ("report_time", "2021-03", 0.69)]
    with engine.begin() as connection:  # one label job grades both models
        connection.execute(realized.insert(), [
            {"computed_at": NOW, "job_id": "job", "model_version": "4", "month": month, "roc_auc": auc,
             "rows_logged": 10, "rows_labelled": 10, "rows_unlabelled": 0, "label_source": "test", "model": model}
            for model, month, auc in rows])  # fmt: skip
    engine.dispose()
    drifts, months = recent_evidence(url, 3)
    assert [d["verdict"] for d in drifts] == ["no_drift"] * 3 and [m["roc_auc"] for m in months] == [0.77]
    assert evidence_of(drifts, months, "4", 0.78, THRESHOLDS) == []
    drifts, months = recent_evidence(url, 3, "report_time")
    assert [d["verdict"] for d in drifts] == ["drift", "drift"] and [m["roc_auc"] for m in months] == [0.70, 0.69]
    evidence = evidence_of(drifts, months, "4", 0.78, THRESHOLDS, model="report_time")
    assert [item.split(":")[0] for item in evidence] == ["drift", "performance"]
    assert "2 of the last 2 windows of report_time model version 4 drifted" in evidence[0]
    assert "test AUC 0.7800 of report_time model version 4" in evidence[1]
