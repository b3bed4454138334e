"""What the project's DAG files share: schedule and start date from the environment, the project's
folder and venv paths, and the run of a project CLI that answers in JSON.

The DAG files import it by name (`import accidents_dags`) because it lives in Airflow's plugins
folder: on `import airflow`, Airflow 3.3 appends `core.plugins_folder` to `sys.path`
(airflow/settings.py, `initialize()` -> `prepare_syspath_for_config_and_plugins()`), in every
process that parses or runs a DAG file: dag processor, scheduler, API server, Celery workers, the
task runner, `airflow dags ...` and the DAG tests. It does not put the DAG folder there, so the
helpers cannot sit beside the DAGs. Each deployment points that setting at this folder, next to
where it sets the DAG folder:

    make run        scripts/run_stack.py: AIRFLOW__CORE__PLUGINS_FOLDER=<project>/airflow/plugins
    compose, scale  Dockerfile (airflow image): AIRFLOW__CORE__PLUGINS_FOLDER=/app/airflow/plugins
    Kubernetes      deploy/kubernetes/airflow-values.yaml: config.core.plugins_folder
    DAG tests       tests/airflow/conftest.py

Rules for this file (why it is not a package in .venv-airflow: one folder to edit, shipped with
the DAGs by the same COPY, nothing to reinstall when a helper changes):
- stdlib and Airflow only: Airflow's venv has no ML libraries and none of the project's packages.
- nothing at import time: Airflow's plugin manager imports every module of the plugins folder to
  look for AirflowPlugin subclasses (there are none here). The environment is read when a DAG
  file calls a helper, so a re-parse (or a test that changes the environment) sees the change.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

log = logging.getLogger(__name__)

DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)
RETRAIN_DAG_ID = "dvc_pipeline"  # accidents.config.DAG_ID; tests/airflow keeps the two equal
MANUAL = ("", "none", "null", "manual")


def project_dir(dag_file: str) -> Path:
    """ACCIDENTS_PROJECT_DIR, else the checkout two folders above the DAG file."""
    return Path(os.environ.get("ACCIDENTS_PROJECT_DIR") or Path(dag_file).resolve().parents[2])


def retrain_dag_id() -> str:
    """The retraining DAG's id (ACCIDENTS_DAG_ID), which the other DAGs trigger."""
    return os.environ.get("ACCIDENTS_DAG_ID") or RETRAIN_DAG_ID


def schedule(variable: str, default: str) -> str | None:
    """A cron or preset from `variable`; "none" (or empty) means manual runs only."""
    value = os.environ.get(variable, default).strip()
    return None if value.lower() in MANUAL else value


def start_date() -> datetime:
    """When the stack was set up (ACCIDENTS_SCHEDULE_START, set by run_stack.py): the first scheduled
    run is the next schedule point after it. A date in the past would make Airflow 3 run the latest
    past point at once."""
    value = os.environ.get("ACCIDENTS_SCHEDULE_START")
    try:
        start = datetime.fromisoformat(value) if value else DEFAULT_START
    except ValueError:
        log.warning("ACCIDENTS_SCHEDULE_START=%r is not an ISO date: using %s", value, DEFAULT_START)
        start = DEFAULT_START
    return start if start.tzinfo else start.replace(tzinfo=UTC)


def venv_first(bin_dir: Path, script: str) -> str:
    """A bash script with `bin_dir` first on PATH again after bash's start-up files, which may put
    another Python first."""
    return f'export PATH={shlex.quote(str(bin_dir))}:"$PATH"\n{script}'


def cli_env(python: Path, project: Path, pass_through: Iterable[str]) -> dict[str, str]:
    """A project CLI's environment: the variables named in `pass_through` that are set, the project
    folder, and PATH with the CLI's venv first."""
    env = {name: os.environ[name] for name in pass_through if os.environ.get(name)}
    env.update({"ACCIDENTS_PROJECT_DIR": str(project), "PATH": f"{python.parent}:/usr/bin:/bin"})
    return env


def trigger_retraining(reason_from: str) -> TriggerDagRunOperator:
    """The task `trigger_retraining`: starts the retraining DAG (without waiting for it) with the
    reason that task `reason_from` returned (its XCom's "reason") as the run's conf."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    return TriggerDagRunOperator(
        task_id="trigger_retraining",
        trigger_dag_id=retrain_dag_id(),
        conf={"reason": f"{{{{ ti.xcom_pull(task_ids='{reason_from}')['reason'] }}}}"},
        wait_for_completion=False,
    )


def run_json_cli(python: Path, module: str, project: Path, env: dict[str, str], timeout: int = 300) -> dict:
    """`python -m module` in the project folder; its answer is the JSON on stdout's last line.
    Its stderr goes to the task log; a non-zero exit fails the task with stderr's tail."""
    result = subprocess.run(
        [str(python), "-m", module], cwd=project, env=env, capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip
    if result.stderr:
        log.info("%s", result.stderr.strip()[-4000:])
    if result.returncode != 0:
        raise RuntimeError(f"{module} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
