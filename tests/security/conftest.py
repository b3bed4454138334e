"""Security and reliability suite: shared helpers.

Everything runs on 127.0.0.1: in-process apps (TestClient, real SQLite), real uvicorn processes on
free ports, real MLflow servers with registries of our own (tests here move the champion alias or
stop the server, so they never touch the session's shared registry). Processes are stopped by PID.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import started_apps

# What a leaked stack trace or internal detail looks like in a response body.
LEAK_PATTERNS = re.compile(
    r"Traceback|File \"|line \d+, in |sqlalchemy|sqlite3\.|OperationalError|pydantic_core|/site-packages/|"
    r"\.py\b|Exception:",
)


def assert_no_leak(text: str) -> None:
    """No stack trace, exception class or source path in an answer."""
    match = LEAK_PATTERNS.search(text)
    assert match is None, f"response leaks internals ({match.group(0)!r}): {text[:300]}"


@pytest.fixture
def app_factory(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Server exceptions become 500s, as in production, so a test sees exactly what a client would."""
    yield from started_apps(tmp_path, raise_server_exceptions=False)


def post_form_from(url: str, path: str, form: dict[str, str], source_ip: str) -> tuple[int, dict]:
    """POST a form from another loopback address (127.0.0.x): another client, as the throttle sees it."""
    parsed = urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30, source_address=(source_ip, 0))
    try:
        connection.request("POST", path, urlencode(form), {"Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def login_from(url: str, username: str, password: str, source_ip: str = "127.0.0.2") -> dict[str, str]:
    status, body = post_form_from(url, "/auth/token", {"username": username, "password": password}, source_ip)
    assert status == 200, body
    return {"Authorization": f"Bearer {body['access_token']}"}
