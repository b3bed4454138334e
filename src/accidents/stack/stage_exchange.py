"""Hand a DAG run's DVC state from one worker to the next through an S3 store.

With several Airflow workers (the CeleryExecutor of docker-compose.scale.yml) each task of the
retraining DAG may run on another machine, with its own project directory and no shared volume.
Around each stage (`dvc repro -s <stage>`) the DAG then runs:

    python -m accidents.stack.stage_exchange pull RUN_ID          # before the stage
    python -m accidents.stack.stage_exchange push RUN_ID [STAGE]  # after it

- pull: the run's `dvc.lock` and the outputs DVC does not cache (`cache: false`: the champion's
  local copy, metrics, reports), saved by the previous stage under
  `<ACCIDENTS_STAGE_EXCHANGE>/<run>/`, then `dvc pull --allow-missing`: the cached outputs the
  lock names, from the DVC remote. The first stage of a run finds nothing and starts clean.
- push: `dvc push [STAGE]` (the stage's outputs to the DVC remote), then the lock and the
  uncached outputs back under the run's prefix.

Models travel through the MLflow registry as usual (train registers, evaluate moves the alias).
Tasks of one run must not run concurrently (the DAG has max_active_tasks=1): the lock is read,
updated by one stage and written back.

    ACCIDENTS_STAGE_EXCHANGE  s3://bucket/prefix of the runs' state (required)
    AWS_ENDPOINT_URL          the S3 endpoint (SeaweedFS, MinIO, ...; unset: AWS)
Credentials: boto3's usual chain (~/.aws/credentials in the stack: docker/app/s3-client.sh).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from accidents.config import project_dir

ENV_EXCHANGE = "ACCIDENTS_STAGE_EXCHANGE"
LOCK = "dvc.lock"
FILES = "files"


def run_prefix(exchange_url: str, run_id: str) -> tuple[str, str]:
    """(bucket, key prefix ending in '/') of one run's state; the run id made key-safe."""
    parsed = urlparse(exchange_url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{ENV_EXCHANGE} must be s3://bucket/prefix, got {exchange_url!r}")
    safe_run = re.sub(r"[^A-Za-z0-9._-]", "_", run_id)
    prefix = "/".join(part for part in (parsed.path.strip("/"), safe_run) if part)
    return parsed.netloc, f"{prefix}/"


def uncached_outputs(root: Path) -> list[Path]:
    """Every existing output of the pipeline that DVC does not cache (so the remote lacks it)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        paths = {Path(out.fs_path) for stage in repo.index.stages for out in stage.outs if not out.use_cache}
    files = []
    for path in sorted(paths):
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(sorted(child for child in path.rglob("*") if child.is_file()))
    return files


def _client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


def _dvc(root: Path, *args: str) -> None:
    dvc = Path(sys.executable).with_name("dvc")
    subprocess.run([str(dvc), *args], cwd=root, check=True)


def pull(root: Path, exchange_url: str, run_id: str) -> int:
    """Restore the run's state; returns how many files came from the exchange."""
    bucket, prefix = run_prefix(exchange_url, run_id)
    s3 = _client()
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
    ]
    if f"{prefix}{LOCK}" not in keys:
        print(f"stage_exchange: no state for run {run_id} yet (first stage): starting clean")
        return 0
    for key in keys:
        relative = key[len(prefix) :]
        relative = relative[len(FILES) + 1 :] if relative.startswith(f"{FILES}/") else relative
        target = (root / relative).resolve()
        if root.resolve() not in target.parents:
            raise ValueError(f"refusing to write {key} outside the project")
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
    print(f"stage_exchange: run {run_id}: {len(keys)} file(s) from s3://{bucket}/{prefix}; dvc pull")
    _dvc(root, "pull", "--allow-missing")
    return len(keys)


def push(root: Path, exchange_url: str, run_id: str, stage: str | None) -> int:
    """Save the run's state after a stage; returns how many files went to the exchange."""
    _dvc(root, "push", *([stage] if stage else []))
    bucket, prefix = run_prefix(exchange_url, run_id)
    s3 = _client()
    uploads = [(root / LOCK, f"{prefix}{LOCK}")]
    uploads += [(path, f"{prefix}{FILES}/{path.relative_to(root).as_posix()}") for path in uncached_outputs(root)]
    for path, key in uploads:
        s3.upload_file(str(path), bucket, key)
    print(f"stage_exchange: run {run_id}: {len(uploads)} file(s) to s3://{bucket}/{prefix}")
    return len(uploads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("pull", "push"))
    parser.add_argument("run_id")
    parser.add_argument("stage", nargs="?", help="push: only this stage's outputs to the DVC remote")
    args = parser.parse_args(argv)
    exchange_url = os.environ.get(ENV_EXCHANGE)
    if not exchange_url:
        parser.error(f"{ENV_EXCHANGE} is not set")
    root = project_dir()
    if args.action == "pull":
        pull(root, exchange_url, args.run_id)
    else:
        push(root, exchange_url, args.run_id, args.stage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
