"""A real headless Chromium (Debian's `chromium`) driven over the DevTools protocol.

Chromium starts with `--remote-debugging-port=0` on loopback and writes the port it chose to
`DevToolsActivePort` in its profile folder; the test talks to the page's WebSocket with the
`websockets` library (already in the lock through uvicorn). Console errors, uncaught exceptions
and CSP violations are collected so a test can assert that the page ran cleanly.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.sync.client import ClientConnection, connect

from tests.support.processes import ManagedProcess

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
)  # fmt: skip


class Page:
    def __init__(self, socket: ClientConnection):
        self.socket = socket
        self._next_id = 0
        self.problems: list[str] = []  # console errors, exceptions, CSP violations

    def send(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        wanted = self._next_id
        self.socket.send(json.dumps({"id": wanted, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.problems.append(f"exception: {details.get('exception', {}).get('description') or details['text']}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            values = (str(arg.get("value", arg.get("description"))) for arg in params["args"])
            self.problems.append("console: " + " ".join(values))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.problems.append(f"log: {entry['text']} {entry.get('url', '')}".rstrip())

    def evaluate(self, expression: str, timeout: float = 30) -> Any:
        result = self.send("Runtime.evaluate", timeout, expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60, what: str | None = None) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what or expression} not true after {timeout} s (problems: {self.problems})")
            time.sleep(0.2)

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", what=f"{url} loaded")

    def screenshot(self, path: Path, width: int = 1400) -> Path:
        """The whole page as a PNG."""
        height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        time.sleep(0.3)  # a layout pass at the new size
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


def chromium_binary() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium not found on PATH: install the Debian package `chromium` (.ci/run does)")
    return path


@contextmanager
def headless_page(profile: Path, width: int = 1400, height: int = 1000) -> Iterator[Page]:
    """A fresh headless Chromium (its own profile folder), one blank page; stopped by PID after."""
    profile.mkdir(parents=True, exist_ok=True)
    cmd = [chromium_binary(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"]
    process = ManagedProcess(cmd, profile.parent / "chromium.log")
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            if not process.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not open its DevTools port:\n{process.log_tail()}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page_target = next(target for target in targets if target["type"] == "page")
        with connect(page_target["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=30) as socket:
            page = Page(socket)
            for domain in ("Page", "Runtime", "Log"):
                page.send(f"{domain}.enable")
            page.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)  # fmt: skip
            yield page
    finally:
        process.stop()
