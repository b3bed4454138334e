"""Retraining on evidence: should the monitoring DAG start `dvc_pipeline` now, and why?

    python -m accidents.monitoring.retrain_decision     # prints one JSON object: {"retrain": bool, "reason": ..., ...}

The evidence (`evidence_of`, pure): the newest drift result (accidents.monitoring.drift) and the
newest realized performance of the champion (accidents.monitoring.realized), against the thresholds of
params.yaml `monitoring:`:
- drift: the drift job's verdict is `drift` (drifted share >= drift_share_threshold or prediction
  drift >= prediction_threshold) for the champion's traffic;
- performance: the champion's realized AUC is `realized_auc_drop` or more below its test AUC.
`decide` (pure) starts no run while a `dvc_pipeline` run is queued or running, nor within `cooldown_days` of
the last run that monitoring started (reason starting with "drift" or "performance"). The reason
travels in the run's conf (`reason`), which the pipeline tags on its MLflow run (`run_reason`).

The CLI gathers the evidence: the prediction log's store (PREDICTION_LOG_URL, as the API), the
registry's champion and its run's `test_roc_auc` (MLFLOW_TRACKING_URI), and the DAG's runs from
Airflow's REST API (ACCIDENTS_AIRFLOW_URL, else AIRFLOW__API__BASE_URL, else the local default;
ACCIDENTS_AIRFLOW_USERNAME / ACCIDENTS_AIRFLOW_PASSWORD, else the local demo login).
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
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
from accidents.stage import PipelineError, log, run_stage
from accidents.store import drift_results
from accidents.store.drift_results import VERDICT_DRIFT
from accidents.store.prediction_log import create_log_engine, default_url, ensure_schema, realized

REASON_DRIFT = "drift"
REASON_PERFORMANCE = "performance"
MONITORING_REASONS = (REASON_DRIFT, REASON_PERFORMANCE)  # the runs the cooldown counts
ACTIVE_STATES = ("queued", "running")


@dataclass(frozen=True)
class Thresholds:
    realized_auc_drop: float = 0.05
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


def evidence_of(
    drift: dict[str, Any] | None,
    performance: dict[str, Any] | None,
    champion_version: str | None,
    champion_test_auc: float | None,
    thresholds: Thresholds,
) -> list[str]:
    """What speaks for a retrain: the champion's drift verdict, its realized AUC drop (pure)."""
    evidence = []
    if drift is not None and drift["verdict"] == VERDICT_DRIFT and drift["model_version"] == champion_version:
        features = ", ".join(drift["drifted_features"]) or "none"
        evidence.append(
            f"{REASON_DRIFT}: drifted share {drift['drifted_share']:.2f} ({features}), prediction drift "
            f"{drift['prediction_drift']:.3f} on {drift['window_rows']} rows of version {champion_version}"
        )
    if performance is not None and performance.get("roc_auc") is not None and champion_test_auc is not None:
        drop = champion_test_auc - performance["roc_auc"]
        if performance["model_version"] == champion_version and drop >= thresholds.realized_auc_drop:
            evidence.append(f"{REASON_PERFORMANCE}: realized AUC {performance['roc_auc']:.4f} is {drop:.4f} below the "
                            f"test AUC {champion_test_auc:.4f} of version {champion_version}")  # fmt: skip
    return evidence


def decide(evidence: list[str], runs: list[PipelineRun], now: datetime, thresholds: Thresholds) -> Decision:
    """Whether to start a run now, given the evidence and the retraining DAG's runs (pure)."""
    if not evidence:
        return Decision(False, "no evidence: no drift verdict and no realized AUC drop for the champion", evidence)
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


def newest_evidence(url: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The newest drift result and the newest overall realized performance row of each version."""
    engine = create_log_engine(url)
    try:
        ensure_schema(engine, url)
        drift = next(iter(drift_results.recent(engine, 1)), None)
        query = (select(realized).where(realized.c.month.is_(None))
                 .order_by(realized.c.computed_at.desc(), realized.c.id.desc()).limit(100))  # fmt: skip
        with engine.connect() as connection:
            rows = [dict(row) for row in connection.execute(query).mappings().all()]
    finally:
        engine.dispose()
    return drift, rows


def champion_and_test_auc(uri: str) -> tuple[str | None, float | None]:
    from accidents.model import registry

    client = registry.client(uri)
    version = registry.champion_version(client)
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


def gather_and_decide(log_url: str, mlflow_uri: str, airflow: AirflowRuns, thresholds: Thresholds) -> dict[str, Any]:
    drift, performance_rows = newest_evidence(log_url)
    version, test_auc = champion_and_test_auc(mlflow_uri)
    performance = next((row for row in performance_rows if row["model_version"] == version), None)
    evidence = evidence_of(drift, performance, version, test_auc, thresholds)
    log.info("champion %s (test AUC %s); drift verdict %s; realized AUC %s", version, test_auc,
             drift and drift["verdict"], performance and performance["roc_auc"])  # fmt: skip
    runs = airflow.runs() if evidence else []  # Airflow is asked only when there is something to start
    decision = decide(evidence, runs, datetime.now(UTC), thresholds)
    log.info("%s: %s", "retrain" if decision.retrain else "no retrain", decision.reason)
    return {**asdict(decision), "champion_version": version, "drift_result_id": drift and drift["id"]}


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
