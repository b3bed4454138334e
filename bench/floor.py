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
import subprocess
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
from tests.support.project import REPO, Project

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


def baseline_source(ref: str, work: Path) -> Path:
    """api/ and src/ of the git commit `ref` (e.g. main), extracted into `work`: the "before" server."""
    folder = work / "baseline-source"
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", ref, "api", "src"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def bench_floor(project: Project, work: Path, body: Path, repeats: int, seconds: int,
                baseline: str | None = None, batch_body: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Our API (logging and shadow on) and the floor app, alternated A/B/B/A; with `baseline` (a git
    ref), that commit's API too, as a third server in the same alternation (A/C/B/B/C/A), so a change
    is measured before and after in one run, and with `batch_body` (1,000 rows) both at 1 connection
    (before/after/after/before)."""
    challenger = ensure_challenger(project)
    secret = secrets.token_urlsafe(48)
    servers: dict[str, tuple[ManagedProcess, str]] = {}
    try:
        on = {"PREDICTION_LOG_ENABLED": "true", "SHADOW_ENABLED": "true"}
        servers["api"] = start_api(project, work / "floor-api", **on)
        if baseline is not None:
            servers["before"] = start_api(project, work / "floor-before", baseline_source(baseline, work), **on)
        servers["floor"] = start_floor(project, work / "floor-app", secret)
        targets = {name: (f"{url}/predict", floor_token(secret) if name == "floor" else token_of(url))
                   for name, (_, url) in servers.items()}  # fmt: skip
        names = list(servers)  # api, [before,] floor
        order = [name for name in names if name != "floor"] + ["floor", "floor"]
        order += [name for name in reversed(names) if name != "floor"]
        runs: dict[str, dict[str, list[dict[str, float]]]] = {name: {} for name in names}
        pair_ratios: dict[str, dict[str, list[float]]] = {
            name: {"p50_c1_over_floor": [], "rps_c16_over_floor": []} for name in names if name != "floor"
        }
        cpu: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for url, token in targets.values():
            wrk(url, body, 16, 2, token)  # warm-up
        for _ in range(repeats):
            for scenario, connections in FLOOR_SCENARIOS.items():
                measured: dict[str, list[dict[str, float]]] = {name: [] for name in names}
                for name in order:
                    url, token = targets[name]
                    pid = servers[name][0].pid
                    before = _cpu_of(pid) if connections > 1 else None
                    run = wrk(url, body, connections, seconds, token)
                    if run["errors"]:  # a floor answering 4xx would be measuring the wrong thing
                        raise RuntimeError(f"{name}: {run['errors']:.0f} failed requests, {connections} connections")
                    measured[name].append(run)
                    if before is not None:
                        cpu[name].append(_cpu_share(before, _cpu_of(pid), seconds, run["rps"]))
                for name, values in measured.items():
                    runs[name].setdefault(scenario, []).extend(values)
                mean = {name: {key: statistics.mean(run[key] for run in values) for key in ("p50_ms", "rps")}
                        for name, values in measured.items()}  # fmt: skip
                for name, ratios in pair_ratios.items():
                    if connections == 1:
                        ratios["p50_c1_over_floor"].append(mean[name]["p50_ms"] / mean["floor"]["p50_ms"])
                    else:
                        ratios["rps_c16_over_floor"].append(mean[name]["rps"] / mean["floor"]["rps"])
        if baseline is not None and batch_body is not None:
            for _ in range(repeats):
                for name in ("before", "api", "api", "before"):
                    url, token = targets[name]
                    runs[name].setdefault("batch_c1", []).append(wrk(url, batch_body, 1, seconds, token))
        rss = {name: rss_mb(process.pid, children=False) for name, (process, _) in servers.items() if name != "floor"}
    finally:
        for process, _ in servers.values():
            process.stop()
    medians = {name: {scenario: median_of(values) for scenario, values in by_scenario.items()}
               for name, by_scenario in runs.items()}  # fmt: skip
    result: dict[str, Any] = {**medians, "challenger_version": challenger, "baseline": baseline}
    for name, ratios_of in pair_ratios.items():
        ratios = {key: round(statistics.median(values), 3) for key, values in ratios_of.items()}
        ratios["rps_c16_over_rps_c1"] = round(medians[name]["single_c16"]["rps"] / medians[name]["single_c1"]["rps"], 3)
        suffix = "" if name == "api" else f"_{name}"
        result[f"pair_ratios{suffix}"] = {key: [round(v, 3) for v in values] for key, values in ratios_of.items()}
        result[f"ratios{suffix}"] = ratios
        result[f"goals_met{suffix}"] = {key: _met(key, value) for key, value in ratios.items()}
    result["cpu_c16"] = {name: median_of(values) for name, values in cpu.items() if values}
    result["api_rss_after_runs_mb"] = rss["api"]
    if "before" in rss:
        result["before_rss_after_runs_mb"] = rss["before"]
    result["load_average"] = os.getloadavg()[0]
    return result


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
    lines = [
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
    return lines + (_before_after(result) if result.get("baseline") else [])


def _before_after(result: dict[str, Any]) -> list[str]:
    """The baseline commit's API, measured in the same alternation (`--floor-baseline REF`)."""
    before, after = result["before"], result["api"]
    ratios_before, ratios_after = result["ratios_before"], result["ratios"]
    cpu = result["cpu_c16"]
    return [
        "",
        f"Before / after, same run: `{result['baseline']}`'s API and this tree's, alternated with the floor "
        "(A/C/B/B/C/A), medians:",
        "",
        "| 1 row | before | after | after / before |",
        "|---|---|---|---|",
        f"| CPU per request at 16 connections | {cpu['before']['cpu_ms_per_request']:.2f} ms "
        f"| {cpu['api']['cpu_ms_per_request']:.2f} ms "
        f"| {cpu['api']['cpu_ms_per_request'] / cpu['before']['cpu_ms_per_request']:.2f}x |",
        f"| 16 connections: req/s | {before['single_c16']['rps']:.0f} | {after['single_c16']['rps']:.0f} "
        f"| {after['single_c16']['rps'] / before['single_c16']['rps']:.2f}x |",
        f"| 1 connection: p50 | {before['single_c1']['p50_ms']:.2f} ms | {after['single_c1']['p50_ms']:.2f} ms "
        f"| {after['single_c1']['p50_ms'] / before['single_c1']['p50_ms']:.2f}x |",
        f"| req/s at 16 connections over the floor's | {ratios_before['rps_c16_over_floor']:.2f}x "
        f"| {ratios_after['rps_c16_over_floor']:.2f}x | |",
        f"| p50 at 1 connection over the floor's | {ratios_before['p50_c1_over_floor']:.2f}x "
        f"| {ratios_after['p50_c1_over_floor']:.2f}x | |",
        f"| resident memory after the runs | {result['before_rss_after_runs_mb']:.0f} MB "
        f"| {result['api_rss_after_runs_mb']:.0f} MB | |",
        *([_batch_row(before["batch_c1"]["p50_ms"], after["batch_c1"]["p50_ms"])] if "batch_c1" in after else []),
    ]


def _batch_row(before_ms: float, after_ms: float) -> str:
    return f"| 1,000 rows at 1 connection: p50 | {before_ms:.1f} ms | {after_ms:.1f} ms | {after_ms / before_ms:.2f}x |"
