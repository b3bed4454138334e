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

import logging
import os
from datetime import timedelta

import accidents_dags as helpers  # airflow/plugins: Airflow puts the plugins folder on sys.path
from airflow.sdk import DAG, task

log = logging.getLogger(__name__)

PROJECT_DIR = helpers.project_dir(__file__)
PYTHON = PROJECT_DIR / ".venv" / "bin" / "python"
CHECK_DAG_ID = os.environ.get("ACCIDENTS_CHECK_DAG_ID") or "new_data_check"
PASS_THROUGH = ("BAAC_DATA_DIR", "BAAC_OFFLINE", "BAAC_DATASET_API", "HOME", "LANG")


def run_check() -> dict:
    """The project's answer (JSON on stdout of `python -m accidents.monitoring.new_data`)."""
    return helpers.run_json_cli(
        PYTHON, "accidents.monitoring.new_data", PROJECT_DIR, helpers.cli_env(PYTHON, PROJECT_DIR, PASS_THROUGH)
    )


@task.short_circuit(retries=2, retry_delay=timedelta(minutes=5), execution_timeout=timedelta(minutes=10))
def check_new_data() -> dict | bool:
    """The check's JSON when there is a new year (downstream runs, XCom holds the reason), else False."""
    answer = run_check()
    log.info("%s", answer["reason"])
    return answer if answer["new_data"] else False


with DAG(
    dag_id=CHECK_DAG_ID,
    description="Start the retraining DAG when a new official BAAC year is available",
    schedule=helpers.schedule("ACCIDENTS_NEW_DATA_SCHEDULE", "@daily"),
    start_date=helpers.start_date(),
    catchup=False,
    max_active_runs=1,
    tags=["accidents", "data"],
    doc_md=__doc__,
) as dag:
    check = check_new_data()
    trigger = helpers.trigger_retraining(reason_from="check_new_data")
    check >> trigger
