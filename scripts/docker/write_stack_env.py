"""Write the env file of one throw-away test stack (scripts/docker/compose_test.sh, scale_test.sh).

Free host ports on 127.0.0.1, generated passwords and keys, production mode (demo credentials
refused, these generated ones accepted), no schedules (the suites trigger the DAGs themselves).
The file is created 0600: it holds every secret of the stack.

    write_stack_env.py PATH --by compose_test.sh --base-image IMAGE --baac DIR --tag e2e \\
        --ports API_HOST_PORT,MLFLOW_HOST_PORT [--s3] [--set NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import socket
from pathlib import Path


def free_ports(names: list[str]) -> dict[str, int]:
    """One free port per name; the probes stay bound until all are chosen, so no two are equal."""
    probes = []
    try:
        for _ in names:
            probe = socket.socket()
            probes.append(probe)
            probe.bind(("127.0.0.1", 0))
        return {name: probe.getsockname()[1] for name, probe in zip(names, probes, strict=True)}
    finally:
        for probe in probes:
            probe.close()


def token(length: int = 24) -> str:
    return secrets.token_urlsafe(length)


def stack_values(base_image: str, baac: str, tag: str, ports: dict[str, int], s3: bool) -> dict[str, object]:
    values: dict[str, object] = {
        "BASE_IMAGE": base_image,
        "IMAGE_TAG": tag,
        "PUBLISH_ADDRESS": "127.0.0.1",
        **ports,
        "AIRFLOW_BASE_URL": f"http://localhost:{ports['AIRFLOW_HOST_PORT']}",
        "BAAC_DATA_DIR": baac,
        "POSTGRES_PASSWORD": token(),
        "AIRFLOW_DB_PASSWORD": token(),
        "MLFLOW_DB_PASSWORD": token(),
        "API_DB_PASSWORD": token(),
        "MONITORING_DB_PASSWORD": token(),
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": token(18),
        "MLFLOW_PIPELINE_PASSWORD": token(18),
        "MLFLOW_API_PASSWORD": token(18),
        "MLFLOW_PROMOTER_PASSWORD": token(18),
        "MLFLOW_FLASK_SECRET_KEY": token(32),
        "API_ENVIRONMENT": "production",
        "JWT_SECRET": token(48),
        "ALERTS_RECEIVER_TOKEN": token(48),
        "ADMIN_USERNAME": "admin",
        "ADMIN_PASSWORD": token(18),
        "AIRFLOW_ADMIN_USERNAME": "admin",
        "AIRFLOW_ADMIN_PASSWORD": token(18),
        "AIRFLOW_JWT_SECRET": token(48),
        "AIRFLOW_SECRET_KEY": token(32),
        "AIRFLOW_FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "ACCIDENTS_RETRAIN_SCHEDULE": "none",
        "ACCIDENTS_MONITORING_SCHEDULE": "none",
        "MODEL_POLL_SECONDS": "30",
    }
    if s3:
        values.update(S3_ACCESS_KEY_ID="stack" + secrets.token_hex(6), S3_SECRET_ACCESS_KEY=token(30))
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--by", required=True, help="the script writing it (said in the file's first line)")
    parser.add_argument("--base-image", required=True)
    parser.add_argument("--baac", required=True, help="the official BAAC tables' folder")
    parser.add_argument("--tag", required=True, help="IMAGE_TAG of the stack's images")
    parser.add_argument("--ports", required=True, help="comma-separated names of the host ports to choose")
    parser.add_argument("--s3", action="store_true", help="also generate the S3 store's keys")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override one value")
    args = parser.parse_args()
    names = [name for name in args.ports.split(",") if name]
    if "AIRFLOW_HOST_PORT" not in names:
        parser.error("--ports must name AIRFLOW_HOST_PORT (AIRFLOW_BASE_URL is built from it)")
    ports = free_ports(names)
    values = stack_values(args.base_image, args.baac, args.tag, ports, args.s3)
    for item in args.set:
        name, separator, value = item.partition("=")
        if not separator:
            parser.error(f"--set {item!r}: expected NAME=VALUE")
        values[name] = value
    descriptor = os.open(args.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(f"# written by scripts/docker/{args.by}: throw-away values for one test stack\n")
        handle.writelines(f"{name}={value}\n" for name, value in values.items())


if __name__ == "__main__":
    main()
