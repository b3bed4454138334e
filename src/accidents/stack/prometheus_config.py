"""Prometheus' configuration for the accidents API: one scrape job, the repo's alert rules, and
the Alertmanager(s) that deliver them (accidents.stack.alertmanager_config).

The compose stack ships it as a file (deploy/prometheus/prometheus.yml, checked against
`scrape_config` by tests/prometheus); `make run PROMETHEUS=1` and the tests write their own copy
pointing at a loopback API:

    python -m accidents.stack.prometheus_config --target 127.0.0.1:8000 --out state/prometheus/prometheus.yml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from accidents.config import API_PORT, DEFAULT_HOST, paths

JOB = "accidents-api"  # the `job` label every alert rule selects
RULES_FILE = "alerts.yml"  # in Paths.prometheus, beside its unit tests (alerts_test.yml)
COMPOSE_CONFIG = "prometheus.yml"
COMPOSE_TARGET = "api:8000"  # the API service of docker-compose.yml
COMPOSE_RULES = f"/etc/prometheus/{RULES_FILE}"  # where docker/prometheus/Dockerfile copies them
COMPOSE_ALERTMANAGER = "alertmanager:9093"  # the alertmanager service of docker-compose.yml


def scrape_config(targets: Sequence[str], rule_files: Sequence[str], scrape_interval: str = "15s",
                  evaluation_interval: str = "15s", alertmanagers: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    """The whole prometheus.yml as a dict: the API's /metrics on each target, the alert rules, and
    the Alertmanagers (host:port) they are sent to (none: alerts stay on Prometheus' /alerts page)."""
    alerting = {"alerting": {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}}
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        **(alerting if alertmanagers else {}),
        "rule_files": list(rule_files),
        "scrape_configs": [
            {
                "job_name": JOB,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }


def write_config(path: Path, targets: Sequence[str], rule_files: Sequence[str] | None = None,
                 scrape_interval: str = "15s", evaluation_interval: str = "15s",
                 alertmanagers: Sequence[str] = ()) -> Path:  # fmt: skip
    """Writes prometheus.yml to `path` (rules: the repo's alerts.yml by absolute path)."""
    rules = [str(paths().prometheus / RULES_FILE)] if rule_files is None else list(rule_files)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = scrape_config(targets, rules, scrape_interval, evaluation_interval, alertmanagers)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m accidents.stack.prometheus_config", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--target", action="append", help=f"host:port of an API (default {DEFAULT_HOST}:{API_PORT})")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scrape-interval", default="15s")
    parser.add_argument("--evaluation-interval", default="15s")
    parser.add_argument("--alertmanager", action="append", default=[], help="host:port of an Alertmanager")
    args = parser.parse_args(argv)
    targets = args.target or [f"{DEFAULT_HOST}:{API_PORT}"]
    write_config(args.out, targets, None, args.scrape_interval, args.evaluation_interval, args.alertmanager)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
