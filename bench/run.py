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
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from accidents.features import FEATURE_NAMES
from bench import drift, floor, pipeline, prediction_log, report_route, rss_profile, serving, shadow, stack
from bench.common import RESULTS, machine
from bench.report import write_section
from tests.support.project import REPO, copy_project, start_mlflow


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
    parser.add_argument("--floor-only", action="store_true",
                        help="only our API against the bare FastAPI floor (bench/floor.py)")  # fmt: skip
    parser.add_argument("--report-route-only", action="store_true",
                        help="only POST /v2/predict against POST /predict (bench/report_route.py)")  # fmt: skip
    parser.add_argument("--floor-baseline", metavar="REF",
                        help="also serve git REF's API in the floor section: before/after in one run")  # fmt: skip
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: `apt-get install wrk` (make bench installs it)")

    work = Path(tempfile.mkdtemp(prefix="accidents-bench-"))
    mlflow, uri = start_mlflow(work / "mlflow")
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
        only = args.prediction_log_only or args.shadow_only or args.floor_only or args.report_route_only
        if not (args.skip_drift or only):
            results["drift"] = drift.bench_drift(project, work, args.repeats)
        if not args.skip_pipeline and not only:
            print("pipeline timings ...", flush=True)
            results["pipeline"] = pipeline.bench_pipeline(project, args.repeats)
        # the 28 contract columns by name: the processed splits also carry Num_Acc, date and grav
        test_split = pd.read_csv(project.root / "data" / "processed" / "test.csv", nrows=1000)
        batch = test_split[list(FEATURE_NAMES)].to_numpy(dtype=float)
        bodies = serving.write_bodies(work, batch)
        # the framework floor (issue #26, bench/floor.py): logging and shadow on, a challenger registered
        if args.floor_only:
            results["floor_ratio"] = floor.bench_floor(project, work, bodies["api"]["single"], args.repeats,
                                                       args.seconds, args.floor_baseline,
                                                       bodies["api"]["batch"])  # fmt: skip
            write_section(results, RESULTS, "floor_ratio", "floor", floor.markdown)
            return
        # the report-time model's route against the seed's (issue #25, bench/report_route.py)
        if args.report_route_only:
            results["report_route"] = report_route.bench_report_route(project, work, bodies["api"], args.repeats,
                                                                      args.seconds)  # fmt: skip
            write_section(results, RESULTS, "report_route", "report-route", report_route.markdown)
            return
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
        results["floor"] = serving.bench_floor(project.root / "models" / "champion.zip", batch)

        print("our API ...", flush=True)
        results["api"] = serving.bench_api(project, work, bodies["api"], args.repeats, args.seconds)
        print("API memory profile ...", flush=True)
        results["api_rss_profile"] = rss_profile.bench_rss_profile(project, work)

        print("MLflow scoring server ...", flush=True)
        results["mlflow_serve"] = serving.bench_mlflow_serve(project, work, bodies["mlflow"], args.repeats,
                                                             args.seconds)  # fmt: skip
        results["ratios"] = serving.ratios(results["floor"], results["api"], results["mlflow_serve"])
        results["shadow"] = shadow.bench_shadow(
            project, work, args.repeats, args.seconds
        )  # after: it adds a challenger
        print("POST /v2/predict against POST /predict ...", flush=True)
        results["report_route"] = report_route.bench_report_route(project, work, bodies["api"], args.repeats,
                                                                  args.seconds)  # fmt: skip
        print("our API against the framework floor ...", flush=True)
        results["floor_ratio"] = floor.bench_floor(
            project,
            work,
            bodies["api"]["single"],
            args.repeats,
            args.seconds,
            args.floor_baseline,
            bodies["api"]["batch"],
        )
        if not args.skip_stack:
            print("make run: first and warm starts ...", flush=True)
            results["stack"] = stack.bench_stack(project, work, args.repeats)
        write_results(results)
    finally:
        mlflow.stop()
        shutil.rmtree(work, ignore_errors=True)


def markdown(results: dict[str, Any]) -> str:
    """The run's report: the machine, then each budget's section in a fixed order."""
    m = results["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}; {m['date']}.", ""]
    lines += serving.markdown(results)
    if "api_rss_profile" in results:  # bench/rss_profile.py
        lines += rss_profile.section(results["api_rss_profile"])
    sections = {"floor_ratio": floor.markdown,
                "stack": stack.markdown, "pipeline": pipeline.markdown, "prediction_log": prediction_log.markdown,
                "drift": drift.markdown, "shadow": shadow.markdown, "report_route": report_route.markdown}  # fmt: skip
    for key, section in sections.items():
        if key in results:
            lines += section(results[key])
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
