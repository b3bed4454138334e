#!/usr/bin/env bash
# Build step of both runtime images (Dockerfile targets api and airflow), as root, after the
# project is copied to /app:
#   - the writable dirs the named volumes mount over (a fresh volume takes their owner and mode),
#     plus the extra dirs given as arguments, owned by the service user `app`;
#   - DVC's site cache, cache and tmp private to that user, mode 0700: the mitigation of the
#     diskcache advisory PYSEC-2026-2447 (security/audit-exceptions.txt);
#   - the image's DVC settings (docker/app/dvc-config.local: no git, the dvc-remote volume, the
#     private site cache);
#   - the project's own bytecode.
#   docker/prepare-project.sh [EXTRA_DIR ...]
set -euo pipefail
cd /app
private=(.dvc/cache .dvc/tmp .dvc/tmp/site-cache)
writable=(data models reports state .dvc /srv/dvc-remote "$@")
mkdir -p "${writable[@]}" "${private[@]}"
cp docker/app/dvc-config.local .dvc/config.local
/app/.venv/bin/python -m compileall -q src api
chown app:app /app
chown -R app:app "${writable[@]}"
chmod 0700 "${private[@]}"
chmod 0755 docker/app/*.sh docker/airflow/entrypoint.sh retraining_run.sh
