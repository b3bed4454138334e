"""Alertmanager's configuration for the accidents API: every alert of deploy/prometheus/alerts.yml
goes to one receiver, the API's `POST /monitoring/alerts`, firing and resolved, authenticated with
the receiver's own bearer secret read from a file (ALERTS_RECEIVER_TOKEN's value; never in the
config itself).

The compose stack ships it as deploy/alertmanager/alertmanager.yml (checked against
`alertmanager_config` by tests/prometheus); `make run PROMETHEUS=1` and the tests write their own
copy pointing at a loopback API, with shorter waits in the tests:

    python -m accidents.stack.alertmanager_config --receiver http://127.0.0.1:8000 \\
        --credentials-file state/alertmanager/receiver_token --out state/alertmanager/alertmanager.yml
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from accidents.config import API_PORT, DEFAULT_HOST

RECEIVER = "accidents-api"
RECEIVER_PATH = "/monitoring/alerts"
COMPOSE_CONFIG = "alertmanager.yml"  # in deploy/alertmanager
COMPOSE_API = "http://api:8000"
COMPOSE_CREDENTIALS_FILE = "/run/alertmanager/receiver_token"  # written from the env at start (docker/alertmanager)
PORT = 9093  # Alertmanager's usual port: `make run PROMETHEUS=1` (ALERTMANAGER_PORT) and compose
MAX_ALERTS = 100  # per notification: bounds the receiver's body (api/monitoring/alerts.py)


@dataclass(frozen=True)
class Timing:
    """Alertmanager's grouping waits: production defaults; tests use seconds."""

    group_wait: str = "30s"  # first notification of a new group
    group_interval: str = "5m"  # changes (new alerts, resolutions) of a notified group
    repeat_interval: str = "4h"  # the same firing alerts again


def alertmanager_config(api_url: str, credentials_file: str, timing: Timing = Timing()) -> dict[str, Any]:
    """The whole alertmanager.yml as a dict."""
    return {
        "route": {
            "receiver": RECEIVER,
            "group_by": ["alertname", "instance", "version"],
            "group_wait": timing.group_wait,
            "group_interval": timing.group_interval,
            "repeat_interval": timing.repeat_interval,
        },
        "receivers": [
            {
                "name": RECEIVER,
                "webhook_configs": [
                    {
                        "url": f"{api_url.rstrip('/')}{RECEIVER_PATH}",
                        "send_resolved": True,
                        "max_alerts": MAX_ALERTS,
                        "http_config": {"authorization": {"type": "Bearer", "credentials_file": credentials_file}},
                    }
                ],
            }
        ],
    }


def write_config(path: Path, api_url: str, credentials_file: Path, timing: Timing = Timing()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    config = alertmanager_config(api_url, str(credentials_file), timing)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accidents alertmanager-config", description=__doc__.split("\n\n")[0])
    parser.add_argument("--receiver", default=f"http://{DEFAULT_HOST}:{API_PORT}", help="the API's base URL")
    parser.add_argument("--credentials-file", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    write_config(args.out, args.receiver, args.credentials_file)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
