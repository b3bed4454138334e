"""Retraining DAG: the project's DVC pipeline, one task per stage, then the API reloads its model.

    import_data -> preprocess -> train -> evaluate -> reload_api_model
                                                  \\-> predict -> push_artifacts

It has no unconditional schedule by default: the DAG `new_data_check` (new_data_check.py) looks
for a new official year every day and starts this one only when there is one, with the reason
in the run's conf. Manual runs (UI, REST, the API's POST /retrain) always retrain.

This file imports nothing from the project (Airflow's venv has no ML libraries): each task runs
the project's own `dvc` by absolute path from the project's venv, in the project directory. The
helpers the DAG files share (schedule, start date, paths, CLI runs) are airflow/plugins/
accidents_dags.py, on sys.path through Airflow's plugins folder (core.plugins_folder).
Configuration comes from the environment `scripts/run_stack.py` (or docker-compose) sets:

    ACCIDENTS_PROJECT_DIR       project checkout (default: two folders above this file)
    ACCIDENTS_DAG_ID            DAG id (default "dvc_pipeline" = accidents.config.DAG_ID; a test
                                keeps the two equal)
    ACCIDENTS_RETRAIN_SCHEDULE  an unconditional cron or preset (default "none": runs start by hand or
                                from new_data_check when a new year is published)
    ACCIDENTS_SCHEDULE_START    ISO date-time the schedule starts from (run_stack.py: when the
                                stack was first set up, so no run starts at once)
    ACCIDENTS_API_URL           the prediction API (default http://127.0.0.1:8000)
    ACCIDENTS_API_USERNAME / ACCIDENTS_API_PASSWORD
                                an API admin, for POST /model/reload (default the demo admin)
    MLFLOW_TRACKING_URI, BAAC_DATA_DIR, BAAC_OFFLINE, BAAC_BASE_URL, ENVIRONMENT
                                passed through to the pipeline stages

Run parameters (Trigger DAG w/ config, or `conf` in the REST API):
    force         (default true)  rerun every stage (`dvc repro -f`), so a run always trains a
                                  challenger and applies the promotion rule; false: DVC's
                                  incremental mode, a stage runs only when its inputs changed.
    refresh_data  (default true)  with force false, still rerun import_data: the upstream files
                                  are not DVC dependencies, so only a rerun sees new data.
    reason        (default "")    why the run started (new_data_check sets it); reaches the MLflow
                                  run as tag `run_reason` (env ACCIDENTS_RUN_REASON). Empty: "manual
                                  run" plus Airflow's run type. Set in every DAG run, it also tells
                                  import_data this is no shell run: no synthetic fallback while
                                  the registry's champion is real (a failed run instead).
The years to import are the pipeline parameter `data.years` in params.yaml (edit and commit it):
DVC records parameters in dvc.lock, so a per-run override would make the lock file lie.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta

import accidents_dags as helpers  # airflow/plugins: Airflow puts the plugins folder on sys.path
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param, chain, task

log = logging.getLogger(__name__)

PROJECT_DIR = helpers.project_dir(__file__)
DAG_ID = helpers.retrain_dag_id()
VENV_BIN = PROJECT_DIR / ".venv" / "bin"
DVC = VENV_BIN / "dvc"
API_URL = os.environ.get("ACCIDENTS_API_URL") or "http://127.0.0.1:8000"

STAGES = ("import_data", "preprocess", "train", "evaluate", "predict")
# Per-stage limits: downloads and training get more time than the rest.
TIMEOUTS = {
    "import_data": timedelta(minutes=30),
    "preprocess": timedelta(minutes=30),
    "train": timedelta(hours=2),
    "evaluate": timedelta(minutes=30),
    "predict": timedelta(minutes=30),
}
# Why this run started, rendered by Airflow (BashOperator's env is templated) from the run's conf.
RUN_REASON = "{{ params.reason or ('manual run (' ~ dag_run.run_type ~ ')') }}"
PASS_THROUGH = (
    "MLFLOW_TRACKING_URI",
    "BAAC_DATA_DIR",
    "BAAC_OFFLINE",
    "BAAC_BASE_URL",
    "DVC_NO_ANALYTICS",
    "ENVIRONMENT",
)  # production mode: the pipeline refuses synthetic data
# Workers without a shared project directory (docker-compose.scale.yml): each DVC task restores the
# run's state from this S3 prefix first and saves it after (python -m accidents.stack.stage_exchange).
EXCHANGE = os.environ.get("ACCIDENTS_STAGE_EXCHANGE", "").strip()
if EXCHANGE:
    PASS_THROUGH += ("ACCIDENTS_STAGE_EXCHANGE", "AWS_ENDPOINT_URL")


def stage_env() -> dict[str, str]:
    """The stages' environment: the project's venv first on PATH, the pipeline's settings."""
    env = {
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - only when HOME is unset
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "ACCIDENTS_PROJECT_DIR": str(PROJECT_DIR),
        "PYTHONUNBUFFERED": "1",  # stage output reaches the task log as it happens
        "DVC_NO_ANALYTICS": "1",
        "ACCIDENTS_RUN_REASON": RUN_REASON,
    }
    env.update({name: os.environ[name] for name in PASS_THROUGH if os.environ.get(name)})
    return env


