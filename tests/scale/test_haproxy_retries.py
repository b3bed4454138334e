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


@pytest.fixture
def balancer(tmp_path) -> Iterator[tuple[str, Counter]]:
    seen: Counter[tuple[str, str]] = Counter()
    handler = type("Replica", (DyingReplica,), {"seen": seen})
    replicas = [ThreadingHTTPServer(("127.0.0.1", 0), handler) for _ in range(2)]
    for replica in replicas:
        threading.Thread(target=replica.serve_forever, daemon=True).start()
    port = free_port()
    config = CONFIG.read_text().replace("bind :8000", f"bind 127.0.0.1:{port}")
    config = re.sub(r" resolvers docker resolve-prefer ipv4 init-addr \S+", "", config)
    for index, replica in enumerate(replicas, start=1):
        config = re.sub(rf"(server api-{index}) \S+", rf"\1 127.0.0.1:{replica.server_address[1]}", config)
    (tmp_path / "haproxy.cfg").write_text(config)
    process = ManagedProcess([HAPROXY, "-db", "-f", str(tmp_path / "haproxy.cfg")], tmp_path / "haproxy.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", process, timeout=30)
        yield f"http://127.0.0.1:{port}", seen
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
