"""`make bench`: serving speed against MLflow's own scoring server, pipeline time and memory.

Everything runs on 127.0.0.1 in a throw-away project copy trained on the real 2021 accident
table (BAAC_DATA_DIR). Load comes from wrk (C, one process) so the load generator does not
compete with the servers through the GIL. Every figure is the median of several runs, and every
comparison is a ratio of figures measured in this same run. Results: bench/results/<date>.json
and .md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from accidents.config import CHAMPION_ALIAS, MODEL_NAME
from accidents.features import FEATURE_NAMES, SEED_EXAMPLE
from accidents.model_store import read_bundle
from bench import drift, prediction_log, rss_profile, shadow
from bench.common import (
    RESULTS,
    RSS_REQUESTS,
    SCENARIOS,
    child_pids,
    machine,
    median_of,
    percentiles_ms,
    rss_after_requests,
    rss_mb,
    start_api,
    time_calls,
    timed_command,
    token_of,
    wrk,
)
from bench.report import write_section
from tests.support.processes import ManagedProcess, free_port, start_service
from tests.support.project import REPO, Project, copy_project, start_mlflow

STAGES = ("import_data", "preprocess", "train", "evaluate")


def bench_pipeline(project: Project, repeats: int) -> dict[str, Any]:
    python = str(project.root / ".venv" / "bin" / "python")
    stages = {stage: median_of([timed_command([python, "-m", f"accidents.{stage}"], project) for _ in range(repeats)])
              for stage in STAGES}  # fmt: skip
    dvc = str(project.root / ".venv" / "bin" / "dvc")
    whole = median_of([timed_command([dvc, "repro", "--force"], project) for _ in range(repeats)])
    return {"stages": stages, "dvc_repro": whole}


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


def bench_rss_profile(project: Project, log_dir: Path) -> list[tuple[str, float, float]]:
    """bench/rss_profile.py on the bench's project and registry: the API's memory, import by import."""
    return rss_profile.run(project.env(MODEL_POLL_SECONDS="0", STATE_DIR=str(log_dir / "profile-state")), project.root)


def start_mlflow_scoring(project: Project, log_dir: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    env = project.env(MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true")  # mlflow 3 gates skops/pickle loads
    cmd = [str(project.root / ".venv" / "bin" / "mlflow"), "models", "serve", "-m",
           f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}", "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
           "--workers", "1"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    return start_service(cmd, log_dir / "mlflow-serve.log", f"{url}/ping", env=env, cwd=project.root, timeout=180), url


def time_stack_start(project: Project, log_dir: Path) -> float:
    """Seconds from launching scripts/run_stack.py (what `make run` runs) to "stack ready"."""
    ports = {name: str(free_port()) for name in ("API_PORT", "MLFLOW_PORT", "AIRFLOW_PORT")}
    env = project.env(**ports, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{ports['MLFLOW_PORT']}")
    cmd = [str(project.root / ".venv" / "bin" / "python"), str(project.root / "scripts" / "run_stack.py"), "--no-color"]
    started = time.monotonic()
    process = ManagedProcess(cmd, log_dir / f"stack-{ports['API_PORT']}.log", env=env, cwd=project.root)
    try:
        while "stack ready" not in process.log_tail(400):
            if not process.alive() or time.monotonic() - started > 600:
                raise RuntimeError(f"run_stack.py did not come up:\n{process.log_tail(60)}")
            time.sleep(0.2)
        return round(time.monotonic() - started, 1)
    finally:
        process.stop(timeout=60)


def bench_stack(project: Project, log_dir: Path, repeats: int) -> dict[str, Any]:
    """First start (Airflow DB created, first model trained), then warm restarts."""
    (project.root / ".venv-airflow").symlink_to(REPO / ".venv-airflow")
    first = time_stack_start(project, log_dir)
    warm = [time_stack_start(project, log_dir) for _ in range(repeats)]
    return {"first_start_seconds": first, "warm_start_seconds": statistics.median(warm), "warm_runs": warm}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--skip-stack", action="store_true", help="do not time `make run` starts")
    parser.add_argument("--skip-prediction-log", action="store_true", help="skip the log on/off budget")
    parser.add_argument("--prediction-log-only", action="store_true",
                        help="only the prediction log's budget (bench/prediction_log.py)")  # fmt: skip
    parser.add_argument("--skip-drift", action="store_true", help="skip the drift job's budget")
    parser.add_argument("--drift-only", action="store_true", help="only the drift job's budget (bench/drift.py)")
    parser.add_argument(
        "--shadow-only", action="store_true", help="only the shadow and explain budgets (bench/shadow.py)"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: `apt-get install wrk` (make bench installs it)")

    work = Path(tempfile.mkdtemp(prefix="accidents-bench-"))
    mlflow, uri = start_mlflow(work / "mlflow")
    processes: list[ManagedProcess] = [mlflow]
    try:
        project = copy_project(work / "project", uri, max_rows=None)
        (project.root / ".venv-monitoring").symlink_to(REPO / ".venv-monitoring")  # the drift job's venv
        print("training the champion on the default data (params.yaml: both official years) ...", flush=True)
        project.retrain()
        results: dict[str, Any] = {"machine": machine()}
        # the drift job's budget (bench/drift.py): 100,000 logged rows
        if args.drift_only:
            results["drift"] = drift.bench_drift(project, work, args.repeats)
            write_section(results, RESULTS, "drift", "drift", drift.markdown)
            return
        if not (args.skip_drift or args.prediction_log_only or args.shadow_only):
            results["drift"] = drift.bench_drift(project, work, args.repeats)
        if not args.skip_pipeline and not args.prediction_log_only and not args.shadow_only:
            print("pipeline timings ...", flush=True)
            results["pipeline"] = bench_pipeline(project, args.repeats)
        # the 28 contract columns by name: the processed splits also carry Num_Acc, date and grav
        test_split = pd.read_csv(project.root / "data" / "processed" / "test.csv", nrows=1000)
        batch = test_split[list(FEATURE_NAMES)].to_numpy(dtype=float)
        bodies = write_bodies(work, batch)
        # shadow challenger and explanations (issue #15, bench/shadow.py)
        if args.shadow_only:
            results["shadow"] = shadow.bench_shadow(project, work, args.repeats, args.seconds)
            write_section(results, RESULTS, "shadow", "shadow", shadow.markdown)
            return
        # --- prediction log budget (bench/prediction_log.py): its own servers, logging on and off
        if args.prediction_log_only:
            results["prediction_log"] = prediction_log.bench_prediction_log(project, work, batch, args.repeats,
                                                                            args.seconds)  # fmt: skip
            write_section(results, RESULTS, "prediction_log", "prediction-log", prediction_log.markdown)
            return
        if not args.skip_prediction_log:
            results["prediction_log"] = prediction_log.bench_prediction_log(project, work, batch, args.repeats,
                                                                            args.seconds)  # fmt: skip
        # --- end of the prediction log section
        print("in-process floor ...", flush=True)
        results["floor"] = bench_floor(project.root / "models" / "champion.zip", batch)

        print("our API ...", flush=True)
        api, api_url = start_api(project, work / "api-state")
        processes.append(api)
        token = token_of(api_url)
        # the goal is the serving process's; its one child, the prediction log's insert process, apart
        api_rss = rss_after_requests(api.pid, f"{api_url}/predict", bodies["api"]["single"], token, children=False)
        insert_rss = sum(rss_mb(child) for child in child_pids(api.pid))
        results["api"] = load_profile(f"{api_url}/predict", bodies["api"], token, args.repeats, args.seconds)
        results["api"].update(rss_mb=api_rss, rss_after_load_runs_mb=rss_mb(api.pid, children=False),
                              insert_process_rss_mb=insert_rss)  # fmt: skip
        api.stop()
        print("API memory profile ...", flush=True)
        results["api_rss_profile"] = bench_rss_profile(project, work)

        print("MLflow scoring server ...", flush=True)
        peer, peer_url = start_mlflow_scoring(project, work)
        processes.append(peer)
        peer_rss = rss_after_requests(peer.pid, f"{peer_url}/invocations", bodies["mlflow"]["single"])
        results["mlflow_serve"] = load_profile(f"{peer_url}/invocations", bodies["mlflow"], None, args.repeats,
                                               args.seconds)  # fmt: skip
        results["mlflow_serve"].update(rss_mb=peer_rss, rss_after_load_runs_mb=rss_mb(peer.pid))
        peer.stop()
        results["ratios"] = ratios(results["floor"], results["api"], results["mlflow_serve"])
        results["shadow"] = shadow.bench_shadow(
            project, work, args.repeats, args.seconds
        )  # after: it adds a challenger
        if not args.skip_stack:
            print("make run: first and warm starts ...", flush=True)
            results["stack"] = bench_stack(project, work, args.repeats)
        write_results(results)
    finally:
        for process in processes:
            process.stop()
        shutil.rmtree(work, ignore_errors=True)


def markdown(results: dict[str, Any]) -> str:
    floor, api, peer, ratio = results["floor"], results["api"], results["mlflow_serve"], results["ratios"]
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}; {m['date']}.",
        "",
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
    if "api_rss_profile" in results:
        lines += ["", "Our API's resident memory, import by import (`python -m bench.rss_profile`):", ""]
        lines.append(rss_profile.markdown(results["api_rss_profile"]).rstrip("\n"))
    if "stack" in results:
        stack = results["stack"]
        lines += [
            "",
            f"`make run` to all services healthy: first start {stack['first_start_seconds']:.0f} s "
            f"(trains the first model), warm start {stack['warm_start_seconds']:.0f} s (goal <= 60 s).",
        ]
    if "pipeline" in results:
        lines += ["", "| pipeline step | wall time | peak RSS |", "|---|---|---|"]
        for stage, figures in results["pipeline"]["stages"].items():
            lines.append(f"| `{stage}` | {figures['seconds']:.1f} s | {figures['peak_rss_mb']:.0f} MB |")
        whole = results["pipeline"]["dvc_repro"]
        lines.append(f"| whole `dvc repro --force` | {whole['seconds']:.1f} s | {whole['peak_rss_mb']:.0f} MB |")
    if "prediction_log" in results:  # bench/prediction_log.py
        lines += prediction_log.markdown(results["prediction_log"])
    if "drift" in results:  # bench/drift.py
        lines += drift.markdown(results["drift"])
    if "shadow" in results:  # bench/shadow.py
        lines += shadow.markdown(results["shadow"])
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / datetime.now(UTC).strftime("%Y-%m-%d")
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    stem.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
