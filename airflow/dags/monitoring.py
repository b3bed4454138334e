"""Monitoring: measure drift and realized quality of the served traffic, retrain on evidence.

    drift ──────┐
                ├─> decide -> trigger_retraining (only when the evidence says so)
    realized ───┘

`drift` runs the drift job (`python -m accidents.monitoring.drift` from the project's monitoring venv,
.venv-monitoring: Evidently needs pandas < 3), `realized` the label job (`python -m
accidents.monitoring.realized`, the project's venv); each stores its result where the API's gauges read it.
`decide` runs `python -m accidents.monitoring.retrain_decision` (pure logic in the project, tested without
Airflow): drifted share, prediction drift or realized-AUC drop past the params.yaml thresholds,
no run while one is queued or running, a cooldown after the last monitoring-started run. Only
then it starts the retraining DAG, with {"reason": "drift: ..."} (or "performance: ...") as the
run's conf: shown in Airflow, tagged on the MLflow run (run_reason), returned by GET /retrain/{id}.
This file imports nothing from the project; every task calls a venv binary by absolute path.

    ACCIDENTS_MONITORING_SCHEDULE  cron or preset (default "@daily"; "none" = manual runs only)
    ACCIDENTS_MONITORING_DAG_ID    this DAG's id (default "monitoring")
    ACCIDENTS_DAG_ID, ACCIDENTS_PROJECT_DIR, ACCIDENTS_SCHEDULE_START: as in retraining.py
    MLFLOW_TRACKING_URI, PREDICTION_LOG_URL, STATE_DIR, BAAC_*, ACCIDENTS_AIRFLOW_*: passed to the jobs
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, task

log = logging.getLogger(__name__)

PROJECT_DIR = Path(os.environ.get("ACCIDENTS_PROJECT_DIR") or Path(__file__).resolve().parents[2])
PYTHON = PROJECT_DIR / ".venv" / "bin" / "python"
MONITORING_PYTHON = PROJECT_DIR / ".venv-monitoring" / "bin" / "python"
MONITORING_DAG_ID = os.environ.get("ACCIDENTS_MONITORING_DAG_ID") or "monitoring"
RETRAIN_DAG_ID = os.environ.get("ACCIDENTS_DAG_ID") or "dvc_pipeline"
PASS_THROUGH = (
    "MLFLOW_TRACKING_URI", "PREDICTION_LOG_URL", "STATE_DIR", "BAAC_DATA_DIR", "BAAC_OFFLINE", "BAAC_BASE_URL",
    "ACCIDENTS_AIRFLOW_URL", "ACCIDENTS_AIRFLOW_USERNAME", "ACCIDENTS_AIRFLOW_PASSWORD", "AIRFLOW__API__BASE_URL",
    "ACCIDENTS_DAG_ID", "HOME", "LANG",
)  # fmt: skip
DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)


def _schedule() -> str | None:
    value = os.environ.get("ACCIDENTS_MONITORING_SCHEDULE", "@daily").strip()
    return None if value.lower() in ("", "none", "null", "manual") else value


def _start_date() -> datetime:
    value = os.environ.get("ACCIDENTS_SCHEDULE_START")
    try:
        start = datetime.fromisoformat(value) if value else DEFAULT_START
    except ValueError:
        start = DEFAULT_START
    return start if start.tzinfo else start.replace(tzinfo=UTC)


def job_env(python: Path) -> dict[str, str]:
    env = {name: os.environ[name] for name in PASS_THROUGH if os.environ.get(name)}
    env.update({"ACCIDENTS_PROJECT_DIR": str(PROJECT_DIR), "PATH": f"{python.parent}:/usr/bin:/bin",
                "PYTHONUNBUFFERED": "1"})  # fmt: skip
    return env


def job_command(python: Path, module: str) -> str:
    # PATH again after bash's start-up files, which may put another Python first.
    return f'export PATH={shlex.quote(str(python.parent))}:"$PATH"\n{shlex.quote(str(python))} -m {module}\n'


def run_decision() -> dict:
    """The project's answer (JSON on stdout of `python -m accidents.monitoring.retrain_decision`)."""
    result = subprocess.run(
        [str(PYTHON), "-m", "accidents.monitoring.retrain_decision"], cwd=PROJECT_DIR, env=job_env(PYTHON),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if result.stderr:
        log.info("%s", result.stderr.strip()[-4000:])
    if result.returncode != 0:
        raise RuntimeError(
            f"accidents.monitoring.retrain_decision exited {result.returncode}: {result.stderr.strip()[-2000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


@task.short_circuit(trigger_rule="all_done", retries=1, execution_timeout=timedelta(minutes=10))
def decide() -> dict | bool:
    """The decision when it says retrain (downstream runs, XCom holds the reason), else False.
    Runs after both jobs whatever their outcome: a failed label job must not hide drift."""
    answer = run_decision()
    log.info("%s: %s", "retrain" if answer["retrain"] else "no retrain", answer["reason"])
    return answer if answer["retrain"] else False


with DAG(
    dag_id=MONITORING_DAG_ID,
    description="Drift and realized performance of the served traffic; retrain when they cross thresholds",
    schedule=_schedule(),
    start_date=_start_date(),
    catchup=False,
    max_active_runs=1,
    tags=["accidents", "monitoring"],
    doc_md=__doc__,
) as dag:
    drift = BashOperator(
        task_id="drift",
        bash_command=job_command(MONITORING_PYTHON, "accidents.monitoring.drift"),
        cwd=str(PROJECT_DIR),
        env=job_env(MONITORING_PYTHON),
        execution_timeout=timedelta(minutes=30),
        retries=0,
    )
    realized = BashOperator(
        task_id="realized",
        bash_command=job_command(PYTHON, "accidents.monitoring.realized"),
        cwd=str(PROJECT_DIR),
        env=job_env(PYTHON),
        execution_timeout=timedelta(minutes=30),
        retries=0,
    )
    decision = decide()
    trigger = TriggerDagRunOperator(
        task_id="trigger_retraining",
        trigger_dag_id=RETRAIN_DAG_ID,
        conf={"reason": "{{ ti.xcom_pull(task_ids='decide')['reason'] }}"},
        wait_for_completion=False,
    )
    [drift, realized] >> decision >> trigger
