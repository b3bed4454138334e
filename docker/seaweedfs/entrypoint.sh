#!/usr/bin/env bash
# SeaweedFS in one process (master, volume, filer, S3 gateway on :8333), data in /data (a volume).
# The S3 identity comes from the environment (S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY: from .env)
# into a config file readable by this user only; the keys never reach the command line or a log.
set -euo pipefail
: "${S3_ACCESS_KEY_ID:?set S3_ACCESS_KEY_ID}" "${S3_SECRET_ACCESS_KEY:?set S3_SECRET_ACCESS_KEY}"
config=/etc/seaweedfs/s3.json
(umask 077 && python3 - "$config" <<'PY'
import json, os, sys
identity = {
    "name": "stack",
    "credentials": [{"accessKey": os.environ["S3_ACCESS_KEY_ID"], "secretKey": os.environ["S3_SECRET_ACCESS_KEY"]}],
    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
}
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    json.dump({"identities": [identity]}, handle)
PY
)
unset S3_SECRET_ACCESS_KEY
# Everything but the S3 port stays inside the container (127.0.0.1); volumes are small (64 MB)
# so a fresh store does not preallocate gigabytes.
exec weed server -dir=/data -ip=127.0.0.1 -ip.bind=0.0.0.0 \
  -master.volumeSizeLimitMB="${SEAWEEDFS_VOLUME_SIZE_MB:-64}" -volume.max=0 \
  -s3 -s3.port=8333 -s3.config="$config" "$@"
