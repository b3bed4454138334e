"""A real Alertmanager for tests (Debian's `prometheus-alertmanager`), on a free loopback port,
delivering to the API's receiver with the repo's config (accidents.stack.alertmanager_config)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from accidents.stack.alertmanager_config import Timing, write_config
from tests.support.processes import ManagedProcess, free_port, start_service

BINARIES = ("prometheus-alertmanager", "alertmanager")  # Debian's name, upstream's
FAST = Timing(group_wait="1s", group_interval="1s", repeat_interval="1h")  # a test sees changes within seconds


def alertmanager_binary() -> str:
    """A failure (not a skip) when missing: CI installs the Debian package."""
    path = next((found for name in BINARIES if (found := shutil.which(name))), None)
    if path is None:
        pytest.fail("Alertmanager not found on PATH: apt-get install prometheus-alertmanager (.ci/run does)")
    return path


@dataclass
class AlertmanagerServer:
    url: str
    address: str  # host:port, for Prometheus' alerting section
    process: ManagedProcess

    def stop(self) -> None:
        self.process.stop()


def start_alertmanager(folder: Path, api_url: str, token: str, timing: Timing = FAST) -> AlertmanagerServer:
    """Alertmanager routing every alert to `api_url`'s receiver with `token` (a 0600 file)."""
    folder.mkdir(parents=True, exist_ok=True)
    token_file = folder / "receiver_token"
    token_file.touch(mode=0o600)
    token_file.write_text(token)
    config = write_config(folder / "alertmanager.yml", api_url, token_file, timing)
    port = free_port()
    cmd = [
        alertmanager_binary(),
        f"--config.file={config}",
        f"--storage.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip port: one instance
    ]
    url = f"http://127.0.0.1:{port}"
    process = start_service(cmd, folder / "alertmanager.log", f"{url}/-/ready", timeout=60)
    return AlertmanagerServer(url, f"127.0.0.1:{port}", process)
