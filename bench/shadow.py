"""The shadow challenger's and the explanations' budgets (issue #15), called from bench/run.py.

Same-run comparisons on the bench's project and registry: the champion plus a challenger (the same
trained model registered again with another decision threshold, so it really scores every sampled
row and disagrees on some). Servers with SHADOW_ENABLED off and on (SHADOW_SHARE=1: the worst
case, every row shadowed) and at the default share are started in alternation so machine noise hits
all: 1-row p50 at 16 connections (goal: on within +5 % of off), and throughput. Then `POST /predict?explain=true` for
one row at 1 connection (goal p50 <= 20 ms), and the in-process TreeSHAP time per row.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from accidents.config import CHALLENGER_ALIAS, MODEL_NAME
from accidents.features import SEED_EXAMPLE
from accidents.model.model_store import read_bundle
from api.core.config import Settings
from bench.common import median_of, start_api, time_calls, token_of, wrk
from tests.api.conftest import register
from tests.support.project import Project

CHALLENGER_THRESHOLD = 0.3
DEFAULT_SHARE = Settings.model_fields["shadow_share"].default


def bench_shadow(project: Project, work: Path, repeats: int, seconds: int) -> dict[str, Any]:
    champion = read_bundle(project.root / "models" / "champion.zip")
    challenger = register(project.tracking_uri, champion, threshold=CHALLENGER_THRESHOLD)
    mlflow.MlflowClient(project.tracking_uri).set_registered_model_alias(MODEL_NAME, CHALLENGER_ALIAS, challenger)
    body = work / "shadow-single.json"
    body.write_text(json.dumps({"features": list(SEED_EXAMPLE)}))
    modes = {"off": None, "on_share_default": DEFAULT_SHARE, "on_share_1": 1.0}
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    shadowed: dict[str, float] = {}
    for repeat in range(repeats):
        for mode, share in modes.items():
            print(f"shadow {mode} ({repeat + 1}/{repeats}) ...", flush=True)
            env = {"SHADOW_ENABLED": str(share is not None).lower(), "SHADOW_SHARE": str(share or 0)}
            process, url = start_api(project, work / f"shadow-{mode}-{repeat}", **env)
            try:
                token = token_of(url)
                wrk(f"{url}/predict", body, 16, 2, token)  # warm-up
                runs[mode].append(wrk(f"{url}/predict", body, 16, seconds, token))
                shadowed[mode] = max(shadowed.get(mode, 0.0), _shadow_rows(url))
            finally:
                process.stop()
    medians = {mode: median_of(values) for mode, values in runs.items()}
    off = medians["off"]

    print("explanations ...", flush=True)
    process, url = start_api(project, work / "explain")
    try:
        token = token_of(url)
        wrk(f"{url}/predict?explain=true", body, 1, 2, token)  # warm-up (builds the explainer)
        explain = median_of([wrk(f"{url}/predict?explain=true", body, 1, seconds, token) for _ in range(repeats)])
        plain = median_of([wrk(f"{url}/predict", body, 1, seconds, token) for _ in range(repeats)])
    finally:
        process.stop()
    explainer = champion.explainer()
    row = np.asarray([SEED_EXAMPLE], dtype=float)
    samples = time_calls(explainer.shap_values, row, 200)
    return {
        "challenger_version": challenger,
        "default_share": DEFAULT_SHARE,
        "single_c16": medians,
        "shadow_rows_scored_in_one_run": shadowed,
        "p50_over_off_single_c16": {mode: round(m["p50_ms"] / off["p50_ms"], 3) for mode, m in medians.items()},
        "rps_over_off_single_c16": {mode: round(m["rps"] / off["rps"], 3) for mode, m in medians.items()},
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
    medians, p50, rps = shadow["single_c16"], shadow["p50_over_off_single_c16"], shadow["rps_over_off_single_c16"]
    explain, plain = shadow["explain_single_c1"], shadow["plain_single_c1"]
    names = {"off": "shadow off", "on_share_default": f"shadow on, SHADOW_SHARE={shadow['default_share']} (default)",
             "on_share_1": "shadow on, SHADOW_SHARE=1 (every row)"}  # fmt: skip
    lines = [
        "",
        "Shadow challenger, 1 row at 16 connections (same run, servers alternated, medians):",
        "",
        "| server | p50 | p50 / off (goal <= 1.05) | req/s | req/s / off | rows shadowed in one run |",
        "|---|---|---|---|---|---|",
    ]
    for mode, name in names.items():
        lines.append(f"| {name} | {medians[mode]['p50_ms']:.2f} ms | {p50[mode]:.3f} | {medians[mode]['rps']:.0f} "
                     f"| {rps[mode]:.3f} | {shadow['shadow_rows_scored_in_one_run'][mode]:.0f} |")  # fmt: skip
    return [
        *lines,
        "",
        "| explanations, 1 row, 1 connection | p50 | p99 | goal |",
        "|---|---|---|---|",
        f"| `POST /predict?explain=true` | {explain['p50_ms']:.2f} ms | {explain['p99_ms']:.2f} ms | p50 <= 20 ms |",
        f"| `POST /predict` (same server) | {plain['p50_ms']:.2f} ms | {plain['p99_ms']:.2f} ms | |",
        f"| TreeSHAP in process ({shadow['trees']} leaves) | {shadow['tree_shap_in_process_one_row_p50_ms']:.2f} ms "
        "| | |",
    ]
