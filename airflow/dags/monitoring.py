"""Monitoring: measure drift, estimated and realized quality of the served traffic, retrain on evidence.

    drift -> estimate ──────────────────────────┐
    drift_report_time -> estimate_report_time ──┼─> decide -> trigger_retraining (only when the evidence says so)
    realized ───────────────────────────────────┘

`drift` runs the drift job (`python -m accidents.monitoring.drift` from the project's monitoring venv,
.venv-monitoring: Evidently needs pandas < 3), `estimate` the estimation job on the same window
(`python -m accidents.monitoring.estimation`, same venv: CBPE's estimated AUC/F1 before labels, after
drift whatever drift's outcome), `realized` the label job (`python -m accidents.monitoring.realized`,
the project's venv, which also grades the stored estimates whose labels arrived); each stores its
result where the API's gauges read it. `drift_report_time` and `estimate_report_time` run the same
two jobs with `--model report_time` on the report-time model's traffic (/v2/predict, issue #25; the
label job grades both models already), stored apart (model='report_time').
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

Secrets (the prediction log's URL with its password, MLflow's and Airflow's logins) never go in
the BashOperators' `env`: it is a templated field, which Airflow's UI shows rendered to anyone who
can read the DAG. The jobs inherit them from the task process's environment (append_env) instead.
"""

from __future__ import annotations

import logging
import os
import shlex
from datetime import timedelta
from pathlib import Path

import accidents_dags as helpers  # airflow/plugins: Airflow puts the plugins folder on sys.path
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, task

log = logging.getLogger(__name__)

PROJECT_DIR = helpers.project_dir(__file__)
PYTHON = PROJECT_DIR / ".venv" / "bin" / "python"
MONITORING_PYTHON = PROJECT_DIR / ".venv-monitoring" / "bin" / "python"
MONITORING_DAG_ID = os.environ.get("ACCIDENTS_MONITORING_DAG_ID") or "monitoring"
PASS_THROUGH = (
    "MLFLOW_TRACKING_URI", "STATE_DIR", "BAAC_DATA_DIR", "BAAC_OFFLINE", "BAAC_BASE_URL",
    "ACCIDENTS_AIRFLOW_URL", "ACCIDENTS_AIRFLOW_USERNAME", "AIRFLOW__API__BASE_URL",
    "ACCIDENTS_DAG_ID", "HOME", "LANG",
)  # fmt: skip
SECRETS = ("PREDICTION_LOG_URL", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "ACCIDENTS_AIRFLOW_PASSWORD")


def job_env(python: Path) -> dict[str, str]:
    """What a job's task shows (rendered) in the UI: no secret (SECRETS come by append_env)."""
    return {**helpers.cli_env(python, PROJECT_DIR, PASS_THROUGH), "PYTHONUNBUFFERED": "1"}


def secret_env() -> dict[str, str]:
    return {name: os.environ[name] for name in SECRETS if os.environ.get(name)}


def job_command(python: Path, module: str, args: tuple[str, ...] = ()) -> str:
    command = " ".join(shlex.quote(part) for part in (str(python), "-m", module, *args))
    return helpers.venv_first(python.parent, f"{command}\n")


def job(task_id: str, python: Path, module: str, trigger_rule: str = "all_success",
        args: tuple[str, ...] = ()) -> BashOperator:  # fmt: skip
    """`python -m module args` from that venv, in the project folder, as a task of the DAG being built."""
    return BashOperator(
        task_id=task_id, bash_command=job_command(python, module, args), cwd=str(PROJECT_DIR), env=job_env(python),
        append_env=True, execution_timeout=timedelta(minutes=30), retries=0, trigger_rule=trigger_rule,
    )  # fmt: skip


def run_decision() -> dict:
    """The project's answer (JSON on stdout of `python -m accidents.monitoring.retrain_decision`)."""
    env = {**job_env(PYTHON), **secret_env()}  # read at run time, in the task: shown nowhere
    return helpers.run_json_cli(PYTHON, "accidents.monitoring.retrain_decision", PROJECT_DIR, env)


@task.short_circuit(trigger_rule="all_done", retries=1, execution_timeout=timedelta(minutes=10))
def decide() -> dict | bool:
    """The decision when it says retrain (downstream runs, XCom holds the reason), else False.
    Runs after the jobs whatever their outcome: a failed label job must not hide drift."""
    answer = run_decision()
    log.info("%s: %s", "retrain" if answer["retrain"] else "no retrain", answer["reason"])
    return answer if answer["retrain"] else False


with DAG(
    dag_id=MONITORING_DAG_ID,
    description="Drift, estimated and realized performance of the served traffic; retrain when they cross thresholds",
    schedule=helpers.schedule("ACCIDENTS_MONITORING_SCHEDULE", "@daily"),
    start_date=helpers.start_date(),
    catchup=False,
    max_active_runs=1,
    tags=["accidents", "monitoring"],
    doc_md=__doc__,
) as dag:
    estimates = []
    for suffix, args in (("", ()), ("_report_time", ("--model", "report_time"))):  # the seed's, the report-time model's
        drift = job(f"drift{suffix}", MONITORING_PYTHON, "accidents.monitoring.drift", args=args)
        # the same window as drift's, estimated even when drift failed (a failed drift job must not hide it)
        estimate = job(f"estimate{suffix}", MONITORING_PYTHON, "accidents.monitoring.estimation",
                       trigger_rule="all_done", args=args)  # fmt: skip
        drift >> estimate
        estimates.append(estimate)
    realized = job("realized", PYTHON, "accidents.monitoring.realized")
    decision = decide()
    trigger = helpers.trigger_retraining(reason_from="decide")
    [*estimates, realized] >> decision >> trigger
