#!/usr/bin/env bash
# Reruns the DVC pipeline (import_data -> preprocess -> train -> evaluate -> predict) from any directory,
# then pushes data and models to the default DVC remote. Extra arguments go to `dvc repro`
# (e.g. ./retraining_run.sh --force). Exits non-zero when any stage fails.
set -euo pipefail
project_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$project_dir"
dvc="$project_dir/.venv/bin/dvc"
[ -x "$dvc" ] || { echo "retraining_run.sh: $dvc missing; run 'make setup' first" >&2; exit 2; }
# The venv's python first: dvc stages run `python -m accidents.pipeline.<stage>`.
export PATH="$project_dir/.venv/bin:$PATH"
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-http://127.0.0.1:5000}"

echo "retraining_run.sh: dvc repro $* (MLflow: $MLFLOW_TRACKING_URI)"
"$dvc" repro "$@"
"$dvc" metrics show
if "$dvc" remote default >/dev/null 2>&1; then
  "$dvc" push --quiet || { echo "retraining_run.sh: dvc push failed (the run itself succeeded)" >&2; exit 3; }
fi
