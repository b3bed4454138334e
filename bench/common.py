"""What every budget of `make bench` measures with: load (wrk), medians, resident memory, the
API started as uvicorn serves it, its login token, and the machine the run is on.

Load comes from wrk (C, one process, bench/wrk_post.lua) so that the load generator does not
compete with the servers through the GIL. Imports no other bench module: the budget modules
(serving, pipeline, stack, prediction_log, shadow, drift, scale_lb) import it, and bench/run.py
runs them.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests

from accidents.config import DEMO_ADMIN_PASSWORD, DEMO_ADMIN_USERNAME
from tests.support.processes import ManagedProcess, free_port, start_service
from tests.support.project import REPO, Project

RESULTS = REPO / "bench" / "results"
LUA = REPO / "bench" / "wrk_post.lua"
# The load profile of a server: single row at 1 and 16 connections, a 1,000-row batch at 1.
SCENARIOS = {"single_c1": ("single", 1), "single_c16": ("single", 16), "batch_c1": ("batch", 1)}


def timed_command(cmd: list[str], project: Project) -> dict[str, float]:
    """Wall time and peak RSS (largest process of the tree, GNU time) of one command."""
    result = project.run("/usr/bin/time", "-f", "BENCH_TIME %e %M", *cmd)
    seconds, max_kb = re.search(r"BENCH_TIME ([\d.]+) (\d+)", result.stderr).groups()
    return {"seconds": float(seconds), "peak_rss_mb": int(max_kb) / 1024}


def median_of(runs: list[dict[str, float]], digits: int = 3) -> dict[str, float]:
    return {key: round(statistics.median(run[key] for run in runs), digits) for key in runs[0]}


def percentiles_ms(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples) * 1000
    return {"p50_ms": round(float(np.median(values)), 3), "p99_ms": round(float(np.percentile(values, 99)), 3)}


def time_calls(function: Callable[[Any], Any], argument: Any, count: int) -> list[float]:
    """Seconds of each of `count` calls, after one warm-up call."""
    function(argument)  # warm-up
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        function(argument)
        samples.append(time.perf_counter() - started)
    return samples


def wrk(url: str, body: Path, connections: int, seconds: int, token: str | None = None) -> dict[str, float]:
    env = {**os.environ, "WRK_BODY_FILE": str(body), "WRK_TOKEN": token or ""}
    threads = min(connections, 2)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA), url],
        capture_output=True, text=True, env=env, check=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    data = json.loads(out.split("WRK_JSON ", 1)[1].splitlines()[0])
    return {
        "rps": round(data["requests"] / (data["duration_us"] / 1e6), 1),
        "p50_ms": data["p50_us"] / 1000,
        "p99_ms": data["p99_us"] / 1000,
        "errors": data["socket_errors"] + data["non_2xx"],
    }


def child_pids(pid: int) -> list[int]:
    return [
        int(child) for child in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    ]


def rss_mb(pid: int, children: bool = True) -> float:
    """Resident memory of a process and, with `children`, of its children (gunicorn workers)."""
    total = 0
    pids = [pid, *(child_pids(pid) if children else [])]
    for each in pids:
        status = Path(f"/proc/{each}/status").read_text()
        total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    return round(total / 1024, 1)


# --- resident memory (issue #14 item 6) -------------------------------------------------------
# The goal's measure: VmRSS of the serving process once the model is loaded and RSS_REQUESTS
# single-row requests are served, read before the load runs (which only add allocator slack).
RSS_REQUESTS = 1000


def rss_after_requests(pid: int, url: str, body: Path, token: str | None = None, children: bool = True) -> float:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    payload = body.read_bytes()
    with requests.Session() as session:
        for _ in range(RSS_REQUESTS):
            session.post(url, data=payload, headers=headers, timeout=30).raise_for_status()
    return rss_mb(pid, children)


# --- end of resident memory ----------------------------------------------------------------------


def start_api(project: Project, state: Path, source: Path | None = None, **env: str) -> tuple[ManagedProcess, str]:
    """The project's API as uvicorn serves it (one worker), its state and log in `state`; `env`
    on top of the project's (PREDICTION_LOG_ENABLED, SHADOW_ENABLED, ...). `source`: serve the
    api/ and src/ of that folder instead (another commit's code, bench/floor.py's baseline)."""
    port = free_port()
    cmd = [str(project.root / ".venv" / "bin" / "uvicorn"), "api.main:app", "--host", "127.0.0.1", "--port",
           str(port), "--workers", "1", "--log-level", "warning", "--no-access-log"]  # fmt: skip
    if source is not None:
        cmd += ["--app-dir", str(source)]
        env = {"PYTHONPATH": f"{source / 'src'}:{source}", **env}
    url = f"http://127.0.0.1:{port}"
    full_env = project.env(MODEL_POLL_SECONDS="0", STATE_DIR=str(state), **env)
    return start_service(cmd, state / "api.log", f"{url}/ready", env=full_env, cwd=project.root), url


def token_of(url: str) -> str:
    form = {"username": DEMO_ADMIN_USERNAME, "password": DEMO_ADMIN_PASSWORD}
    return requests.post(f"{url}/auth/token", data=form, timeout=10).json()["access_token"]


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    memory_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(memory_kb / 1024**2, 1),
            "python": platform.python_version(), "date": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
