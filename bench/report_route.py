"""`POST /v2/predict` (the report-time model, issue #25 item 3) against the seed's `POST /predict`,
called from bench/run.py (`make bench ARGS="--report-route-only"` runs this section alone).

One API process serves both routes from the bench's registry (both champions trained by the
pipeline on the default data); wrk alternates the routes in each repeat so machine noise hits both.
Requests are real: the seed route gets the seed example and its 1,000-row test batch; /v2/predict
gets real 2021 accidents as reports built from the official tables (BAAC_DATA_DIR): the docs' curl
example accident 202100000003 alone, and the first 1,000 accidents of the report-time test split.
Goals: 1 accident p50 <= 2 ms at 1 connection, and a 1,000-accident batch within 2x of the seed
route's 1,000-row batch per row. Also: the cost of `?explain=true` on one accident (contributions of
the 95 features and the report's fields against the seed's 28, on both routes), the in-process floor of the report-time
champion (compiled trees vs scikit-learn for one row) and the API's resident memory once both routes have served.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests
from threadpoolctl import threadpool_limits

from accidents.config import Paths
from accidents.data.sources import find_year_tables
from accidents.features import SEED_EXAMPLE
from accidents.model.model_store import read_bundle
from accidents.report_time.features import example_row
from accidents.report_time.raw import accepted_reports, read_year, report_bodies
from bench.common import median_of, percentiles_ms, rss_mb, start_api, time_calls, token_of, wrk
from tests.support.project import Project

DOC_ACCIDENT = "202100000003"  # the curl example of docs/report-time-model.md
BATCH = 1000
# 1,000 real reports: ~0.7 MB of compact JSON, within the default MAX_BODY_BYTES (2 MiB)


def official_2021(baac_dir: Path) -> dict[str, pd.DataFrame]:
    found = find_year_tables(baac_dir, 2021)
    if found is None:
        raise SystemExit(f"bench: the four official 2021 tables are not in {baac_dir}/2021 (set BAAC_DATA_DIR)")
    return read_year(found)


def write_report_bodies(project: Project, work: Path) -> dict[str, Any]:
    """The /v2/predict bodies: the docs' accident alone, and the test split's first 1,000 accidents a
    reporter can send (an accident whose raw tables lack a value the contract requires, e.g. a
    vehicle of unknown category, has no valid report and is passed over; `skipped` counts them among
    the accidents considered)."""
    tables = official_2021(Path(os.environ.get("BAAC_DATA_DIR", project.root / "data" / "raw")))
    test = pd.read_parquet(Paths(project.root).report_time.split("test"))
    ids = [str(each) for each in test.iloc[:, 0] if str(each).startswith("2021")][: 2 * BATCH]
    built = report_bodies(tables, [*ids, DOC_ACCIDENT])
    reports, skipped = accepted_reports(built, ids)
    reports = reports[:BATCH]
    if len(reports) < BATCH:
        raise SystemExit(f"only {len(reports)} valid 2021 reports in the report-time test split")
    bodies = {"single": built[DOC_ACCIDENT], "batch": {"accidents": reports}}
    paths: dict[str, Any] = {"skipped": skipped}
    for name, body in bodies.items():
        paths[name] = work / f"v2-{name}.json"
        paths[name].write_text(json.dumps(body, separators=(",", ":")))
    return paths


def bench_report_route(project: Project, work: Path, seed_bodies: dict[str, Path], repeats: int,
                       seconds: int) -> dict[str, Any]:  # fmt: skip
    v2_bodies = write_report_bodies(project, work)
    bundle = read_bundle(Paths(project.root).report_time.champion, example_row())
    row = np.asarray([example_row()], dtype=float)
    floor: dict[str, Any] = {"compiled_trees": bundle.compiled is not None}
    with threadpool_limits(limits=1):  # as the API runs it
        floor["one_row"] = percentiles_ms(time_calls(bundle.predict_proba, row, 2000))
        floor["sklearn_one_row"] = percentiles_ms(time_calls(bundle.model.predict_proba, row, 200))
    api, url = start_api(project, work / "report-route")
    try:
        token = token_of(url)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for name in ("single", "batch"):
            body = v2_bodies[name]  # every scenario below must answer 200 (wrk counts non-2xx as errors)
            for query in ("", "?explain=true") if name == "single" else ("",):
                check = requests.post(f"{url}/v2/predict{query}", data=body.read_bytes(), headers=headers, timeout=60)
                if check.status_code != 200:
                    raise SystemExit(f"/v2/predict{query} {name}: {check.status_code} {check.text[:2000]}")
        scenarios = {("seed", "single"): (f"{url}/predict", seed_bodies["single"]),
                     ("v2", "single"): (f"{url}/v2/predict", v2_bodies["single"]),
                     ("seed", "batch"): (f"{url}/predict", seed_bodies["batch"]),
                     ("v2", "batch"): (f"{url}/v2/predict", v2_bodies["batch"]),
                     ("seed", "explained"): (f"{url}/predict?explain=true", seed_bodies["single"]),
                     ("v2", "explained"): (f"{url}/v2/predict?explain=true", v2_bodies["single"])}  # fmt: skip
        for target, body in scenarios.values():
            wrk(target, body, 1, 2, token)  # warm-up
        runs: dict[tuple[str, str], list[dict[str, float]]] = {key: [] for key in scenarios}
        for repeat in range(repeats):
            print(f"report route ({repeat + 1}/{repeats}) ...", flush=True)
            for key, (target, body) in scenarios.items():
                runs[key].append(wrk(target, body, 1, seconds, token))
        rss = rss_mb(api.pid, children=False)
    finally:
        api.stop()
    medians = {f"{route}_{size}_c1": median_of(values) for (route, size), values in runs.items()}
    seed_single, v2_single = medians["seed_single_c1"], medians["v2_single_c1"]
    seed_batch, v2_batch = medians["seed_batch_c1"], medians["v2_batch_c1"]
    return {
        "batch_rows": BATCH,
        "seed_example": list(SEED_EXAMPLE),
        "report_accident": DOC_ACCIDENT,
        "test_accidents_without_a_valid_report_skipped": v2_bodies["skipped"],
        "floor": floor,
        **medians,
        "rss_mb_after_both_routes": rss,
        "v2_p50_over_seed_p50_single": round(v2_single["p50_ms"] / seed_single["p50_ms"], 2),
        "v2_batch_per_row_over_seed_batch_per_row": round(v2_batch["p50_ms"] / seed_batch["p50_ms"], 2),
        "v2_explained_p50_over_v2_p50_single": round(medians["v2_explained_c1"]["p50_ms"] / v2_single["p50_ms"], 2),
        "v2_explained_p50_over_seed_explained_p50": round(
            medians["v2_explained_c1"]["p50_ms"] / medians["seed_explained_c1"]["p50_ms"], 2
        ),
        "load_average": os.getloadavg(),
    }


def markdown(result: dict[str, Any]) -> list[str]:
    floor = result["floor"]
    rows = result["batch_rows"]
    lines = [
        "",
        f"`POST /v2/predict` (report-time model) against `POST /predict` (seed), one API process, 1 connection, "
        f"routes alternated, medians; load average at the end {', '.join(f'{x:.2f}' for x in result['load_average'])}:",
        "",
        "| request | p50 | p99 | req/s | errors |",
        "|---|---|---|---|---|",
    ]
    names = {"seed_single_c1": "`/predict`, the seed example (1 row)",
             "v2_single_c1": f"`/v2/predict`, accident {result['report_accident']} (1 accident)",
             "seed_batch_c1": f"`/predict`, {rows:,} test rows",
             "v2_batch_c1": f"`/v2/predict`, {rows:,} accidents of the test split "
                            f"({result['test_accidents_without_a_valid_report_skipped']} without a valid report "
                            "passed over)",
             "seed_explained_c1": "`/predict?explain=true`, the seed example (1 row)",
             "v2_explained_c1": f"`/v2/predict?explain=true`, accident {result['report_accident']}"}  # fmt: skip
    for key, name in names.items():
        if key not in result:  # results written before the explain rows existed
            continue
        m = result[key]
        lines.append(f"| {name} | {m['p50_ms']:.2f} ms | {m['p99_ms']:.2f} ms | {m['rps']:.0f} | {m['errors']:.0f} |")
    seed_row = result["seed_batch_c1"]["p50_ms"] / rows
    v2_row = result["v2_batch_c1"]["p50_ms"] / rows
    explained = []
    if "v2_explained_c1" in result:  # results written before the explain rows existed have none
        explained = [
            f"| `/v2/predict?explain=true` p50 / `/v2/predict` p50, 1 accident | "
            f"{result['v2_explained_p50_over_v2_p50_single']:.2f} | |",
            f"| `/v2/predict?explain=true` p50 / `/predict?explain=true` p50 | "
            f"{result['v2_explained_p50_over_seed_explained_p50']:.2f} | |",
        ]
    return [
        *lines,
        "",
        "| measure | measured | goal |",
        "|---|---|---|",
        f"| `/v2/predict` 1 accident p50 | {result['v2_single_c1']['p50_ms']:.2f} ms | <= 2 ms |",
        f"| `/v2/predict` p50 / `/predict` p50, 1 row | {result['v2_p50_over_seed_p50_single']:.2f} | |",
        f"| {rows:,}-row batch per row: `/v2/predict` / `/predict` | {v2_row * 1000:.0f} us / {seed_row * 1000:.0f} us "
        f"= {result['v2_batch_per_row_over_seed_batch_per_row']:.2f} | <= 2 |",
        *explained,
        f"| report-time champion in process, 1 row (compiled trees: {floor['compiled_trees']}) p50 | "
        f"{floor['one_row']['p50_ms']:.3f} ms (scikit-learn alone: {floor['sklearn_one_row']['p50_ms']:.2f} ms) | |",
        f"| API resident memory after both routes (both models loaded) | "
        f"{result['rss_mb_after_both_routes']:.0f} MB | |",
    ]
