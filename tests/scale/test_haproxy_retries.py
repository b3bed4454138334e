"""The scale-out load balancer's retries (docker/haproxy/haproxy.cfg), on a real HAProxy (issue #23 item 12).

HAProxy resends a request whose connection closed before any answer (`retry-on empty-response`)
to another replica: right for a GET, wrong for a POST /predict or /retrain that the first replica
may have carried out before dying (a second prediction log row, a second DAG run). The shipped
configuration runs here with its two servers pointed at two loopback replicas that read each
request, count it and close the connection without an answer (a replica dying mid-request).
Runs where Debian's `haproxy` package is installed (the image installs the same one).
"""

from __future__ import annotations

import re
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.support.processes import ManagedProcess, free_port, wait_http

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "docker" / "haproxy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="no haproxy binary (apt-get install haproxy)")


class DyingReplica(BaseHTTPRequestHandler):
    """Ready for health checks; any other request is read, counted, and left without an answer."""

    seen: Counter[tuple[str, str]]

    def do_GET(self) -> None:
        if self.path == "/ready":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._die()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._die()

    def _die(self) -> None:
        self.seen[(self.command, self.path)] += 1
        self.close_connection = True  # no status line: the client sees the connection close

    def log_message(self, *args: object) -> None:
        pass


class AnsweringReplica(DyingReplica):
    """Answers every request 200 (and counts it)."""

    def _die(self) -> None:
        self.seen[(self.command, self.path)] += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def serve(replica_class: type[DyingReplica], seen: Counter) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Replica", (replica_class,), {"seen": seen}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_haproxy(folder: Path, ports: list[int], health_checks: bool = True) -> tuple[str, ManagedProcess]:
    """The shipped configuration on a free loopback port, its servers at `ports`."""
    port = free_port()
    config = CONFIG.read_text().replace("bind :8000", f"bind 127.0.0.1:{port}")
    config = re.sub(r" resolvers docker resolve-prefer ipv4 init-addr \S+", "", config)
    if not health_checks:  # every server taken as up: the first request goes to the first one
        config = config.replace("default-server check ", "default-server ")
    for index, server_port in enumerate(ports, start=1):
        config = re.sub(rf"(server api-{index}) \S+", rf"\1 127.0.0.1:{server_port}", config)
    (folder / "haproxy.cfg").write_text(config)
    process = ManagedProcess([HAPROXY, "-db", "-f", str(folder / "haproxy.cfg")], folder / "haproxy.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/ready", process, timeout=30)
    except BaseException:
        process.stop()
        raise
    return url, process


@pytest.fixture
def balancer(tmp_path) -> Iterator[tuple[str, Counter]]:
    seen: Counter[tuple[str, str]] = Counter()
    replicas = [serve(DyingReplica, seen) for _ in range(2)]
    url, process = run_haproxy(tmp_path, [replica.server_address[1] for replica in replicas])
    try:
        yield url, seen
    finally:
        process.stop()
        for replica in replicas:
            replica.shutdown()
            replica.server_close()


def test_the_shipped_configuration_is_valid():
    if HAPROXY is None:
        pytest.skip("no haproxy binary")
    import subprocess

    checked = subprocess.run([HAPROXY, "-c", "-f", str(CONFIG)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr


def test_only_idempotent_methods_are_retried_by_configuration():
    """The rule itself: L7 retries (empty or junk answers) off for everything but GET/HEAD/OPTIONS."""
    lines = [line.split("#")[0].strip() for line in CONFIG.read_text().splitlines()]
    assert "http-request disable-l7-retry unless METH_GET || METH_OPTIONS" in lines


@needs_haproxy
def test_a_post_a_replica_dropped_is_not_resent(balancer):
    url, seen = balancer
    for path in ("/predict", "/retrain"):
        answer = requests.post(f"{url}{path}", json={"features": [1]}, timeout=30)
        assert answer.status_code == 502, answer.status_code  # the client learns it failed
        assert seen[("POST", path)] == 1, seen  # carried out at most once


@needs_haproxy
def test_a_get_a_replica_dropped_is_retried_on_another(balancer):
    url, seen = balancer
    assert requests.get(f"{url}/model/info", timeout=30).status_code == 502
    assert seen[("GET", "/model/info")] == 4, seen  # the first try and `retries 3`


@needs_haproxy
def test_a_post_that_reached_no_replica_is_sent_to_another(tmp_path):
    """Connection refused (a stopped replica, before the health check notices): nothing was carried
    out, so the POST goes to the other replica and the client sees a 200."""
    seen: Counter[tuple[str, str]] = Counter()
    live = serve(AnsweringReplica, seen)
    url, process = run_haproxy(tmp_path, [free_port(), live.server_address[1]], health_checks=False)
    try:
        for _ in range(4):  # round robin: every other one is sent to the closed port first
            assert requests.post(f"{url}/predict", json={"features": [1]}, timeout=30).status_code == 200
        assert seen[("POST", "/predict")] == 4, seen
    finally:
        process.stop()
        live.shutdown()
        live.server_close()
