#!/usr/bin/env bash
# Command prefix of the containers that run the DVC pipeline in the scale-out stack (trainer,
# Airflow workers: docker-compose.scale.yml), then exec the given command:
#   - the S3 identity (S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY) into ~/.aws/credentials, mode
#     0600, and out of the environment: boto3 and dvc-s3 read the file, so the pipeline's stages
#     get no secret in their environment (nothing for Airflow to render or log);
#   - the DVC remote `s3` (DVC_S3_REMOTE_URL, endpoint AWS_ENDPOINT_URL) as the default remote in
#     .dvc/config.local (the image's `compose` remote is a local folder).
#   docker/app/s3-client.sh COMMAND [ARG ...]
set -euo pipefail
: "${S3_ACCESS_KEY_ID:?set S3_ACCESS_KEY_ID}" "${S3_SECRET_ACCESS_KEY:?set S3_SECRET_ACCESS_KEY}"
: "${AWS_ENDPOINT_URL:?set AWS_ENDPOINT_URL}" "${DVC_S3_REMOTE_URL:?set DVC_S3_REMOTE_URL}"
mkdir -p "$HOME/.aws"
(umask 077 && printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
  "$S3_ACCESS_KEY_ID" "$S3_SECRET_ACCESS_KEY" >"$HOME/.aws/credentials")
printf '[default]\nregion = us-east-1\n' >"$HOME/.aws/config"
unset S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY
cd /app
dvc=/app/.venv/bin/dvc
"$dvc" remote add --local --force --default s3 "$DVC_S3_REMOTE_URL"
"$dvc" remote modify --local s3 endpointurl "$AWS_ENDPOINT_URL"
echo "s3-client: DVC remote s3 -> $DVC_S3_REMOTE_URL at $AWS_ENDPOINT_URL (credentials in ~/.aws, mode 0600)"
exec "$@"
