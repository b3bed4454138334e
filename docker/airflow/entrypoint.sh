#!/usr/bin/env bash
# Entrypoint of the Airflow image. The first argument is the role:
#   init            wait for the metadata database, `airflow db migrate`, record the DAG's
#                   schedule start (compose service airflow-init, a one-shot)
#   api-server      UI + REST API v2 + execution API on :8080 (one uvicorn worker by default)
#   scheduler       scheduler; with the LocalExecutor it also runs the tasks (the DVC stages)
#   dag-processor   parses /app/airflow/dags
#   celery-worker   Celery worker (docker-compose.scale.yml)
#   anything else   run as a command (bash, airflow dags list, ...)
# Environment (docker-compose.yml sets it): AIRFLOW__* settings, AIRFLOW_ADMIN_USERNAME /
# AIRFLOW_ADMIN_PASSWORD for the simple auth manager's passwords file.
set -euo pipefail
role="${1:-api-server}"
[ $# -gt 0 ] && shift
state_dir="${AIRFLOW_STATE_DIR:-$AIRFLOW_HOME/state}"

# The simple auth manager reads fixed passwords from this file (users in
# AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS); written from the environment at every start.
passwords="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-$AIRFLOW_HOME/passwords.json}"
(umask 077 && python3 - "$passwords" <<'PY'
import json, os, sys
user = os.environ.get("AIRFLOW_ADMIN_USERNAME") or "admin"
password = os.environ.get("AIRFLOW_ADMIN_PASSWORD") or "admin"
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    json.dump({user: password}, handle)
PY
)

# MLflow asks for a login (basic-auth). The DVC stages the DAG starts get an environment of their
# own (airflow/dags/retraining.py, stage_env: rendered in Airflow's UI), so the pipeline's login
# reaches them as MLflow's credentials file in $HOME (read by every MLflow client; 0600), never as a
# templated value.
if [ -n "${MLFLOW_TRACKING_USERNAME:-}" ] && [ -n "${MLFLOW_TRACKING_PASSWORD:-}" ]; then
  (umask 077 && mkdir -p "$HOME/.mlflow" && python3 - "$HOME/.mlflow/credentials" <<'PY'
import configparser, os, sys
config = configparser.ConfigParser(interpolation=None)
config["mlflow"] = {"mlflow_tracking_username": os.environ["MLFLOW_TRACKING_USERNAME"],
                    "mlflow_tracking_password": os.environ["MLFLOW_TRACKING_PASSWORD"]}
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    config.write(handle)
PY
  )
fi

# The DAG's first scheduled run comes after this instant, not at once (Airflow 3 otherwise runs
# the latest past schedule point as soon as the DAG appears). Made once by `init`, kept in the
# airflow-state volume.
if [ -z "${ACCIDENTS_SCHEDULE_START:-}" ] && [ -s "$state_dir/schedule_start" ]; then
  ACCIDENTS_SCHEDULE_START="$(cat "$state_dir/schedule_start")"
  export ACCIDENTS_SCHEDULE_START
fi

case "$role" in
  init)
    echo "airflow-init: waiting for the metadata database"
    for attempt in $(seq 1 60); do
      airflow db check >/dev/null 2>&1 && break
      [ "$attempt" = 60 ] && { airflow db check; exit 1; }
      sleep 2
    done
    airflow db migrate
    mkdir -p "$state_dir"
    if [ ! -s "$state_dir/schedule_start" ]; then
      date -u +%Y-%m-%dT%H:%M:%S+00:00 >"$state_dir/schedule_start"
    fi
    echo "airflow-init: database migrated; schedule start $(cat "$state_dir/schedule_start")"
    ;;
  api-server)
    exec airflow api-server --host 0.0.0.0 --port "${AIRFLOW_API_PORT:-8080}" --workers "${AIRFLOW__API__WORKERS:-1}" "$@"
    ;;
  scheduler)
    # Task log server off (it binds 0.0.0.0:8793): every Airflow container shares the logs volume.
    exec airflow scheduler --skip-serve-logs "$@"
    ;;
  dag-processor)
    exec airflow dag-processor "$@"
    ;;
  celery-worker)
    exec airflow celery worker --skip-serve-logs --concurrency "${AIRFLOW_WORKER_CONCURRENCY:-1}" "$@"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
