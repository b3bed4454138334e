"""The prediction log's performance budget (issue #12), called from bench/run.py.

Same-run ratios of the same API with PREDICTION_LOG_ENABLED on and off (pairs of servers up at
once, measured in ABBA order, so machine noise hits both): 1-row throughput at 16 connections
(goal >= 90 %), 1-row p50 at 1 connection (goal <= +0.1 ms), 1,000-row p50 (goal <= +10 %); and
what `record()`, all that logging adds to the request path, costs in process. Then a 60 s load
at 32 connections with logging on: rows in the log must equal the rows answered 2xx (the
server's own count, http_requests_total). And the writer's throughput into SQLite (goal >=
20,000 rows/s), and into PostgreSQL when a server binary and the psycopg driver are available.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests
from prometheus_client import CollectorRegistry

from accidents.features import SEED_EXAMPLE
from accidents.store.prediction_log import create_log_engine, ensure_schema
from api.monitoring.service import LogOptions, PredictionLog
from api.monitoring.writer import LogMetrics, PredictionLogWriter, ServedBatch
from bench.common import SCENARIOS, child_pids, median_of, rss_mb, start_api, token_of, wrk
from tests.support.processes import ManagedProcess, free_port
from tests.support.project import Project


def write_bodies(folder: Path, batch: np.ndarray) -> dict[str, Path]:
    """The bodies carry accident ids, as the replay sends them (same bodies with logging on and off)."""
    rows = batch.tolist()
    payloads = {
        "single": {"features": list(SEED_EXAMPLE), "accident_id": "202100000001"},
        "batch": {"instances": [{"features": row, "accident_id": f"2021{i:08d}"} for i, row in enumerate(rows)]},
    }
    paths = {}
    for name, payload in payloads.items():
        paths[name] = folder / f"log-{name}.json"
        paths[name].write_text(json.dumps(payload))
    return paths


def on_off(project: Project, work: Path, bodies: dict[str, Path], repeats: int, seconds: int) -> dict[str, Any]:
    """Each scenario with logging off and on: `repeats` pairs of fresh servers, both of a pair up at
    once and measured in ABBA order (off, on, on, off), so that drift of the machine's speed during
    a pair hits both sides alike. Medians over every run, and the median of the per-pair
    differences (the estimate the budget is judged on: a fresh process alone varies by ~0.3 ms)."""
    runs: dict[str, dict[str, list[dict[str, float]]]] = {"off": {}, "on": {}}
    pair_deltas: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    for repeat in range(repeats):
        servers: dict[str, tuple[ManagedProcess, str]] = {}
        try:
            for mode in ("off", "on"):
                state, logging_on = work / f"log-bench-{mode}-{repeat}", str(mode == "on").lower()
                servers[mode] = start_api(project, state, PREDICTION_LOG_ENABLED=logging_on)
            tokens = {mode: token_of(url) for mode, (_, url) in servers.items()}
            for name, (body, connections) in SCENARIOS.items():
                measured: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
                for mode in ("off", "on"):
                    wrk(f"{servers[mode][1]}/predict", bodies[body], connections, 2, tokens[mode])  # warm-up
                for mode in ("off", "on", "on", "off"):
                    url = servers[mode][1]
                    measured[mode].append(wrk(f"{url}/predict", bodies[body], connections, seconds, tokens[mode]))
                for mode, values in measured.items():
                    runs[mode].setdefault(name, []).extend(values)
                pair_deltas[name].append(
                    statistics.mean(run["p50_ms"] for run in measured["on"])
                    - statistics.mean(run["p50_ms"] for run in measured["off"])
                )
        finally:
            for process, _ in servers.values():
                process.stop()
    medians = {mode: {name: median_of(values) for name, values in by_name.items()} for mode, by_name in runs.items()}
    off, on = medians["off"], medians["on"]
    c1_deltas = pair_deltas["single_c1"]
    return {
        **medians,
        "pair_p50_deltas_ms": {name: [round(d, 3) for d in deltas] for name, deltas in pair_deltas.items()},
        "ratios": {
            "rps_on_over_off_single_c16": round(on["single_c16"]["rps"] / off["single_c16"]["rps"], 3),
            "p50_on_minus_off_ms_single_c1": round(statistics.median(c1_deltas), 3),
            "p50_on_over_off_batch_c1": round(on["batch_c1"]["p50_ms"] / off["batch_c1"]["p50_ms"], 3),
        },
    }


def record_cost(url: str, calls: int = 20_000) -> dict[str, float]:
    """What logging adds to the request path itself, in process: PredictionLog.record() for a 1-row
    request (what /predict calls), timed call by call while the writer drains into a real store."""
    registry = CollectorRegistry()
    options = LogOptions(enabled=True, url=url, queue_rows=calls * 2, batch_rows=5_000, flush_seconds=0.2,
                         retention_days=0)  # fmt: skip
    log = PredictionLog(options, LogMetrics(registry), registry)
    log.start()
    features = np.asarray([SEED_EXAMPLE], dtype=float)
    probabilities, classes = np.full(1, 0.4), np.zeros(1, np.int8)
    timings = []
    try:
        for index in range(calls):
            started = time.perf_counter_ns()
            log.record("bench", "1", "registry", "user", 0.33, features, probabilities, classes, [f"{index:012d}"])
            timings.append(time.perf_counter_ns() - started)
            if index % 100 == 99:
                time.sleep(0.001)  # let the writer run, as between requests
        assert log.writer is not None and log.writer.flush(60), "the writer did not drain"
    finally:
        log.stop()
    timings.sort()
    percentile = {"p50_us": timings[calls // 2], "p99_us": timings[calls * 99 // 100]}
    return {"calls": calls, **{name: round(ns / 1000, 2) for name, ns in percentile.items()}}


def served_2xx(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    pattern = r'^http_requests_total\{method="POST",route="/predict",status="200"\} ([\d.e+]+)$'
    return sum(float(value) for value in re.findall(pattern, text, flags=re.MULTILINE))


def metric_value(url: str, name: str) -> float:
    match = re.search(rf"^{name} ([\d.e+]+)$", requests.get(f"{url}/metrics", timeout=10).text, flags=re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def nothing_lost(project: Project, work: Path, body: Path, seconds: int = 60, connections: int = 32) -> dict[str, Any]:
    """A long load with logging on: every 2xx row must be in the log once the queue has drained."""
    state = work / "log-bench-load"
    process, url = start_api(project, state, PREDICTION_LOG_ENABLED="true")
    try:
        load = wrk(f"{url}/predict", body, connections, seconds, token_of(url))
        deadline = time.monotonic() + 60
        while metric_value(url, "prediction_log_queue_depth") > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # the last batch's transaction
        answered = served_2xx(url)
        memory = {
            "api_and_insert_process_rss_mb": rss_mb(process.pid),
            "insert_process_rss_mb": sum(rss_mb(child) for child in child_pids(process.pid)),
        }
        dropped = sum(
            float(v)
            for v in re.findall(
                r'^prediction_log_dropped_total\{reason="\w+"\} ([\d.e+]+)$',
                requests.get(f"{url}/metrics", timeout=10).text,
                re.MULTILINE,
            )
        )
    finally:
        process.stop()
    with sqlite3.connect(f"file:{state / 'predictions.db'}?mode=ro", uri=True) as connection:
        logged = connection.execute("SELECT count(*) FROM prediction_log").fetchone()[0]
    return {
        "seconds": seconds,
        "connections": connections,
        "rps": load["rps"],
        "answered_2xx_rows": int(answered),
        "logged_rows": int(logged),
        "dropped_rows": int(dropped),
        "equal": int(answered) == int(logged),
        **memory,
    }


def writer_throughput(url: str, total_rows: int = 200_000) -> dict[str, float]:
    """Rows/s of the writer alone: `total_rows` queued as 1-row and as 1,000-row requests."""
    engine = create_log_engine(url)
    ensure_schema(engine, url)
    result = {}
    try:
        for rows in (1, 1000):
            features = np.tile(np.asarray(SEED_EXAMPLE, dtype=float), (rows, 1))
            probabilities = np.full(rows, 0.4)
            writer = PredictionLogWriter(engine, LogMetrics(CollectorRegistry()), max_queue_rows=total_rows)
            for index in range(total_rows // rows):
                writer.submit(
                    ServedBatch(
                        datetime.now(UTC),
                        "bench",
                        "1",
                        "registry",
                        "user",
                        0.33,
                        features,
                        probabilities,
                        np.zeros(rows, np.int8),
                        [f"{index:012d}"] * rows,
                    )
                )
            started = time.perf_counter()
            writer.start()
            assert writer.flush(600), "the writer did not drain"
            result[f"rows_per_s_{rows}_row_requests"] = round(total_rows / (time.perf_counter() - started))
            writer.stop()
    finally:
        engine.dispose()
    return result


def postgres_throughput(work: Path) -> dict[str, Any]:
    """The same writer into a throw-away local PostgreSQL cluster, when the binaries and psycopg exist."""
    binaries = [shutil.which(name) for name in ("initdb", "pg_ctl")]
    try:
        import psycopg  # noqa: F401 - the driver SQLAlchemy uses for postgresql+psycopg://
    except ImportError:
        return {"skipped": "psycopg is not installed in this venv (it is in the API image)"}
    if not all(binaries):
        return {"skipped": "no initdb/pg_ctl on PATH"}
    folder = Path(tempfile.mkdtemp(prefix="accidents-bench-pg-"))  # not under `work` (0700, root's)
    port = free_port()
    as_root = os.geteuid() == 0
    run = ["runuser", "-u", "nobody", "--"] if as_root else []  # PostgreSQL refuses to run as root
    if as_root:
        shutil.chown(folder, user="nobody")
    subprocess.run(
        [*run, binaries[0], "-D", str(folder / "data"), "-U", "bench", "--auth=trust"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        [
            *run,
            binaries[1],
            "-D",
            str(folder / "data"),
            "-o",
            f"-p {port} -k {folder} -h 127.0.0.1",
            "-l",
            str(folder / "pg.log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        return writer_throughput(f"postgresql+psycopg://bench@127.0.0.1:{port}/postgres")
    finally:
        subprocess.run(
            [*run, binaries[1], "-D", str(folder / "data"), "-m", "fast", "stop"], capture_output=True, timeout=120
        )
        shutil.rmtree(folder, ignore_errors=True)


def bench_prediction_log(project: Project, work: Path, batch: np.ndarray, repeats: int, seconds: int) -> dict[str, Any]:
    bodies = write_bodies(work, batch)
    print("prediction log: API with logging on / off ...", flush=True)
    result: dict[str, Any] = {"on_off": on_off(project, work, bodies, repeats, seconds)}
    print("prediction log: request-path cost of record() in process ...", flush=True)
    result["record_cost"] = record_cost(f"sqlite:///{work / 'log-bench-record.db'}")
    print("prediction log: 60 s at 32 connections, nothing lost ...", flush=True)
    result["load_60s"] = nothing_lost(project, work, bodies["single"])
    print("prediction log: writer throughput ...", flush=True)
    result["writer_sqlite"] = writer_throughput(f"sqlite:///{work / 'log-bench-writer.db'}")
    result["writer_postgres"] = postgres_throughput(work)
    return result


def markdown(log: dict[str, Any]) -> list[str]:
    off, on, ratio = log["on_off"]["off"], log["on_off"]["on"], log["on_off"]["ratios"]
    load, sqlite_rate, pg = log["load_60s"], log["writer_sqlite"], log["writer_postgres"]
    deltas, cost = log["on_off"]["pair_p50_deltas_ms"]["single_c1"], log["record_cost"]
    pg_text = (
        f"{pg['rows_per_s_1_row_requests']:,} / {pg['rows_per_s_1000_row_requests']:,} rows/s"
        if "skipped" not in pg
        else f"not measured ({pg['skipped']})"
    )
    return [
        "",
        f"Prediction log (same run; {len(log['on_off']['pair_p50_deltas_ms']['single_c1'])} pairs of fresh servers, "
        "both up at once, measured off, on, on, off; medians):",
        "",
        "| measure | logging off | logging on | ratio / difference | goal |",
        "|---|---|---|---|---|",
        f"| 1 row, 16 connections: req/s | {off['single_c16']['rps']:.0f} | {on['single_c16']['rps']:.0f} "
        f"| {ratio['rps_on_over_off_single_c16']:.3f} | >= 0.90 |",
        f"| 1 row, 1 connection: p50 | {off['single_c1']['p50_ms']:.3f} ms | {on['single_c1']['p50_ms']:.3f} ms "
        f"| {ratio['p50_on_minus_off_ms_single_c1']:+.3f} ms (median of the pairs' differences) | <= +0.1 ms |",
        f"| 1,000 rows, 1 connection: p50 | {off['batch_c1']['p50_ms']:.1f} ms | {on['batch_c1']['p50_ms']:.1f} ms "
        f"| {ratio['p50_on_over_off_batch_c1']:.3f} | <= 1.10 |",
        "",
        f"1-row p50 differences per pair (on - off): {', '.join(f'{d:+.3f}' for d in deltas)} ms. "
        f"In process, `PredictionLog.record()` (all logging adds to the request path) costs "
        f"{cost['p50_us']} us p50 / {cost['p99_us']} us p99 per 1-row request while the writer drains.",
        "",
        f"60 s at 32 connections, logging on: {load['answered_2xx_rows']:,} rows answered 2xx, "
        f"{load['logged_rows']:,} rows in the log, {load['dropped_rows']} dropped "
        f"({'equal' if load['equal'] else 'NOT EQUAL'}); {load['rps']:.0f} req/s."
        + (
            f" Resident memory after it: API with its insert process {load['api_and_insert_process_rss_mb']} MB, "
            f"of which the insert process {load['insert_process_rss_mb']} MB."
            if "insert_process_rss_mb" in load
            else ""
        ),
        f"Writer throughput (1-row / 1,000-row requests): SQLite {sqlite_rate['rows_per_s_1_row_requests']:,} / "
        f"{sqlite_rate['rows_per_s_1000_row_requests']:,} rows/s (goal >= 20,000); PostgreSQL {pg_text}.",
    ]
