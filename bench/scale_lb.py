"""Throughput through the scale-out stack's load balancer: two API replicas vs one, same run.

Needs a running scale-out stack (docker-compose.scale.yml), e.g. the one `make scale-test` leaves
up with SCALE_TEST_KEEP=1, or SCALE_BENCH=1 make scale-test (runs this before the teardown):

    python -m bench.scale_lb --env-file state/scale-test/scale.env --project accidents-scale

Phases alternate (two replicas, one, two, one: `docker compose stop/start api-2`), so machine
noise hits both; each phase is wrk (C, bench/wrk_post.lua) POSTing the seed row to /predict at
N connections through HAProxy, median of `--repeats` runs, plus replica 1 directly (no balancer)
in the one-replica phases. Writes bench/results/<date>-scale-lb.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

from accidents.features import SEED_EXAMPLE
from bench.common import RESULTS, wrk
from tests.support.project import REPO


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {name: value for name, value in pairs}


def compose_command(env_file: Path, project: str) -> list[str]:
    files = ["-f", str(REPO / "docker-compose.yml"), "-f", str(REPO / "docker-compose.scale.yml")]
    return ["docker", "compose", "--project-directory", str(REPO), *files, "--env-file", str(env_file), "-p", project]


def wait_ready(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/ready", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s")


def median_run(url: str, body: Path, connections: int, seconds: int, repeats: int, token: str) -> dict[str, float]:
    wrk(url, body, connections, 2, token)  # warm-up
    runs = [wrk(url, body, connections, seconds, token) for _ in range(repeats)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", type=Path, default=REPO / "state" / "scale-test" / "scale.env")
    parser.add_argument("--project", default="accidents-scale")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    env = read_env(args.env_file)
    compose = compose_command(args.env_file, args.project)
    clean_env = {name: os.environ[name] for name in ("PATH", "HOME", "DOCKER_HOST") if name in os.environ}
    lb, api1, api2 = (f"http://127.0.0.1:{env[name]}" for name in ("LB_HOST_PORT", "API_HOST_PORT", "API2_HOST_PORT"))
    login = requests.post(f"{lb}/auth/token", data={"username": "admin", "password": env["ADMIN_PASSWORD"]}, timeout=30)
    login.raise_for_status()
    token = login.json()["access_token"]

    phases: dict[str, list[dict[str, float]]] = {"lb_two_replicas": [], "lb_one_replica": [], "replica_direct": []}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "single.json"
        body.write_text(json.dumps({"features": list(SEED_EXAMPLE)}))
        for round_ in range(2):
            wait_ready(api2)
            time.sleep(5)  # back in HAProxy's rotation (check every 2 s, rise 1)
            phases["lb_two_replicas"].append(
                median_run(f"{lb}/predict", body, args.connections, args.seconds, args.repeats, token)
            )
            subprocess.run(
                [*compose, "stop", "--timeout", "20", "api-2"], check=True, env=clean_env, capture_output=True
            )
            time.sleep(5)  # marked down
            phases["lb_one_replica"].append(
                median_run(f"{lb}/predict", body, args.connections, args.seconds, args.repeats, token)
            )
            phases["replica_direct"].append(
                median_run(f"{api1}/predict", body, args.connections, args.seconds, args.repeats, token)
            )
            subprocess.run([*compose, "start", "api-2"], check=True, env=clean_env, capture_output=True)
            print(
                f"round {round_ + 1}: " + ", ".join(f"{name} {runs[-1]['rps']} req/s" for name, runs in phases.items())
            )
        wait_ready(api2)
    summary = {
        name: {key: statistics.median(run[key] for run in runs) for key in runs[0]} for name, runs in phases.items()
    }
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
        },
        "settings": {"connections": args.connections, "seconds": args.seconds, "repeats": args.repeats, "rounds": 2},
        "phases": phases,
        "summary": summary,
        "ratio_two_over_one": round(summary["lb_two_replicas"]["rps"] / summary["lb_one_replica"]["rps"], 2),
        "ratio_lb_over_direct": round(summary["lb_one_replica"]["rps"] / summary["replica_direct"]["rps"], 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{datetime.now(UTC):%Y-%m-%d}-scale-lb"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(
        f"| {name} | {values['rps']:.0f} | {values['p50_ms']:.1f} | {values['p99_ms']:.1f} | {values['errors']:.0f} |"
        for name, values in summary.items()
    )
    stem.with_suffix(".md").write_text(
        f"`python -m bench.scale_lb` on {result['when']}: {os.cpu_count()} cores, load average "
        f"{load_before[0]:.1f} before / {result['machine']['load_after'][0]:.1f} after; 1 row per request, "
        f"{args.connections} connections, medians of {args.repeats} x {args.seconds} s per phase, "
        "2 alternating rounds.\n\n"
        "| phase | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|\n"
        f"{rows}\n\ntwo replicas / one (through HAProxy): {result['ratio_two_over_one']}; "
        f"one replica through HAProxy / directly: {result['ratio_lb_over_direct']}\n"
    )
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
