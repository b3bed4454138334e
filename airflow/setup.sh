#!/usr/bin/env bash
# Creates <project>/.venv-airflow from the pinned requirements/airflow.txt (idempotent).
# Airflow lives in its own venv: it pins FastAPI, SQLAlchemy and others to versions the API's
# venv does not use. The DAG imports nothing from the project, so nothing else goes in here.
# A second call returns at once while the lock file is unchanged (stamp file inside the venv).
set -euo pipefail
project_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${AIRFLOW_VENV:-$project_dir/.venv-airflow}"
lock="$project_dir/requirements/airflow.txt"
stamp="$venv/.installed"
# Bytecode compiled at install time: on machines with PYTHONDONTWRITEBYTECODE=1 Airflow
# otherwise takes 90-100 s to start instead of ~12 s.
export UV_COMPILE_BYTECODE=1

lock_sum="$(sha256sum "$lock" | cut -d' ' -f1)"
if [ -x "$venv/bin/airflow" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_sum" ]; then
  echo "airflow/setup.sh: $venv is up to date"
  exit 0
fi
command -v uv >/dev/null || { echo "airflow/setup.sh: uv not found (pip install uv)" >&2; exit 2; }
echo "airflow/setup.sh: installing Airflow into $venv (from $lock)"
[ -x "$venv/bin/python" ] || uv venv --quiet --python 3.11 "$venv"
uv pip install --quiet --python "$venv/bin/python" -r "$lock"
# Smoke check with AIRFLOW_HOME under the project (git-ignored), never ~/airflow.
version="$(AIRFLOW_HOME="${AIRFLOW_HOME:-$project_dir/state/airflow}" "$venv/bin/airflow" version)"
echo "$lock_sum" > "$stamp"
echo "airflow/setup.sh: done (apache-airflow $version)"
