"""The shadow challenger's and the explanations' budgets (issue #15), called from bench/run.py.

Same-run comparisons on the bench's project and registry: the champion plus a challenger (the same
trained model registered again with another decision threshold, so it really scores every sampled
row and disagrees on some). Servers with SHADOW_ENABLED off and on (SHADOW_SHARE=1: the worst
case, every row shadowed) are started in alternation so machine noise hits both: 1-row p50 at 16
connections (goal: on within +5 % of off), and throughput. Then `POST /predict?explain=true` for
one row at 1 connection (goal p50 <= 20 ms), and the in-process TreeSHAP time per row.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from accidents.config import CHALLENGER_ALIAS, MODEL_NAME
from accidents.features import SEED_EXAMPLE
from accidents.model_store import read_bundle
from bench.prediction_log import token_of
from bench.run import wrk
from tests.api.conftest import register
from tests.support.processes import ManagedProcess, free_port, start_service
from tests.support.project import Project

CHALLENGER_THRESHOLD = 0.3


def start_api(project: Project, state: Path, **env: str) -> tuple[ManagedProcess, str]:
    port = free_port()
    cmd = [str(project.root / ".venv" / "bin" / "uvicorn"), "api.main:app", "--host", "127.0.0.1", "--port",
           str(port), "--workers", "1", "--log-level", "warning", "--no-access-log"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    full_env = project.env(MODEL_POLL_SECONDS="0", STATE_DIR=str(state), **env)
    return start_service(cmd, state / "api.log", f"{url}/ready", env=full_env, cwd=project.root), url


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}


def bench_shadow(project: Project, work: Path, repeats: int, seconds: int) -> dict[str, Any]:
    champion = read_bundle(project.root / "models" / "champion.zip")
    challenger = register(project.tracking_uri, champion, threshold=CHALLENGER_THRESHOLD)
    mlflow.MlflowClient(project.tracking_uri).set_registered_model_alias(MODEL_NAME, CHALLENGER_ALIAS, challenger)
    body = work / "shadow-single.json"
    body.write_text(json.dumps({"features": list(SEED_EXAMPLE)}))
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    shadowed = 0.0
    for repeat in range(repeats):
        for mode in ("off", "on"):
            print(f"shadow {mode} ({repeat + 1}/{repeats}) ...", flush=True)
            process, url = start_api(project, work / f"shadow-{mode}-{repeat}", SHADOW_ENABLED=str(mode == "on"),
                                     SHADOW_SHARE="1")  # fmt: skip
            try:
                token = token_of(url)
                wrk(f"{url}/predict", body, 16, 2, token)  # warm-up
                runs[mode].append(wrk(f"{url}/predict", body, 16, seconds, token))
                if mode == "on":
                    shadowed = max(shadowed, _shadow_rows(url))
            finally:
                process.stop()
    off, on = _median(runs["off"]), _median(runs["on"])

    print("explanations ...", flush=True)
    process, url = start_api(project, work / "explain")
    try:
        token = token_of(url)
        wrk(f"{url}/predict?explain=true", body, 1, 2, token)  # warm-up (builds the explainer)
        explain = _median([wrk(f"{url}/predict?explain=true", body, 1, seconds, token) for _ in range(repeats)])
        plain = _median([wrk(f"{url}/predict", body, 1, seconds, token) for _ in range(repeats)])
    finally:
        process.stop()
    explainer = champion.explainer()
    row = np.asarray([SEED_EXAMPLE], dtype=float)
    explainer.shap_values(row)
    samples = []
    for _ in range(200):
        started = time.perf_counter()
        explainer.shap_values(row)
        samples.append(time.perf_counter() - started)
    return {
        "challenger_version": challenger,
        "shadow_off_single_c16": off,
        "shadow_on_single_c16": on,
        "shadow_rows_scored_in_one_on_run": shadowed,
        "p50_on_over_off_single_c16": round(on["p50_ms"] / off["p50_ms"], 3),
        "rps_on_over_off_single_c16": round(on["rps"] / off["rps"], 3),
        "explain_single_c1": explain,
        "plain_single_c1": plain,
        "tree_shap_in_process_one_row_p50_ms": round(statistics.median(samples) * 1000, 3),
        "trees": sum(len(group.values) for group in explainer.groups),
    }


def _shadow_rows(url: str) -> float:
    import requests

    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("shadow_rows_total{"))


def markdown(shadow: dict[str, Any]) -> list[str]:
    off, on = shadow["shadow_off_single_c16"], shadow["shadow_on_single_c16"]
    explain, plain = shadow["explain_single_c1"], shadow["plain_single_c1"]
    return [
        "",
        "Shadow challenger (same run, servers alternated; SHADOW_SHARE=1, every row also scored by the challenger):",
        "",
        "| measure | shadow off | shadow on | ratio | goal |",
        "|---|---|---|---|---|",
        f"| 1 row, 16 connections: p50 | {off['p50_ms']:.2f} ms | {on['p50_ms']:.2f} ms "
        f"| {shadow['p50_on_over_off_single_c16']:.3f} | <= 1.05 |",
        f"| 1 row, 16 connections: req/s | {off['rps']:.0f} | {on['rps']:.0f} "
        f"| {shadow['rps_on_over_off_single_c16']:.3f} | |",
        "",
        f"Rows scored by the challenger during one shadow-on run: {shadow['shadow_rows_scored_in_one_on_run']:.0f}.",
        "",
        "| explanations, 1 row, 1 connection | p50 | p99 | goal |",
        "|---|---|---|---|",
        f"| `POST /predict?explain=true` | {explain['p50_ms']:.2f} ms | {explain['p99_ms']:.2f} ms | p50 <= 20 ms |",
        f"| `POST /predict` (same server) | {plain['p50_ms']:.2f} ms | {plain['p99_ms']:.2f} ms | |",
        f"| TreeSHAP in process ({shadow['trees']} leaves) | {shadow['tree_shap_in_process_one_row_p50_ms']:.2f} ms "
        "| | |",
    ]


def write_results(results: dict[str, Any], folder: Path) -> None:
    """`--shadow-only`: bench/results/<date>-shadow.{json,md}."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / (datetime.now(UTC).strftime("%Y-%m-%d") + "-shadow")
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    machine = results["machine"]
    header = f"Machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}; {machine['date']}."
    table = "\n".join([header, *markdown(results["shadow"])]) + "\n"
    stem.with_suffix(".md").write_text(table)
    print(table)
