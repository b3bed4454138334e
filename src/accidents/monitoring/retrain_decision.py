"""Retraining on repeated evidence: should the monitoring DAG start `dvc_pipeline` now, and why?

    python -m accidents.monitoring.retrain_decision     # prints one JSON object: {"retrain": bool, "reason": ..., ...}

The evidence (`evidence_of`, pure) is counted over the champion's windows, oldest first, against
params.yaml `monitoring:`. A condition speaks for a retrain when it holds in `votes_needed` of the
last `votes_window` windows (k of n, e.g. 2 of 3: one odd week is not evidence, the monitoring
backtest's month of 2021 with a one-off holiday mix shows why):
- drift: the drift job's verdict is `drift` (drifted share >= drift_share_threshold or prediction
  drift >= prediction_threshold);
- estimated performance: the CBPE estimate of the window (accidents.monitoring.estimation) is
  `estimated_auc_drop` or more below the champion's test AUC;
- performance: the realized AUC of a month (the newest label job's per-month rows) is
  `realized_auc_drop` or more below the champion's test AUC.
Both models are watched (issue #25): the seed's windows against the seed's champion, the report-time
model's (drift results and estimates stored with model='report_time', its label-job months) against
its own champion (`accidents-report-time`); evidence of either speaks for a retrain (the pipeline
trains both), and the reason says which model's windows voted. The reason names the windows that
voted. `decide` (pure) starts no run while a `dvc_pipeline` run is queued or running, nor within
`cooldown_days` of the last run that monitoring started (reason starting with "drift", "estimated
performance" or "performance"). The reason travels in the run's conf
(`reason`), which the pipeline tags on its MLflow run (`run_reason`).

The CLI gathers the evidence: the prediction log's store (PREDICTION_LOG_URL, as the API: the last
`votes_window` drift results and the newest label job's months), the registry's champion and its
run's `test_roc_auc` (MLFLOW_TRACKING_URI), and the DAG's runs from Airflow's REST API
(ACCIDENTS_AIRFLOW_URL, else AIRFLOW__API__BASE_URL, else the local default;
ACCIDENTS_AIRFLOW_USERNAME / ACCIDENTS_AIRFLOW_PASSWORD, else the local demo login), the last
`votes_window` stored estimates of each model.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from accidents.config import (
    AIRFLOW_PORT,
    DAG_ID,
    DEFAULT_HOST,
    DEMO_AIRFLOW_PASSWORD,
    DEMO_AIRFLOW_USERNAME,
    load_params,
    tracking_uri,
)
from accidents.stage import MODELS, REGISTERED_NAMES, PipelineError, log, run_stage
from accidents.store import drift_results, estimates
from accidents.store.drift_results import VERDICT_DRIFT, VERDICT_NOT_ENOUGH_DATA
from accidents.store.prediction_log import SEED_MODEL, create_log_engine, default_url, ensure_schema, realized

REASON_DRIFT = "drift"
REASON_ESTIMATED = "estimated performance"
REASON_PERFORMANCE = "performance"
MONITORING_REASONS = (REASON_DRIFT, REASON_ESTIMATED, REASON_PERFORMANCE)  # the runs the cooldown counts
ACTIVE_STATES = ("queued", "running")


@dataclass(frozen=True)
class Thresholds:
    realized_auc_drop: float = 0.05
    estimated_auc_drop: float = 0.03
    votes_needed: int = 2  # k: windows where a condition holds ...
    votes_window: int = 3  # ... among the last n windows of the champion
    cooldown_days: float = 7

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Thresholds:
        section = params.get("monitoring") or {}
        return cls(**{name: section[name] for name in cls.__dataclass_fields__ if name in section})


@dataclass(frozen=True)
class PipelineRun:
    """One run of the retraining DAG, as Airflow lists it."""

    run_id: str
    state: str
    started: datetime | None  # queued or started time, UTC
    reason: str = ""


@dataclass(frozen=True)
class Decision:
    retrain: bool
    reason: str  # why a run starts (its conf), or why not
    evidence: list[str]


def _voted(windows: list[dict[str, Any]], holds: Callable[[dict[str, Any]], bool], thresholds: Thresholds
            ) -> list[dict[str, Any]]:  # fmt: skip
    """The windows among the last `votes_window` where the condition holds, if at least `votes_needed`."""
    voters = [window for window in windows[-thresholds.votes_window :] if holds(window)]
    return voters if len(voters) >= thresholds.votes_needed else []


def _count(voters: list[dict[str, Any]], windows: list[dict[str, Any]], thresholds: Thresholds) -> str:
    return f"{len(voters)} of the last {min(len(windows), thresholds.votes_window)} windows"


def _auc_drop(key: str, floor: float) -> Callable[[dict[str, Any]], bool]:
    return lambda window: window.get(key) is not None and window[key] <= floor


def evidence_of(
    drifts: list[dict[str, Any]],
    performances: list[dict[str, Any]],
    champion_version: str | None,
    champion_test_auc: float | None,
    thresholds: Thresholds,
    estimates: list[dict[str, Any]] | None = None,
    model: str = SEED_MODEL,
) -> list[str]:
    """What speaks for a retrain, each condition counted k of n over the windows of `model`'s
    champion (oldest first; all given windows are that model's): drift verdicts, estimated AUC
    drops, realized AUC drops (pure)."""
    mine = [
        w for w in drifts if w.get("model_version") == champion_version and w.get("verdict") != VERDICT_NOT_ENOUGH_DATA
    ]
    evidence = []
    version = _version_name(model, champion_version)
    voters = _voted(mine, lambda window: window["verdict"] == VERDICT_DRIFT, thresholds)
    if voters:
        named = "; ".join(_drift_summary(window) for window in voters)
        evidence.append(f"{REASON_DRIFT}: {_count(voters, mine, thresholds)} of {version} drifted ({named})")
    if champion_test_auc is None:
        return evidence
    for reason, windows, key, drop, what in (
        (REASON_ESTIMATED, estimates or [], "roc_auc", thresholds.estimated_auc_drop, "estimated AUC"),
        (REASON_PERFORMANCE, performances, "roc_auc", thresholds.realized_auc_drop, "realized AUC"),
    ):
        mine = [window for window in windows if window.get("model_version") == champion_version]
        voters = _voted(mine, _auc_drop(key, champion_test_auc - drop), thresholds)
        if voters:
            named = "; ".join(f"{_window_name(w)}: {w[key]:.4f}" for w in voters)
            evidence.append(f"{reason}: {what} {drop:g} or more below the test AUC {champion_test_auc:.4f} of "
                            f"{version} in {_count(voters, mine, thresholds)} ({named})")  # fmt: skip
    return evidence


def _version_name(model: str, version: str | None) -> str:
    """ "version 4" (the seed's, as before the report-time model), "report_time model version 1"."""
    return f"version {version}" if model == SEED_MODEL else f"{model} model version {version}"


def _drift_summary(window: dict[str, Any]) -> str:
    features = ", ".join(window["drifted_features"]) or "none"
    return (f"{_window_name(window)}: share {window['drifted_share']:.2f} ({features}), prediction drift "
            f"{window['prediction_drift']:.3f}, {window['window_rows']} rows")  # fmt: skip


def _window_name(window: dict[str, Any]) -> str:
    """A window as the reason names it: its month, its id, or its time range."""
    if window.get("name"):
        return str(window["name"])
    if window.get("month"):
        return str(window["month"])
    start, end = window.get("window_start"), window.get("window_end")
    prefix = f"#{window['id']} " if window.get("id") is not None else ""
    return f"{prefix}{start}..{end}" if start or end else prefix.strip() or "window"


def decide(evidence: list[str], runs: list[PipelineRun], now: datetime, thresholds: Thresholds) -> Decision:
    """Whether to start a run now, given the evidence and the retraining DAG's runs (pure)."""
    if not evidence:
        why = (f"no evidence: no drift verdict, estimated or realized AUC drop in {thresholds.votes_needed} of the "
               f"last {thresholds.votes_window} windows of the champion")  # fmt: skip
        return Decision(False, why, evidence)
    active = [run for run in runs if run.state in ACTIVE_STATES]
    if active:
        return Decision(False, f"{DAG_ID} run {active[0].run_id} is {active[0].state}: not starting another", evidence)
    cooldown = timedelta(days=thresholds.cooldown_days)
    recent = [run for run in runs if run.reason.startswith(MONITORING_REASONS) and run.started is not None
              and now - run.started < cooldown]  # fmt: skip
    if recent:
        last = max(recent, key=lambda run: run.started)
        why = (f"cooldown: run {last.run_id} started for monitoring evidence at {last.started.isoformat()}, "
               f"less than {thresholds.cooldown_days:g} days ago")  # fmt: skip
        return Decision(False, why, evidence)
    return Decision(True, "; ".join(evidence), evidence)


# --- gathering the evidence ---------------------------------------------------------------------


def recent_evidence(
    url: str, windows: int, model: str = SEED_MODEL
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The last `windows` drift results of `model` and the newest label job's per-month rows of it
    (the label job grades both models in one run), oldest first."""
    engine = create_log_engine(url)
    try:
        ensure_schema(engine, url)
        drifts = list(reversed(drift_results.recent(engine, windows, model)))
        newest = select(realized.c.job_id).where(realized.c.shadow_challenger.is_(None))
        newest = newest.order_by(realized.c.computed_at.desc(), realized.c.id.desc()).limit(1)
        query = (select(realized).where(realized.c.job_id == newest.scalar_subquery(),
                                        realized.c.shadow_challenger.is_(None), realized.c.month.is_not(None),
                                        realized.c.model == model)
                 .order_by(realized.c.model_version, realized.c.month))  # fmt: skip
        with engine.connect() as connection:
            months = [dict(row) for row in connection.execute(query).mappings().all()]
    finally:
        engine.dispose()
    return drifts, months


def recent_estimates(url: str, windows: int, model: str = SEED_MODEL) -> list[dict[str, Any]]:
    """The last `windows` stored estimates of `model` (the monitoring DAG's estimate tasks), oldest first."""
    engine = create_log_engine(url)
    try:
        ensure_schema(engine, url)
        return list(reversed(estimates.recent(engine, windows, model=model)))
    finally:
        engine.dispose()


def champion_and_test_auc(uri: str, model: str = SEED_MODEL) -> tuple[str | None, float | None]:
    """`model`'s champion version (of its registered name) and its run's test AUC; (None, None) without one."""
    from accidents.model import registry

    client = registry.client(uri)
    version = registry.champion_version(client, REGISTERED_NAMES[model])
    if version is None:
        return None, None
    metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
    return str(version.version), metrics.get("test_roc_auc")


class AirflowRuns:
    """The retraining DAG's runs through Airflow's REST API v2 (standard library HTTP only)."""

    def __init__(self, base_url: str, username: str, password: str, dag_id: str = DAG_ID, timeout: float = 20):
        self.base_url = base_url.rstrip("/")
        self.dag_id = dag_id
        self.credentials = {"username": username, "password": password}
        self.timeout = timeout

    @classmethod
    def from_env(cls) -> AirflowRuns:
        url = (os.environ.get("ACCIDENTS_AIRFLOW_URL") or os.environ.get("AIRFLOW__API__BASE_URL")
               or f"http://{DEFAULT_HOST}:{AIRFLOW_PORT}")  # fmt: skip
        return cls(url, os.environ.get("ACCIDENTS_AIRFLOW_USERNAME") or DEMO_AIRFLOW_USERNAME,
                   os.environ.get("ACCIDENTS_AIRFLOW_PASSWORD") or DEMO_AIRFLOW_PASSWORD,
                   os.environ.get("ACCIDENTS_DAG_ID") or DAG_ID)  # fmt: skip

    def _call(self, path: str, body: dict[str, Any] | None = None, token: str | None = None) -> dict[str, Any]:
        if not self.base_url.startswith(("http://", "https://")):
            raise PipelineError(f"Airflow URL must be http(s): {self.base_url}")
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers)  # noqa: S310 - checked above
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.load(response)
        except (OSError, ValueError) as error:
            raise PipelineError(f"Airflow at {self.base_url}: {path} failed: {error}") from error

    def runs(self, limit: int = 100) -> list[PipelineRun]:
        token = self._call("/auth/token", self.credentials)["access_token"]
        query = urllib.parse.urlencode({"order_by": "-run_after", "limit": limit})
        answer = self._call(f"/api/v2/dags/{urllib.parse.quote(self.dag_id)}/dagRuns?{query}", token=token)
        return [_run(item) for item in answer.get("dag_runs") or []]


def _run(item: dict[str, Any]) -> PipelineRun:
    moment = item.get("start_date") or item.get("queued_at") or item.get("run_after")
    started = datetime.fromisoformat(moment.replace("Z", "+00:00")) if moment else None
    reason = str((item.get("conf") or {}).get("reason") or "")
    return PipelineRun(str(item.get("dag_run_id")), str(item.get("state") or ""), started, reason)


Windows = list[dict[str, Any]]


def stored_evidence(log_url: str, version: str | None, test_auc: float | None, thresholds: Thresholds,
                    model: str = SEED_MODEL) -> tuple[list[str], Windows, Windows]:  # fmt: skip
    """The store's evidence for `version` of `model`: (evidence, the drift results, the newest label
    job's months), from that model's last drift results, stored estimates and realized months."""
    drifts, months = recent_evidence(log_url, thresholds.votes_window, model)
    estimated = recent_estimates(log_url, thresholds.votes_window, model)
    return evidence_of(drifts, months, version, test_auc, thresholds, estimated, model), drifts, months


def gather_and_decide(log_url: str, mlflow_uri: str, airflow: AirflowRuns, thresholds: Thresholds) -> dict[str, Any]:
    """Each model's evidence against its own champion; a retrain when either's speaks for one."""
    evidence: list[str] = []
    champions: dict[str, str | None] = {}
    newest_drift: dict[str, Any] = {}
    for model in MODELS:
        version, test_auc = champion_and_test_auc(mlflow_uri, model)
        champions[model] = version
        if version is None:
            log.info("%s: no champion, no evidence", model)
            continue
        found, drifts, months = stored_evidence(log_url, version, test_auc, thresholds, model)
        evidence += found
        newest_drift[model] = drifts[-1]["id"] if drifts else None
        by_month = {m["month"]: m["roc_auc"] for m in months if m["model_version"] == version}
        log.info("%s champion %s (test AUC %s); drift verdicts %s; realized AUC by month %s", model, version,
                 test_auc, [d["verdict"] for d in drifts], by_month)  # fmt: skip
    runs = airflow.runs() if evidence else []  # Airflow is asked only when there is something to start
    decision = decide(evidence, runs, datetime.now(UTC), thresholds)
    log.info("%s: %s", "retrain" if decision.retrain else "no retrain", decision.reason)
    return {**asdict(decision), "champion_version": champions[SEED_MODEL], "champion_versions": champions,
            "drift_result_id": newest_drift.get(SEED_MODEL), "drift_result_ids": newest_drift}  # fmt: skip


def main() -> int:
    answers: list[dict[str, Any]] = []

    def body() -> None:
        thresholds = Thresholds.from_params(load_params())
        answers.append(gather_and_decide(default_url(), tracking_uri(), AirflowRuns.from_env(), thresholds))

    status = run_stage("retrain_decision", body)
    if answers:
        print(json.dumps(answers[0], default=str))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
