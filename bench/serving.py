"""The serving budget of `make bench` (bench/run.py): our API against MLflow's own scoring server
(`mlflow models serve`) and against the in-process floor (the model call the API makes).

The three are measured in the same run on the same champion: 1-row p50 at 1 connection, req/s at
16 connections and a 1,000-row batch (bench/common.py's SCENARIOS, wrk, medians of `repeats`
runs), each server's resident memory once the model is loaded and 1,000 requests are served, and
the same-run ratios the goals are stated in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from accidents.config import CHAMPION_ALIAS, MODEL_NAME
from accidents.features import FEATURE_NAMES, SEED_EXAMPLE
from accidents.model.model_store import read_bundle
from bench.common import (
    RSS_REQUESTS,
    SCENARIOS,
    child_pids,
    median_of,
    percentiles_ms,
    rss_after_requests,
    rss_mb,
    start_api,
    time_calls,
    token_of,
    wrk,
)
from tests.support.processes import ManagedProcess, free_port, start_service
from tests.support.project import Project


def bench_floor(champion: Path, batch: np.ndarray) -> dict[str, Any]:
    """In-process scoring: the floor any server adds its overhead to.

    `one_row` / `batch_1000`: what the API calls (ModelBundle.predict_proba: the compiled trees
    for a few rows, scikit-learn for big batches), one thread as the API runs it. The
    `sklearn_*` figures are the model's own predict_proba, with one thread and with the
    library's default threads (as `mlflow models serve` runs it).
    """
    bundle = read_bundle(champion)
    one = np.asarray([SEED_EXAMPLE], dtype=float)
    engines = {"": (bundle.predict_proba, 1), "sklearn_": (bundle.model.predict_proba, 1),
               "sklearn_default_threads_": (bundle.model.predict_proba, None)}  # fmt: skip
    result: dict[str, Any] = {"compiled_trees": bundle.compiled is not None}
    for prefix, (predict, threads) in engines.items():
        with threadpool_limits(limits=threads):
            for name, rows, count in (("one_row", one, 2000), ("batch_1000", batch, 200)):
                result[prefix + name] = percentiles_ms(time_calls(predict, rows, count))
    return result


def load_profile(url: str, bodies: dict[str, Path], token: str | None, repeats: int, seconds: int) -> dict[str, Any]:
    """Single row at 1 and 16 connections, a 1,000-row batch at 1: medians of `repeats` runs."""
    result = {}
    for name, (body, connections) in SCENARIOS.items():
        wrk(url, bodies[body], connections, 2, token)  # warm-up
        result[name] = median_of([wrk(url, bodies[body], connections, seconds, token) for _ in range(repeats)])
    return result


def start_mlflow_scoring(project: Project, log_dir: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    env = project.env(MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true")  # mlflow 3 gates skops/pickle loads
    cmd = [str(project.root / ".venv" / "bin" / "mlflow"), "models", "serve", "-m",
           f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}", "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
           "--workers", "1"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    return start_service(cmd, log_dir / "mlflow-serve.log", f"{url}/ping", env=env, cwd=project.root, timeout=180), url


def bench_api(project: Project, work: Path, bodies: dict[str, Path], repeats: int, seconds: int) -> dict[str, Any]:
    """Our API: resident memory after RSS_REQUESTS requests, then the load profile."""
    api, api_url = start_api(project, work / "api-state")
    try:
        token = token_of(api_url)
        # the goal is the serving process's; its one child, the prediction log's insert process, apart
        api_rss = rss_after_requests(api.pid, f"{api_url}/predict", bodies["single"], token, children=False)
        insert_rss = sum(rss_mb(child) for child in child_pids(api.pid))
        result = load_profile(f"{api_url}/predict", bodies, token, repeats, seconds)
        result.update(rss_mb=api_rss, rss_after_load_runs_mb=rss_mb(api.pid, children=False),
                      insert_process_rss_mb=insert_rss)  # fmt: skip
        return result
    finally:
        api.stop()


def bench_mlflow_serve(project: Project, work: Path, bodies: dict[str, Path], repeats: int,
                       seconds: int) -> dict[str, Any]:  # fmt: skip
    """MLflow's scoring server on the same champion: the same measures, its workers included."""
    peer, peer_url = start_mlflow_scoring(project, work)
    try:
        peer_rss = rss_after_requests(peer.pid, f"{peer_url}/invocations", bodies["single"])
        result = load_profile(f"{peer_url}/invocations", bodies, None, repeats, seconds)
        result.update(rss_mb=peer_rss, rss_after_load_runs_mb=rss_mb(peer.pid))
        return result
    finally:
        peer.stop()


