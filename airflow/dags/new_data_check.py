"""New-data check: retrain when a new official BAAC year is published, not on a fixed clock.

    check_new_data -> trigger_retraining (only when there is a new year)

BAAC data is published once a year, so retraining weekly on unchanged data buys nothing. This
DAG runs a cheap check on its schedule: the project's own CLI `python -m accidents.monitoring.new_data`
(by absolute path, from the project's venv; this file imports nothing from the project), which
compares the years available (a new year folder in BAAC_DATA_DIR, or the data.gouv.fr dataset
API's resource list when online) with the years the last import recorded. Only when a year is
new does it start the retraining DAG, with {"reason": "..."} as the run's conf: the reason shows
in Airflow's run list and reaches the MLflow run as tag `run_reason`.

    ACCIDENTS_NEW_DATA_SCHEDULE   cron or preset (default "@daily"; "none" = manual checks only)
    ACCIDENTS_CHECK_DAG_ID        this DAG's id (default "new_data_check")
    ACCIDENTS_DAG_ID, ACCIDENTS_PROJECT_DIR, ACCIDENTS_SCHEDULE_START, BAAC_*: as in retraining.py
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, task

log = logging.getLogger(__name__)

PROJECT_DIR = Path(os.environ.get("ACCIDENTS_PROJECT_DIR") or Path(__file__).resolve().parents[2])
PYTHON = PROJECT_DIR / ".venv" / "bin" / "python"
CHECK_DAG_ID = os.environ.get("ACCIDENTS_CHECK_DAG_ID") or "new_data_check"
RETRAIN_DAG_ID = os.environ.get("ACCIDENTS_DAG_ID") or "dvc_pipeline"
PASS_THROUGH = ("BAAC_DATA_DIR", "BAAC_OFFLINE", "BAAC_DATASET_API", "HOME", "LANG")
DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)


def _schedule() -> str | None:
    value = os.environ.get("ACCIDENTS_NEW_DATA_SCHEDULE", "@daily").strip()
    return None if value.lower() in ("", "none", "null", "manual") else value


def _start_date() -> datetime:
    value = os.environ.get("ACCIDENTS_SCHEDULE_START")
    try:
        start = datetime.fromisoformat(value) if value else DEFAULT_START
    except ValueError:
        start = DEFAULT_START
    return start if start.tzinfo else start.replace(tzinfo=UTC)


def run_check() -> dict:
    """The project's answer (JSON on stdout of `python -m accidents.monitoring.new_data`)."""
    env = {name: os.environ[name] for name in PASS_THROUGH if os.environ.get(name)}
    env.update({"ACCIDENTS_PROJECT_DIR": str(PROJECT_DIR), "PATH": f"{PYTHON.parent}:/usr/bin:/bin"})
    result = subprocess.run(
        [str(PYTHON), "-m", "accidents.monitoring.new_data"], cwd=PROJECT_DIR, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"accidents.monitoring.new_data exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


@task.short_circuit(retries=2, retry_delay=timedelta(minutes=5), execution_timeout=timedelta(minutes=10))
def check_new_data() -> dict | bool:
    """The check's JSON when there is a new year (downstream runs, XCom holds the reason), else False."""
    answer = run_check()
    log.info("%s", answer["reason"])
    return answer if answer["new_data"] else False


with DAG(
    dag_id=CHECK_DAG_ID,
    description="Start the retraining DAG when a new official BAAC year is available",
    schedule=_schedule(),
    start_date=_start_date(),
    catchup=False,
    max_active_runs=1,
    tags=["accidents", "data"],
    doc_md=__doc__,
) as dag:
    check = check_new_data()
    trigger = TriggerDagRunOperator(
        task_id="trigger_retraining",
        trigger_dag_id=RETRAIN_DAG_ID,
        conf={"reason": "{{ ti.xcom_pull(task_ids='check_new_data')['reason'] }}"},
        wait_for_completion=False,
    )
    check >> trigger
