"""Login limits as the shipped image runs them (issue #23, items 1 and 7), on real uvicorn.

The API image's command (Dockerfile CMD, with the image's FORWARDED_ALLOW_IPS) is started here on
127.0.0.1: a client that writes its own `X-Forwarded-For` must not become another client for the
throttle, and a username attacked from many clients must not lock its owner out. Password checks
(argon2id, 64 MiB each) are bounded: a storm of wrong logins keeps the process under the pod's
memory limit and `/predict` answering.
"""

from __future__ import annotations

import http.client
import json
import re
import shlex
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from fastapi.testclient import TestClient

from accidents.features import SEED_EXAMPLE
from tests.api.conftest import ADMIN, REPO, ApiServer, closed_url, login, project_with_champion, start_api
from tests.security.conftest import post_form_from

K8S_MEMORY_LIMIT_BYTES = 512 * 1024 * 1024  # deploy/kubernetes/api.yaml: limits.memory 512Mi
STORM = 32  # concurrent wrong logins (issue #23 item 7)


def image_api_command() -> tuple[list[str], dict[str, str]]:
    """The API stage's CMD (its options, without host and port) and its ENV, from the Dockerfile."""
    stage = (REPO / "Dockerfile").read_text().split("AS api\n", 1)[1]
    (cmd_line,) = re.findall(r"^CMD (\[.*\])$", stage, flags=re.MULTILINE)
    cmd = json.loads(cmd_line)
    assert cmd[:2] == ["uvicorn", "api.main:app"], cmd
    options, skip = [], False
    for arg in cmd[2:]:
        if skip:
            skip = False
        elif arg in ("--host", "--port"):
            skip = True
        else:
            options.append(arg)
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV ((?:.*\\\n)*.*)$", stage, flags=re.MULTILINE):
        for pair in shlex.split(block.replace("\\\n", " ")):
            name, _, value = pair.partition("=")
            env[name] = value
    return options, env


def start_image_api(tmp: Path, **env: str) -> ApiServer:
    """The image's uvicorn command and environment (PATH and HOME aside), on a free loopback port."""
    options, image_env = image_api_command()
    image_env = {name: value for name, value in image_env.items() if name not in ("PATH", "HOME")}
    return start_api(tmp, {**image_env, **env}, uvicorn=(sys.executable, "-m", "uvicorn", *options))


def test_a_spoofed_x_forwarded_for_does_not_make_a_new_client(tmp_path):
    """30 wrong `admin` logins, each with its own X-Forwarded-For, from one client: refused
    (429) long before the 25th; the owner still logs in from another client."""
    server = start_image_api(tmp_path, STATE_DIR=str(tmp_path / "state"), MLFLOW_TRACKING_URI=closed_url())
    try:
        statuses = []
        for index in range(30):
            response = requests.post(
                f"{server.url}/auth/token",
                data={"username": ADMIN[0], "password": f"guess-{index}"},
                headers={"X-Forwarded-For": f"198.51.100.{index + 1}"},
                timeout=30,
            )
            statuses.append(response.status_code)
        assert 429 in statuses[:24], statuses
        assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}, statuses  # the per-pair limit
        status, body = post_form_from(server.url, "/auth/token", {"username": ADMIN[0], "password": ADMIN[1]},
                                      "127.0.0.2")  # fmt: skip
        assert status == 200 and body["access_token"], body
    finally:
        server.stop()


def test_a_trusted_proxy_s_x_forwarded_for_names_the_client(tmp_path):
    """FORWARDED_ALLOW_IPS names the proxy (here 127.0.0.1): the address it appends (the right-most
    entry) is the client, whatever the client wrote before it."""
    server = start_image_api(tmp_path, STATE_DIR=str(tmp_path / "state"), MLFLOW_TRACKING_URI=closed_url(),
                             FORWARDED_ALLOW_IPS="127.0.0.1")  # fmt: skip
    try:

        def attempt(forwarded_for: str, password: str) -> int:
            response = requests.post(
                f"{server.url}/auth/token",
                data={"username": ADMIN[0], "password": password},
                headers={"X-Forwarded-For": forwarded_for},
                timeout=30,
            )
            return response.status_code

        # one attacker behind the proxy (203.0.113.9), a new spoofed entry each time
        statuses = [attempt(f"198.51.100.{index}, 203.0.113.9", "guess") for index in range(8)]
        assert statuses == [401] * 5 + [429] * 3, statuses
        assert attempt("203.0.113.10", ADMIN[1]) == 200  # another client behind the same proxy
    finally:
        server.stop()


