#!/usr/bin/env bash
# MLflow tracking server inside the API + pipeline image (compose service `mlflow`): the
# container form of scripts/mlflow_server.sh. exec: the container's PID 1 is the server.
#   MLFLOW_BACKEND_STORE_URI   (required) e.g. postgresql+psycopg://mlflow:<password>@postgres:5432/mlflow
#   MLFLOW_ARTIFACTS_DESTINATION (/mlflow/artifacts: a named volume), served through the server
#   MLFLOW_SERVER_ALLOWED_HOSTS  Host headers accepted (service name, localhost, extra names)
#   MLFLOW_PORT (5000)
set -euo pipefail
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (compose does)}"
artifacts="${MLFLOW_ARTIFACTS_DESTINATION:-/mlflow/artifacts}"
mkdir -p "$artifacts"
# Jobs off and a single worker: the defaults start ~15 processes and 3 GB.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
exec mlflow server \
  --host 0.0.0.0 \
  --port "${MLFLOW_PORT:-5000}" \
  --workers 1 \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "$artifacts" \
  --serve-artifacts \
  --allowed-hosts "${MLFLOW_SERVER_ALLOWED_HOSTS:-mlflow,mlflow:5000,localhost,localhost:*,127.0.0.1,127.0.0.1:*}"