def stage_command(stage: str) -> str:
    """`dvc repro -s <stage>`: this stage only (its predecessors are their own tasks)."""
    dvc = shlex.quote(str(DVC))
    force = "{{ '-f' if params.force else '' }}"
    if stage == "import_data":
        force = "{{ '-f' if (params.force or params.refresh_data) else '' }}"
    command = helpers.venv_first(VENV_BIN, f"set -e\n{dvc} repro {force} -s {stage}\n")
    if stage == "evaluate":
        # Every metric of the run, one per line (the stage itself prints the decision).
        command += f"{dvc} metrics show --json | {shlex.quote(str(VENV_BIN / 'python'))} -m json.tool\n"
    return exchanged(command, stage)


def exchanged(command: str, stage: str | None = None) -> str:
    """With ACCIDENTS_STAGE_EXCHANGE: the run's DVC state pulled before the command, pushed after."""
    if not EXCHANGE:
        return command
    exchange = f"{shlex.quote(str(VENV_BIN / 'python'))} -m accidents.stack.stage_exchange"
    run = '"{{ run_id }}"'
    pushed = f"{exchange} push {run} {stage}" if stage else ""
    return f"set -e\n{exchange} pull {run}\n{command.rstrip()}\n{pushed}\n"


@task(retries=0, execution_timeout=timedelta(minutes=2))
def reload_api_model() -> dict | None:
    """Ask the API to load the registry's champion now (it also polls: a failure only warns)."""
    # No default login here: the stack (make run, compose) passes the API's admin credentials;
    # without them the API still picks up the champion through its own alias polling.
    username = os.environ.get("ACCIDENTS_API_USERNAME")
    password = os.environ.get("ACCIDENTS_API_PASSWORD")
    if not (username and password):
        log.warning("ACCIDENTS_API_USERNAME / ACCIDENTS_API_PASSWORD not set: API not asked to reload (it polls)")
        return None
    try:
        form = urllib.parse.urlencode({"username": username, "password": password}).encode()
        with urllib.request.urlopen(f"{API_URL}/auth/token", data=form, timeout=15) as response:  # noqa: S310
            token = json.load(response)["access_token"]
        request = urllib.request.Request(  # noqa: S310
            f"{API_URL}/model/reload", method="POST", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=90) as response:  # noqa: S310
            answer = json.load(response)
    except (urllib.error.URLError, OSError, ValueError, KeyError) as error:
        log.warning("API at %s not reloaded (%s): it picks up the new champion when it next polls", API_URL, error)
        return None
    model = answer.get("model") or {}
    log.info("API model check: %s", json.dumps(answer.get("check")))
    log.info("API now serves %s version %s", model.get("model_name"), model.get("version"))
    return {"check": answer.get("check"), "version": model.get("version")}


with DAG(
    dag_id=DAG_ID,
    description="Retrain the accident-severity model (DVC pipeline) and refresh the API's champion",
    schedule=helpers.schedule("ACCIDENTS_RETRAIN_SCHEDULE", "none"),
    start_date=helpers.start_date(),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=1,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    },
    params={
        "force": Param(True, type="boolean", description="rerun every stage (dvc repro -f)"),
        "refresh_data": Param(True, type="boolean", description="rerun import_data even when force is off"),
        "reason": Param("", type="string", description="why the run started (tag run_reason on the MLflow run)"),
    },
    tags=["accidents", "dvc", "mlflow"],
    doc_md=__doc__,
) as dag:
    # One task per DVC stage, in dvc.yaml's order; the branches hang off stages by name, so a stage
    # added to STAGES joins the chain without moving them (tests/airflow checks both).
    stages = {
        stage: BashOperator(
            task_id=stage,
            bash_command=stage_command(stage),
            cwd=str(PROJECT_DIR),
            env=stage_env(),
            execution_timeout=TIMEOUTS[stage],
        )
        for stage in STAGES
    }
    chain(*stages.values())

    push_artifacts = BashOperator(
        task_id="push_artifacts",
        # Like retraining_run.sh: push data and models to the default DVC remote when one is set.
        bash_command=exchanged(
            f"if {shlex.quote(str(DVC))} remote default >/dev/null 2>&1; then {shlex.quote(str(DVC))} push; "
            "else echo 'no default DVC remote: nothing to push'; fi"
        ),
        cwd=str(PROJECT_DIR),
        env=stage_env(),
        execution_timeout=timedelta(minutes=30),
    )
    stages["evaluate"] >> reload_api_model()
    stages["predict"] >> push_artifacts
