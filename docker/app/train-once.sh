#!/usr/bin/env bash
# One-shot `trainer` service: makes sure a first model exists before the API starts.
# The registry already has a `champion` -> nothing to do (later `docker compose up` return at
# once). Otherwise the whole DVC pipeline runs once (./retraining_run.sh --force: import_data ->
# preprocess -> train -> evaluate, then dvc push to the dvc-remote volume): the first model is
# always promoted, and models/champion.zip lands on the shared `models` volume.
set -euo pipefail
cd /app
# 0: a champion exists, 3: none yet, anything else: MLflow trouble (fail, do not train blindly).
rc=0
python3 - <<'PY' || rc=$?
import sys
from accidents.model import registry
sys.exit(0 if registry.champion_version(registry.client()) is not None else 3)
PY
case $rc in
  0) echo "train-once: the registry already has a champion: nothing to train"; exit 0 ;;
  3) ;;
  *) echo "train-once: could not ask MLflow at $MLFLOW_TRACKING_URI for the champion (exit $rc)" >&2; exit 1 ;;
esac
echo "train-once: no champion in $MLFLOW_TRACKING_URI yet: running the pipeline once (BAAC_DATA_DIR=${BAAC_DATA_DIR:-unset})"
start=$(date +%s)
./retraining_run.sh --force
echo "train-once: first model trained and promoted in $(($(date +%s) - start)) s"