def write_bodies(folder: Path, batch: np.ndarray) -> dict[str, dict[str, Path]]:
    rows = batch.tolist()
    bodies = {
        "api": {"single": {"features": list(SEED_EXAMPLE)}, "batch": {"instances": rows}},
        "mlflow": {"single": {"dataframe_split": {"columns": list(FEATURE_NAMES), "data": [list(SEED_EXAMPLE)]}},
                   "batch": {"dataframe_split": {"columns": list(FEATURE_NAMES), "data": rows}}},
    }  # fmt: skip
    paths: dict[str, dict[str, Path]] = {}
    for server, payloads in bodies.items():
        for name, payload in payloads.items():
            path = folder / f"{server}-{name}.json"
            path.write_text(json.dumps(payload))
            paths.setdefault(server, {})[name] = path
    return paths


def ratios(floor: dict, api: dict, peer: dict) -> dict[str, float]:
    return {
        "api_p50_over_mlflow_p50_single": round(api["single_c1"]["p50_ms"] / peer["single_c1"]["p50_ms"], 3),
        "api_rps_over_mlflow_rps_c16": round(api["single_c16"]["rps"] / peer["single_c16"]["rps"], 2),
        "api_overhead_ms_single_p50": round(api["single_c1"]["p50_ms"] - floor["one_row"]["p50_ms"], 3),
        "api_batch_over_floor_batch": round(api["batch_c1"]["p50_ms"] / floor["batch_1000"]["p50_ms"], 2),
    }


def markdown(results: dict[str, Any]) -> list[str]:
    """The tables of the whole run's results["floor"], ["api"], ["mlflow_serve"] and ["ratios"]."""
    floor, api, peer, ratio = results["floor"], results["api"], results["mlflow_serve"], results["ratios"]
    return [
        "| measure | our API | MLflow `models serve` | in-process floor (what the API calls, 1 thread) |",
        "|---|---|---|---|",
        f"| 1 row, 1 connection: p50 / p99 | {api['single_c1']['p50_ms']:.2f} / {api['single_c1']['p99_ms']:.2f} ms "
        f"| {peer['single_c1']['p50_ms']:.2f} / {peer['single_c1']['p99_ms']:.2f} ms "
        f"| {floor['one_row']['p50_ms']:.2f} / {floor['one_row']['p99_ms']:.2f} ms |",
        f"| 1 row, 16 connections: req/s (p99) | {api['single_c16']['rps']:.0f} ({api['single_c16']['p99_ms']:.1f} ms) "
        f"| {peer['single_c16']['rps']:.0f} ({peer['single_c16']['p99_ms']:.1f} ms) | |",
        f"| 1,000 rows, 1 connection: p50 | {api['batch_c1']['p50_ms']:.1f} ms | {peer['batch_c1']['p50_ms']:.1f} ms "
        f"| {floor['batch_1000']['p50_ms']:.1f} ms |",
        "| floor, scikit-learn's own predict_proba, 1 thread: 1 row / 1,000 rows p50 | | "
        f"| {floor['sklearn_one_row']['p50_ms']:.2f} / {floor['sklearn_batch_1000']['p50_ms']:.1f} ms |",
        "| floor, scikit-learn, library's default threads: 1 row / 1,000 rows p50 | | "
        f"| {floor['sklearn_default_threads_one_row']['p50_ms']:.2f} / "
        f"{floor['sklearn_default_threads_batch_1000']['p50_ms']:.1f} ms |",
        f"| resident memory, model loaded + {RSS_REQUESTS:,} requests served (goal <= 250 MB) | {api['rss_mb']:.0f} MB "
        f"| {peer['rss_mb']:.0f} MB | |",
        f"| resident memory after all the load runs above | {api['rss_after_load_runs_mb']:.0f} MB "
        f"| {peer['rss_after_load_runs_mb']:.0f} MB | |",
        f"| its prediction log's insert process (a child, apart from the goal) | "
        f"{api.get('insert_process_rss_mb', 0):.0f} MB | | |",
        "",
        "| ratio (same run) | measured | goal |",
        "|---|---|---|",
        f"| API p50 / MLflow p50, 1 row | {ratio['api_p50_over_mlflow_p50_single']:.3f} | <= 0.15 |",
        f"| API req/s / MLflow req/s, 16 connections | {ratio['api_rps_over_mlflow_rps_c16']:.1f} | >= 5 |",
        f"| API p50 - floor p50, 1 row | {ratio['api_overhead_ms_single_p50']:.2f} ms | <= 1.5 ms |",
        f"| API 1,000 rows / floor 1,000 rows | {ratio['api_batch_over_floor_batch']:.2f} | <= 3 |",
    ]
