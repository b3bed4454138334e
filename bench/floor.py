"""The framework floor of `make bench` (issue #26), called from bench/run.py: our `/predict`
against a bare FastAPI app (bench/floor_app.py: same uvicorn, a PyJWT HS256 bearer check, a
pydantic body of 28 floats, a constant answer), measured in the same run.

Our API runs as `make run` starts it: prediction log on, shadow on at the default share with a
challenger in the registry (so the shadow really scores). Both servers are up at once and measured
in alternation, A/B/B/A per scenario and repeat, so drift in the machine's speed hits both alike;
the goals are judged on the median of the per-repeat ratios. During the 16-connection runs the
CPU seconds of the API process and of its children (the prediction log's insert process) are read
from /proc: the share of the cores the non-answer work takes under load.
"""

from __future__ import annotations

import os
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import jwt
import mlflow
from mlflow.exceptions import MlflowException

from accidents.config import CHALLENGER_ALIAS, MODEL_NAME
from accidents.model.model_store import read_bundle
from bench.common import child_pids, median_of, rss_mb, start_api, token_of, wrk
from tests.api.conftest import register
from tests.support.processes import ManagedProcess, free_port, start_service
from tests.support.project import Project

# 1 row at 1 connection (latency) and at 16 (throughput): the goals' two measures
FLOOR_SCENARIOS = {"single_c1": 1, "single_c16": 16}
CHALLENGER_THRESHOLD = 0.3  # the same model again, another threshold: it disagrees on some rows
GOALS = {"rps_c16_over_floor": 0.5, "p50_c1_over_floor": 1.8, "rps_c16_over_rps_c1": 1.0}


def ensure_challenger(project: Project) -> str:
    """The registry's challenger, registering the champion again (another threshold) if none."""
    client = mlflow.MlflowClient(project.tracking_uri)
    try:
        return str(client.get_model_version_by_alias(MODEL_NAME, CHALLENGER_ALIAS).version)
    except MlflowException:
        champion = read_bundle(project.root / "models" / "champion.zip")
        version = register(project.tracking_uri, champion, threshold=CHALLENGER_THRESHOLD)
        client.set_registered_model_alias(MODEL_NAME, CHALLENGER_ALIAS, version)
        return version


