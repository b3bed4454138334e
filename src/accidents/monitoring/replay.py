"""Replay real accidents of a period through the running API, each with its Num_Acc as accident_id.

    python -m accidents.monitoring.replay --from 2021-07-01 --to 2021-12-31 --limit 5000
    python -m accidents.monitoring.replay --from 2021-07-01 --to 2021-12-31 --night --rate 50      # a shifted stream
    python -m accidents.monitoring.replay --from 2021-01-01 --to 2021-03-31 --shift victim_age=+25 --batch-size 100
    python -m accidents.monitoring.replay --from 2021-07-01 --to 2021-12-31 --route v2 --limit 2000  # as reports

This is how the monitoring walkthrough and the end-to-end tests produce traffic: rows come from
`accidents.data.labelled` (the processed splits, or the official tables), are optionally filtered
(`--query`, `--night`) or shifted (`--shift FEATURE=DELTA`, clipped to the feature's domain) so that
drift can be demonstrated, then sent at `--rate` requests/s (0: as fast as the API answers) in
requests of `--batch-size` rows from `--concurrency` threads.

`--route v2` sends the same selected accidents to POST /v2/predict as reports (every vehicle and
user, built from the official tables by accidents.report_time.raw.report_bodies); an accident the
report contract refuses (BAAC left a required value unknown, such as a vehicle's category) is
passed over and counted as `skipped_rows`. `--shift` changes the seed contract's features, which a
report does not carry: it is refused with --route v2. It prints a progress bar and a
summary (sent, accepted, rejected, p50/p99 latency); the exit status is 1 when a row was refused.
Credentials: --username/--password, else ACCIDENTS_API_USERNAME / ACCIDENTS_API_PASSWORD, else the
local demo admin.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import httpx
import numpy as np
import pandas as pd
from tqdm import tqdm

from accidents.config import API_PORT, DEFAULT_HOST, DEMO_ADMIN_PASSWORD, DEMO_ADMIN_USERNAME
from accidents.data.labelled import SOURCES, load_accidents, year_tables
from accidents.features import ACCIDENT_DATE, ACCIDENT_ID, FEATURE_NAMES, FEATURES_BY_NAME
from accidents.report_time.raw import accepted_reports, read_year, report_bodies

ENV_USERNAME = "ACCIDENTS_API_USERNAME"  # the names the Airflow DAG uses for the same API
ENV_PASSWORD = "ACCIDENTS_API_PASSWORD"  # noqa: S105 - the variable's name, not a password
DEMO_LOGIN = (DEMO_ADMIN_USERNAME, DEMO_ADMIN_PASSWORD)
NIGHT = "lum >= 3"  # BAAC lum: 3 night without public lighting, 4 lighting off, 5 lighting on
ROUTES = {"predict": "/predict", "v2": "/v2/predict"}  # --route: the seed's contract, or reports


@dataclass
class Summary:
    source: str
    selected_rows: int
    requests: int = 0
    sent_rows: int = 0
    accepted_rows: int = 0
    rejected_rows: int = 0
    failed_requests: int = 0  # no answer (connection errors, timeouts)
    statuses: dict[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None
    seconds: float = 0.0
    rows_per_second: float = 0.0
    model_versions: dict[str, int] = field(default_factory=dict)
    route: str = "/predict"
    skipped_rows: int = 0  # --route v2: accidents whose report the contract refuses (not sent)


def select_rows(frame: pd.DataFrame, query: str | None, shifts: dict[str, float], limit: int | None,
                seed: int) -> pd.DataFrame:  # fmt: skip
    """Filter, sample `limit` rows (seeded, so a replay is repeatable), keep date order, apply shifts."""
    if query:
        frame = frame.query(query)
    if limit is not None and len(frame) > limit:
        frame = frame.sample(n=limit, random_state=seed).sort_index()
    frame = frame.copy()
    for name, delta in shifts.items():
        feature = FEATURES_BY_NAME[name]
        shifted = frame[name] + delta
        frame[name] = shifted.clip(lower=feature.minimum, upper=feature.maximum)
    return frame.reset_index(drop=True)


def parse_shift(text: str) -> tuple[str, float]:
    name, _, delta = text.partition("=")
    feature = FEATURES_BY_NAME.get(name)
    if feature is None or feature.codes is not None:
        ranged = ", ".join(f.name for f in FEATURES_BY_NAME.values() if f.codes is None)
        raise argparse.ArgumentTypeError(f"--shift takes a numeric feature ({ranged}), got {name!r}")
    try:
        value = float(delta)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shift {text!r}: the delta must be a number") from None
    if feature.integer and not value.is_integer():
        raise argparse.ArgumentTypeError(f"--shift {text!r}: {name} takes whole numbers")
    return name, value


def request_bodies(frame: pd.DataFrame, batch_size: int) -> list[tuple[bytes, int]]:
    """(JSON body, row count) per request: the seed shape for one row, a batch otherwise."""
    values = frame[list(FEATURE_NAMES)].to_numpy(dtype=float)
    ids = frame[ACCIDENT_ID].astype(str).tolist()
    rows = [[None if math.isnan(v) else (int(v) if v.is_integer() else v) for v in row] for row in values.tolist()]
    bodies = []
    for start in range(0, len(rows), batch_size):
        chunk, chunk_ids = rows[start : start + batch_size], ids[start : start + batch_size]
        if batch_size == 1:
            payload: dict[str, Any] = {"features": chunk[0], "accident_id": chunk_ids[0]}
        else:
            rows_with_ids = zip(chunk, chunk_ids, strict=True)
            payload = {"instances": [{"features": row, "accident_id": id_} for row, id_ in rows_with_ids]}
        bodies.append((json.dumps(payload).encode(), len(chunk)))
    return bodies


def report_request_bodies(frame: pd.DataFrame, batch_size: int) -> tuple[list[tuple[bytes, int]], int]:
    """(JSON body, accident count) per /v2/predict request for the accidents of `frame` (in its
    order), and how many were passed over because the report contract refuses their report."""
    ids = frame[ACCIDENT_ID].astype(str).tolist()
    built: dict[str, dict[str, Any]] = {}
    for year in sorted({int(day.year) for day in frame[ACCIDENT_DATE]}):
        built |= report_bodies(read_year(year_tables(year)), ids)
    reports, refused = accepted_reports(built, ids)
    bodies = []
    for start in range(0, len(reports), batch_size):
        chunk = reports[start : start + batch_size]
        payload = chunk[0] if batch_size == 1 else {"accidents": chunk}
        bodies.append((json.dumps(payload).encode(), len(chunk)))
    return bodies, refused


class Replayer:
    def __init__(self, url: str, username: str, password: str, rate: float, concurrency: int, timeout: float,
                 route: str = "/predict"):  # fmt: skip
        self.url = url.rstrip("/")
        self.route = route
        self.credentials = {"username": username, "password": password}
        self.rate = rate
        self.concurrency = concurrency
        self.client = httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=concurrency))
        self._token = self._login()
        self._lock = threading.Lock()
        self._next = 0
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.accepted = self.rejected = self.failed = 0

    def _login(self) -> str:
        response = self.client.post(f"{self.url}/auth/token", data=self.credentials)
        if response.status_code != 200:
            raise SystemExit(f"login to {self.url} as {self.credentials['username']!r} failed: "
                             f"{response.status_code} {response.text[:200]}")  # fmt: skip
        return response.json()["access_token"]

    def run(self, bodies: list[tuple[bytes, int]], progress: tqdm) -> None:
        started = time.monotonic()
        workers = [threading.Thread(target=self._work, args=(bodies, started, progress), daemon=True)
                   for _ in range(self.concurrency)]  # fmt: skip
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def _work(self, bodies: list[tuple[bytes, int]], started: float, progress: tqdm) -> None:
        while True:
            with self._lock:
                index, self._next = self._next, self._next + 1
            if index >= len(bodies):
                return
            if self.rate > 0 and (wait := started + index / self.rate - time.monotonic()) > 0:
                time.sleep(wait)
            body, rows = bodies[index]
            self._send(body, rows)
            progress.update(rows)

    def _send(self, body: bytes, rows: int) -> None:
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
            begin = time.perf_counter()
            try:
                response = self.client.post(f"{self.url}{self.route}", content=body, headers=headers)
            except httpx.HTTPError as error:
                with self._lock:
                    self.failed += 1
                    self.rejected += rows
                    self.statuses[type(error).__name__] += 1
                return
            elapsed = time.perf_counter() - begin
            if response.status_code == 401 and attempt == 1:  # token expired during a long replay
                with self._lock:
                    self._token = self._login()
                continue
            with self._lock:
                self.latencies.append(elapsed)
                self.statuses[str(response.status_code)] += 1
                if response.status_code == 200:
                    self.accepted += rows
                    self.versions[str(response.json().get("model_version"))] += rows
                else:
                    self.rejected += rows
            return


def replay(args: argparse.Namespace) -> Summary:
    frame, source = load_accidents(args.start, args.end, args.source)
    query = " and ".join(f"({q})" for q in (args.query, NIGHT if args.night else None) if q) or None
    selected = select_rows(frame, query, dict(args.shift), args.limit, args.seed)
    summary = Summary(source=source, selected_rows=len(selected), route=ROUTES[args.route])
    if selected.empty:
        return summary
    if args.route == "v2":
        bodies, summary.skipped_rows = report_request_bodies(selected, args.batch_size)
    else:
        bodies = request_bodies(selected, args.batch_size)
    sent = sum(rows for _, rows in bodies)
    username = args.username or os.environ.get(ENV_USERNAME) or DEMO_LOGIN[0]
    password = args.password or os.environ.get(ENV_PASSWORD) or DEMO_LOGIN[1]
    replayer = Replayer(args.url, username, password, args.rate, args.concurrency, args.timeout, summary.route)
    started = time.monotonic()
    with tqdm(total=sent, unit="row", disable=args.no_progress, file=sys.stderr) as progress:
        replayer.run(bodies, progress)
    summary.seconds = round(time.monotonic() - started, 2)
    summary.requests = len(bodies)
    summary.sent_rows = sent
    summary.accepted_rows, summary.rejected_rows = replayer.accepted, replayer.rejected
    summary.failed_requests = replayer.failed
    summary.statuses = dict(replayer.statuses)
    summary.model_versions = dict(replayer.versions)
    if replayer.latencies:
        latencies = np.asarray(replayer.latencies) * 1000
        summary.p50_ms = round(float(np.percentile(latencies, 50)), 2)
        summary.p99_ms = round(float(np.percentile(latencies, 99)), 2)
    summary.rows_per_second = round(summary.sent_rows / summary.seconds, 1) if summary.seconds else 0.0
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m accidents.monitoring.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="start", type=date.fromisoformat, required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--to", dest="end", type=date.fromisoformat, required=True, help="last day (inclusive)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many accidents (seeded sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", choices=SOURCES, default="auto")
    parser.add_argument("--query", help='pandas query on the features, e.g. "hour >= 21 or hour <= 5"')
    parser.add_argument("--night", action="store_true", help=f"only night-time accidents ({NIGHT})")
    parser.add_argument("--shift", type=parse_shift, action="append", default=[], metavar="FEATURE=DELTA",
                        help="add DELTA to a numeric feature (clipped to its domain), e.g. victim_age=+20")  # fmt: skip
    parser.add_argument(
        "--route",
        choices=ROUTES,
        default="predict",
        help="predict: the seed's 28 features; v2: the accidents as reports (every vehicle and user)",
    )
    parser.add_argument("--url", default=f"http://{DEFAULT_HOST}:{API_PORT}")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second (0: as fast as answered)")
    parser.add_argument("--batch-size", type=int, default=1, help="rows per request (1: the seed's shape)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = parser.parse_args(argv)
    if args.end < args.start:
        parser.error("--to is before --from")
    if args.route == "v2" and args.shift:
        parser.error("--shift changes the seed contract's features: a report (--route v2) does not carry them")
    if args.batch_size < 1 or args.concurrency < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--batch-size, --concurrency and --limit must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = replay(args)
    if args.json:
        print(json.dumps(asdict(summary)))
    else:
        print(f"source: {summary.source}")
        print(f"selected {summary.selected_rows} accidents; sent {summary.sent_rows} rows to {summary.route} in "
              f"{summary.requests} requests in {summary.seconds} s ({summary.rows_per_second} rows/s)")  # fmt: skip
        if summary.skipped_rows:
            print(f"passed over {summary.skipped_rows} accidents whose report the contract refuses")
        print(f"accepted {summary.accepted_rows}, rejected {summary.rejected_rows} (statuses {summary.statuses})")
        print(f"latency p50 {summary.p50_ms} ms, p99 {summary.p99_ms} ms; model versions {summary.model_versions}")
    if summary.selected_rows == 0:
        print("no accident matches the period and filters", file=sys.stderr)
        return 2
    return 1 if summary.rejected_rows else 0


if __name__ == "__main__":
    raise SystemExit(main())