def test_a_username_attacked_from_many_clients_does_not_lock_its_owner_out(app_factory):
    """Failures from as many clients as LOGIN_MAX_FAILURES_PER_USERNAME: a client that failed
    recently waits, a client with no recent failure (the owner) logs in."""
    client = app_factory(login_max_failures_per_username=10)

    def from_ip(ip: str) -> TestClient:
        return TestClient(client.app, client=(ip, 40000))

    for index in range(10):
        attacker = from_ip(f"10.0.1.{index}")
        assert attacker.post("/auth/token", data={"username": "admin", "password": "guess"}).status_code == 401
    login(from_ip("10.0.2.1"))  # the owner, from a client with no recent failure
    again = from_ip("10.0.1.9").post("/auth/token", data={"username": "admin", "password": "guess-2"})
    assert again.status_code == 429 and int(again.headers["retry-after"]) > 0


def login_from(url: str, password: str, source_ip: str) -> tuple[int, str | None]:
    """POST /auth/token as admin from a loopback address of its own: (status, Retry-After)."""
    parsed = urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120, source_address=(source_ip, 0))
    try:
        form = urlencode({"username": ADMIN[0], "password": password})
        connection.request("POST", "/auth/token", form, {"Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Retry-After")
    finally:
        connection.close()


def peak_rss_bytes(pid: int) -> int:
    """The process's resident-set high-water mark (VmHWM in /proc/<pid>/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB$", status, flags=re.MULTILINE).group(1)) * 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")
def test_a_storm_of_wrong_logins_stays_under_the_memory_limit_and_predict_answers(tmp_path, champion_bundle):
    """32 wrong logins at once from 32 clients (no throttle applies): the argon2 checks beyond
    LOGIN_MAX_CONCURRENT_CHECKS are refused at once (429 with Retry-After: no 5xx for a client's
    storm), the server's peak RSS stays under the pod's 512 MiB limit, /predict answers
    throughout, and the owner logs in after."""
    project = project_with_champion(tmp_path / "project", champion_bundle)
    server = start_image_api(tmp_path, ACCIDENTS_PROJECT_DIR=str(project), STATE_DIR=str(tmp_path / "state"),
                             MLFLOW_TRACKING_URI=closed_url())  # fmt: skip
    try:
        headers = login(server.url)
        storm_over = threading.Event()
        predictions: list[int] = []

        def predict_until_the_storm_is_over() -> None:
            with requests.Session() as session:
                while not storm_over.is_set() or not predictions:
                    answer = session.post(f"{server.url}/predict", json={"features": list(SEED_EXAMPLE)},
                                          headers=headers, timeout=60)  # fmt: skip
                    predictions.append(answer.status_code)

        predictor = threading.Thread(target=predict_until_the_storm_is_over)
        predictor.start()
        start = threading.Barrier(STORM)

        def wrong_login(index: int) -> tuple[int, str | None]:
            start.wait()
            return login_from(server.url, f"wrong-{index}", f"127.0.1.{index + 1}")

        try:
            with ThreadPoolExecutor(STORM) as pool:
                answers = list(pool.map(wrong_login, range(STORM)))
        finally:
            storm_over.set()
            predictor.join(timeout=120)
        peak = peak_rss_bytes(server.process.pid)
        statuses = [status for status, _ in answers]
        print(f"\n{STORM} concurrent wrong logins: {statuses.count(401)} checked (401), "
              f"{statuses.count(429)} refused (429); peak RSS {peak / 2**20:.0f} MiB; "
              f"{len(predictions)} predictions meanwhile")  # fmt: skip
        assert set(statuses) <= {401, 429}, statuses
        assert statuses.count(429) > 0 and all(int(after) >= 1 for status, after in answers if status == 429)
        assert peak < K8S_MEMORY_LIMIT_BYTES, f"peak RSS {peak / 2**20:.0f} MiB"
        assert predictions and set(predictions) == {200}, predictions
        assert login_from(server.url, ADMIN[1], "127.0.2.1")[0] == 200
    finally:
        server.stop()
