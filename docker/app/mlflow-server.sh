#!/usr/bin/env bash
# MLflow tracking server inside the API + pipeline image (compose service `mlflow`): the
# container form of scripts/mlflow_server.sh, always with MLflow's basic auth (every request needs
# a login; accounts: scripts/mlflow_accounts.py, the compose service `mlflow-accounts`).
# exec: the container's PID 1 is the server. Everything secret comes by environment, which
# `mlflow server` reads itself: nothing with a password on the command line, where `ps` shows it.
#   MLFLOW_BACKEND_STORE_URI       (required) e.g. postgresql+psycopg://mlflow:<password>@postgres:5432/mlflow
#   MLFLOW_AUTH_DATABASE_URI       (required) the auth app's users and permissions, e.g. .../mlflow_auth
#   MLFLOW_AUTH_ADMIN_PASSWORD     (required at first start) the admin's; MLFLOW_AUTH_ADMIN_USERNAME (admin)
#   MLFLOW_FLASK_SERVER_SECRET_KEY (required) signs the sign-up page's CSRF tokens
#   MLFLOW_ARTIFACTS_DESTINATION (/mlflow/artifacts: a named volume), served through the server
#   MLFLOW_SERVER_ALLOWED_HOSTS  Host headers accepted (service name, localhost, extra names)
#   MLFLOW_PORT (5000)
set -euo pipefail
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (compose does)}"
: "${MLFLOW_AUTH_DATABASE_URI:?set MLFLOW_AUTH_DATABASE_URI (compose does)}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY (compose does)}"
export MLFLOW_ARTIFACTS_DESTINATION="${MLFLOW_ARTIFACTS_DESTINATION:-/mlflow/artifacts}"
[[ "$MLFLOW_ARTIFACTS_DESTINATION" == *://* ]] || mkdir -p "$MLFLOW_ARTIFACTS_DESTINATION"
# The auth app reads its database URI from a config file only: written 0600, outside the image.
umask 077
export MLFLOW_AUTH_CONFIG_PATH="${TMPDIR:-/tmp}/mlflow-basic-auth.ini"
export MLFLOW_AUTH_ADMIN_USERNAME="${MLFLOW_AUTH_ADMIN_USERNAME:-admin}"
printf '[mlflow]\ndefault_permission = READ\ndatabase_uri = %s\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n' \
  "$MLFLOW_AUTH_DATABASE_URI" >"$MLFLOW_AUTH_CONFIG_PATH"
unset MLFLOW_AUTH_DATABASE_URI
# Jobs off and a single worker: the defaults start ~15 processes and 3 GB.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
exec mlflow server \
  --host 0.0.0.0 \
  --port "${MLFLOW_PORT:-5000}" \
  --workers 1 \
  --serve-artifacts \
  --app-name basic-auth \
  --allowed-hosts "${MLFLOW_SERVER_ALLOWED_HOSTS:-mlflow,mlflow:5000,localhost,localhost:*,127.0.0.1,127.0.0.1:*}"
