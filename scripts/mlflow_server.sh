#!/usr/bin/env bash
# Runs the MLflow tracking server in the foreground (exec: the caller's PID is the server's).
# One definition of how MLflow runs locally, used by `make mlflow`, `make run` and the tests.
#   MLFLOW_HOST (127.0.0.1)  MLFLOW_PORT (5000)  MLFLOW_STATE_DIR (accidents.config Paths.mlruns)
set -euo pipefail
project_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Default state dir: accidents.config.Paths.mlruns (the one definition of the path).
state_dir="${MLFLOW_STATE_DIR:-$("$project_dir/.venv/bin/python" -c 'from accidents.config import paths; print(paths().mlruns)')}"
mkdir -p "$state_dir/artifacts"
# Jobs off and a single worker: the defaults start ~15 processes and 3 GB on these machines.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
exec "$project_dir/.venv/bin/mlflow" server \
  --host "${MLFLOW_HOST:-127.0.0.1}" \
  --port "${MLFLOW_PORT:-5000}" \
  --workers 1 \
  --backend-store-uri "sqlite:///$state_dir/mlflow.db" \
  --artifacts-destination "$state_dir/artifacts" \
  --serve-artifacts \
  ${MLFLOW_ALLOWED_HOSTS:+--allowed-hosts "$MLFLOW_ALLOWED_HOSTS"}
