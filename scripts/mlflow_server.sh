#!/usr/bin/env bash
# Runs the MLflow tracking server in the foreground (exec: the caller's PID is the server's).
# One definition of how MLflow runs locally, used by `make mlflow`, `make run` and the tests.
#   MLFLOW_HOST (127.0.0.1)  MLFLOW_PORT (5000)  MLFLOW_STATE_DIR (accidents.config Paths.mlruns)
#   MLFLOW_AUTH_ADMIN_PASSWORD  set: MLflow's basic auth (`--app-name basic-auth`), every request
#       needs a login; its users in $MLFLOW_STATE_DIR/auth.db, the admin (MLFLOW_AUTH_ADMIN_USERNAME,
#       default admin) created with this password at first start. Accounts: scripts/mlflow_accounts.py.
#       MLFLOW_FLASK_SERVER_SECRET_KEY (CSRF of the sign-up page): generated once into the state dir.
# The store URIs go to mlflow by environment (MLFLOW_BACKEND_STORE_URI, ...), not on the command
# line, where `ps` shows them to every local user.
set -euo pipefail
project_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Default state dir: accidents.config.Paths.mlruns (the one definition of the path).
state_dir="${MLFLOW_STATE_DIR:-$("$project_dir/.venv/bin/python" -c 'from accidents.config import paths; print(paths().mlruns)')}"
mkdir -p "$state_dir/artifacts"
# Jobs off and a single worker: the defaults start ~15 processes and 3 GB on these machines.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
export MLFLOW_BACKEND_STORE_URI="sqlite:///$state_dir/mlflow.db"
export MLFLOW_ARTIFACTS_DESTINATION="$state_dir/artifacts"
auth=()
if [[ -n "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ]]; then
  umask 077
  secret_file="$state_dir/flask-secret-key"
  [[ -s "$secret_file" ]] || "$project_dir/.venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))' >"$secret_file"
  export MLFLOW_FLASK_SERVER_SECRET_KEY="${MLFLOW_FLASK_SERVER_SECRET_KEY:-$(cat "$secret_file")}"
  export MLFLOW_AUTH_CONFIG_PATH="$state_dir/basic_auth.ini"
  export MLFLOW_AUTH_ADMIN_USERNAME="${MLFLOW_AUTH_ADMIN_USERNAME:-admin}"
  printf '[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///%s/auth.db\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n' \
    "$state_dir" >"$MLFLOW_AUTH_CONFIG_PATH"
  auth=(--app-name basic-auth)
fi
exec "$project_dir/.venv/bin/mlflow" server \
  --host "${MLFLOW_HOST:-127.0.0.1}" \
  --port "${MLFLOW_PORT:-5000}" \
  --workers 1 \
  --serve-artifacts \
  "${auth[@]}" \
  ${MLFLOW_ALLOWED_HOSTS:+--allowed-hosts "$MLFLOW_ALLOWED_HOSTS"}
