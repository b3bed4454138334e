"""The drift job's budget (issue #13): `python -m accidents.monitoring.drift` over 100,000 logged rows in
under 60 s and 2 GB, called from bench/run.py (`make bench`, or `--drift-only`).

The champion is the one bench/run.py trained on the default data (its reference profile in the
bench's MLflow). The log is a SQLite prediction log filled through the API's own writer with
real 2021-07..12 accidents (the test split, drawn with replacement up to the size) and the
champion's probabilities. Each size is timed with GNU time (wall, peak RSS of the job's
process) as the DAG runs it: the monitoring venv, the reference downloaded from MLflow, the
Evidently report logged back, the result stored. Median of `repeats` runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry

from accidents.features import ACCIDENT_ID, FEATURE_NAMES
from accidents.model.model_store import read_bundle
from accidents.store.prediction_log import create_log_engine, ensure_schema
from api.monitoring.writer import LogMetrics, PredictionLogWriter, ServedBatch
from bench.common import median_of, timed_command
from tests.support.project import Project

SIZES = (5_000, 100_000)
GOAL_SECONDS, GOAL_MB = 60.0, 2048.0


def fill_log(project: Project, url: str, rows: int, seed: int = 0) -> None:
    """`rows` served predictions of real test-period accidents, through the API's writer."""
    test = pd.read_csv(project.root / "data" / "processed" / "test.csv")
    sample = test.sample(n=rows, replace=rows > len(test), random_state=seed)
    features = sample[list(FEATURE_NAMES)].to_numpy(dtype=float)
    bundle = read_bundle(project.root / "models" / "champion.zip")
    probabilities = bundle.predict_proba(features)
    classes = (probabilities >= bundle.metadata.threshold).astype(np.int8)
    ids = sample[ACCIDENT_ID].astype(str).tolist()
    engine = create_log_engine(url)
    ensure_schema(engine, url)
    writer = PredictionLogWriter(engine, LogMetrics(CollectorRegistry()), max_queue_rows=rows + 1, batch_rows=5000,
                                 flush_seconds=0.05, retention_days=0)  # fmt: skip
    writer.start()
    for start in range(0, rows, 1000):
        part = slice(start, start + 1000)
        writer.submit(ServedBatch(datetime.now(UTC), "bench", bundle.metadata.version, "registry", "user",
                                  bundle.metadata.threshold, features[part], probabilities[part], classes[part],
                                  ids[part]))  # fmt: skip
    assert writer.flush(300), "the writer did not drain"
    writer.stop()
    engine.dispose()


def bench_drift(project: Project, work: Path, repeats: int) -> dict[str, Any]:
    python = str(project.root / ".venv-monitoring" / "bin" / "python")
    results: dict[str, Any] = {"goal": {"seconds": GOAL_SECONDS, "peak_rss_mb": GOAL_MB}}
    for size in SIZES:
        url = f"sqlite:///{work / f'drift-{size}.db'}"
        fill_log(project, url, size)
        runs = [
            timed_command([python, "-m", "accidents.monitoring.drift", "--log-url", url, "--rows", str(size)], project)
            for _ in range(repeats)
        ]
        results[f"rows_{size}"] = median_of(runs, digits=2)
        print(f"drift job over {size:,} rows: {results[f'rows_{size}']}", flush=True)
    big = results[f"rows_{SIZES[-1]}"]
    results["goal_met"] = big["seconds"] < GOAL_SECONDS and big["peak_rss_mb"] < GOAL_MB
    return results


def markdown(drift: dict[str, Any]) -> list[str]:
    title = (
        "Drift job (`python -m accidents.monitoring.drift`, .venv-monitoring, reference from MLflow, report logged):"
    )
    lines = ["", title, "",
             "| logged rows | wall s | peak RSS MB |", "| ---: | ---: | ---: |"]  # fmt: skip
    for size in SIZES:
        row = drift[f"rows_{size}"]
        lines.append(f"| {size:,} | {row['seconds']} | {row['peak_rss_mb']:.0f} |")
    verdict = "met" if drift["goal_met"] else "MISSED"
    lines += ["", f"Goal (100,000 rows < {GOAL_SECONDS:.0f} s and < {GOAL_MB:.0f} MB): {verdict}."]
    return lines