def start_floor(project: Project, log_dir: Path, secret: str) -> tuple[ManagedProcess, str]:
    """bench/floor_app.py with the same uvicorn and flags as bench/common.py's start_api."""
    port = free_port()
    cmd = [str(project.root / ".venv" / "bin" / "uvicorn"), "bench.floor_app:app", "--host", "127.0.0.1", "--port",
           str(port), "--workers", "1", "--log-level", "warning", "--no-access-log"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = project.env(FLOOR_JWT_SECRET=secret)
    return start_service(cmd, log_dir / "floor.log", f"{url}/ready", env=env, cwd=project.root), url


def floor_token(secret: str) -> str:
    now = int(time.time())
    claims = {"sub": "bench", "role": "user", "ver": 0, "iat": now, "exp": now + 24 * 3600}
    return jwt.encode(claims, secret, algorithm="HS256")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_floor(project: Project, work: Path, body: Path, repeats: int, seconds: int) -> dict[str, Any]:
    """Our API (logging and shadow on) and the floor app, alternated A/B/B/A."""
    challenger = ensure_challenger(project)
    secret = secrets.token_urlsafe(48)
    api, api_url = start_api(project, work / "floor-api", PREDICTION_LOG_ENABLED="true", SHADOW_ENABLED="true")
    floor, floor_url = start_floor(project, work / "floor-app", secret)
    try:
        targets = {"api": (f"{api_url}/predict", token_of(api_url)), "floor": (f"{floor_url}/predict",
                   floor_token(secret))}  # fmt: skip
        runs: dict[str, dict[str, list[dict[str, float]]]] = {"api": {}, "floor": {}}
        pair_ratios: dict[str, list[float]] = {"p50_c1_over_floor": [], "rps_c16_over_floor": []}
        cpu: dict[str, list[dict[str, float]]] = {"api": [], "floor": []}
        for url, token in targets.values():
            wrk(url, body, 16, 2, token)  # warm-up
        for _ in range(repeats):
            for name, connections in FLOOR_SCENARIOS.items():
                measured: dict[str, list[dict[str, float]]] = {"api": [], "floor": []}
                for server in ("api", "floor", "floor", "api"):
                    url, token = targets[server]
                    pid = api.pid if server == "api" else floor.pid
                    before = _cpu_of(pid) if connections > 1 else None
                    run = wrk(url, body, connections, seconds, token)
                    if run["errors"]:  # a floor answering 4xx would be measuring the wrong thing
                        raise RuntimeError(f"{server}: {run['errors']:.0f} failed requests, {connections} connections")
                    measured[server].append(run)
                    if before is not None:
                        cpu[server].append(_cpu_share(before, _cpu_of(pid), seconds, run["rps"]))
                for server, values in measured.items():
                    runs[server].setdefault(name, []).extend(values)
                api_mean = {key: statistics.mean(run[key] for run in measured["api"]) for key in ("p50_ms", "rps")}
                floor_mean = {key: statistics.mean(run[key] for run in measured["floor"]) for key in ("p50_ms", "rps")}
                if connections == 1:
                    pair_ratios["p50_c1_over_floor"].append(api_mean["p50_ms"] / floor_mean["p50_ms"])
                else:
                    pair_ratios["rps_c16_over_floor"].append(api_mean["rps"] / floor_mean["rps"])
        api_rss = rss_mb(api.pid, children=False)
    finally:
        api.stop()
        floor.stop()
    medians = {server: {name: median_of(values) for name, values in by_name.items()}
               for server, by_name in runs.items()}  # fmt: skip
    ours = medians["api"]
    ratios = {name: round(statistics.median(values), 3) for name, values in pair_ratios.items()}
    ratios["rps_c16_over_rps_c1"] = round(ours["single_c16"]["rps"] / ours["single_c1"]["rps"], 3)
    return {
        **medians,
        "challenger_version": challenger,
        "pair_ratios": {name: [round(value, 3) for value in values] for name, values in pair_ratios.items()},
        "ratios": ratios,
        "goals_met": {name: _met(name, value) for name, value in ratios.items()},
        "cpu_c16": {server: median_of(values) for server, values in cpu.items() if values},
        "api_rss_after_runs_mb": api_rss,
        "load_average": os.getloadavg()[0],
    }


def _cpu_of(pid: int) -> dict[str, float]:
    return {"api": cpu_seconds(pid), "children": sum(cpu_seconds(child) for child in child_pids(pid))}


def _cpu_share(before: dict[str, float], after: dict[str, float], seconds: int, rps: float) -> dict[str, float]:
    """Cores used during one run by the serving process and by its children (the insert process),
    and CPU milliseconds per answered request (all of them): the measure least moved by other
    load on the machine, which stretches wall times but not the work a request takes."""
    used = {key: after[key] - before[key] for key in before}
    return {**{f"{key}_cores": round(value / seconds, 3) for key, value in used.items()},
            "cpu_ms_per_request": round(1000 * sum(used.values()) / (rps * seconds), 3)}  # fmt: skip


def _met(name: str, value: float) -> bool:
    return value <= GOALS[name] if name == "p50_c1_over_floor" else value >= GOALS[name]


def markdown(result: dict[str, Any]) -> list[str]:
    api, floor, ratios = result["api"], result["floor"], result["ratios"]
    cpu = result["cpu_c16"]
    mark = {True: "met", False: "**not met**"}
    met = result["goals_met"]
    return [
        "",
        "Framework floor (issue #26): our `/predict` (prediction log and shadow on, as `make run` starts it) "
        "against a bare FastAPI app (same uvicorn, PyJWT HS256 bearer check, pydantic body of 28 floats, "
        "constant answer), both up at once, alternated A/B/B/A, medians:",
        "",
        "| 1 row | our API | floor | ratio (median of pairs) | goal |",
        "|---|---|---|---|---|",
        f"| 1 connection: p50 / p99 | {api['single_c1']['p50_ms']:.2f} / {api['single_c1']['p99_ms']:.2f} ms "
        f"| {floor['single_c1']['p50_ms']:.2f} / {floor['single_c1']['p99_ms']:.2f} ms "
        f"| {ratios['p50_c1_over_floor']:.2f}x | <= {GOALS['p50_c1_over_floor']}x: {mark[met['p50_c1_over_floor']]} |",
        f"| 16 connections: req/s (p99) | {api['single_c16']['rps']:.0f} ({api['single_c16']['p99_ms']:.1f} ms) "
        f"| {floor['single_c16']['rps']:.0f} ({floor['single_c16']['p99_ms']:.1f} ms) "
        f"| {ratios['rps_c16_over_floor']:.2f}x | >= {GOALS['rps_c16_over_floor']}x: "
        f"{mark[met['rps_c16_over_floor']]} |",
        f"| our req/s at 16 connections / at 1 | {api['single_c16']['rps']:.0f} / {api['single_c1']['rps']:.0f} | "
        f"| {ratios['rps_c16_over_rps_c1']:.2f} | >= 1: {mark[met['rps_c16_over_rps_c1']]} |",
        f"| CPU per request at 16 connections (API: with its insert process) | {cpu['api']['cpu_ms_per_request']:.2f} "
        f"ms | {cpu['floor']['cpu_ms_per_request']:.2f} ms | "
        f"{cpu['api']['cpu_ms_per_request'] / cpu['floor']['cpu_ms_per_request']:.2f}x | |",
        "",
        f"Under 16 connections the API process used {cpu['api']['api_cores']:.2f} cores and its insert "
        f"process {cpu['api']['children_cores']:.2f}; API resident memory after the runs "
        f"{result['api_rss_after_runs_mb']:.0f} MB; load average {result['load_average']:.1f} at the end "
        "(other load stretches wall times: compare the ratios and the CPU per request).",
    ]
