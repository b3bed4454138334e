"""Monitoring backtest on real months: how much can our monitoring be trusted before labels exist?

    make monitoring-backtest            # in the monitoring venv (accidents monitoring-backtest); writes reports/
    python -m accidents.monitoring.backtest --months 2021-01 2021-02 2021-03 --shift night:2021-02

A model trained on 2020 only (the pipeline's fit_model and train params; January to September to fit,
October to December for early stopping, the threshold and the calibration set) serves every accident
of each month of 2021 (real Num_Acc): scored in-process by accidents.model.model_store.ModelBundle
.predict_proba, the API's own prediction code, and written to a prediction log (SQLite, the API's
table) with the accident's date as the logging time. On each monthly window the monitoring code
then runs as the monitoring DAG runs it: the drift job (accidents.monitoring.drift.run_job, seasonal
reference = the version's reference profile built as train builds it), the CBPE estimate
(accidents.monitoring.estimation), and the retrain policy (accidents.monitoring.retrain_decision,
k of n over the months so far). Then, as if 2021 were published, the label job
(accidents.monitoring.realized.run_job) grades the log by month.

Injected shifts, each in a log of its own (a window that is all one kind of accident): `night`
(lum 3-5: night), `department` (dep 75), `pedestrians` (catu 3), each taken from the month and its
two neighbours so that the window holds about 1,000 or more accidents, and `vma` (the month with
every speed limit +20 km/h). The labels stay the real ones: estimated vs realized still compares.

"Every accident" is every accident the API accepts: 5,012 of 2021's 54,701 joined accidents miss a
required feature (catv, vma, secu1, obsm or atm) and would be refused with a 422, so 49,689 are served.
The reference profile is all of 2020 (train's own profile holds the fitted months only, which would
leave October to December without their season here).

Writes reports/monitoring-backtest.{json,md,svg} and, with MLFLOW_TRACKING_URI set, a run in the
`monitoring` experiment (kind monitoring_backtest). Measured numbers: reports/monitoring-backtest.md
and docs/monitoring.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from accidents.config import MONITORING_EXPERIMENT, load_params, paths
from accidents.features import ACCIDENT_DATE, ACCIDENT_ID, FEATURE_NAMES, TARGET
from accidents.stage import log, run_stage

if TYPE_CHECKING:
    import pandas as pd

VERSION = "2020"  # the backtest model's version name in the logs
YEAR = 2021
SHIFTS = ("night", "department", "pedestrians", "vma")
DEFAULT_SHIFTS = ("night:2021-03", "department:2021-06", "pedestrians:2021-09", "vma:2021-11")
DEPARTMENT = 75
VMA_SHIFT = 20.0
AUC_GOAL_MONTH, AUC_GOAL_MEAN, F1_GOAL, BIG_MONTH = 0.01, 0.005, 0.015, 3000
REPORT = "monitoring-backtest"


@dataclass
class Window:
    """One monitoring window of the backtest and what each job said about it."""

    name: str  # YYYY-MM, or YYYY-MM+shift
    month: str
    shift: str | None
    rows: int
    verdict: str = ""
    drifted_share: float | None = None
    prediction_drift: float | None = None
    top_features: list[str] = field(default_factory=list)
    drifted_features: list[str] = field(default_factory=list)
    estimated_auc: float | None = None
    realized_auc: float | None = None
    realized_auc_se: float | None = None  # the realized AUC's own sampling error (Hanley-McNeil)
    estimated_f1: float | None = None
    realized_f1: float | None = None
    auc_error: float | None = None
    f1_error: float | None = None
    decision: str = ""
    seconds: float = 0.0


# --- data, model, serving -----------------------------------------------------------------------


def accidents_of(year_from: int, year_to: int) -> pd.DataFrame:
    from accidents.data.labelled import load_accidents

    frame, origin = load_accidents(date(year_from, 1, 1), date(year_to, 12, 31), "official")
    log.info("%d accidents %d..%d from %s", len(frame), year_from, year_to, origin)
    return frame


def train_2020(data: pd.DataFrame, params: dict[str, Any]) -> tuple[Any, float, pd.DataFrame, pd.DataFrame, float]:
    """(model, threshold, reference profile, calibration set, validation AUC) of a model fitted on 2020."""
    from accidents.model import reference
    from accidents.model.modeling import best_threshold, fit_model, score, split_xy
    from accidents.monitoring.estimation import calibration_frame

    dates = data[ACCIDENT_DATE]
    train = data[(dates >= "2020-01-01") & (dates < "2020-10-01")]
    val = data[(dates >= "2020-10-01") & (dates < "2021-01-01")]
    x_val, y_val = split_xy(val)
    started = time.perf_counter()
    model = fit_model(params["train"], *split_xy(train), x_val, y_val)
    val_probability = model.predict_proba(x_val)[:, 1]
    threshold = best_threshold(y_val, val_probability)
    val_auc = score(y_val, val_probability, threshold)["roc_auc"]
    log.info("trained on %d accidents of 2020-01..09 in %.0f s; validation (2020-10..12, %d): AUC %.4f, threshold "
             "%.3f", len(train), time.perf_counter() - started, len(val), val_auc, threshold)  # fmt: skip
    # the reference: every month of 2020 (the fitted and the validation months), so that each month of 2021 has
    # its season in it (train's own reference holds the fitted rows only: here that would leave out October..December)
    year = data[dates < "2021-01-01"]
    year_probability = model.predict_proba(split_xy(year)[0])[:, 1]
    profile = reference.build(year, year_probability, params["train"]["reference_rows"], params["train"]["seed"])
    return model, threshold, profile, calibration_frame(val_probability, y_val), val_auc


def shifted(data: pd.DataFrame, shift: str, month: str) -> pd.DataFrame:
    """The injected window: one kind of accident from the month and its neighbours, or the month with vma + 20."""
    period = data[ACCIDENT_DATE].dt.to_period("M")
    centre = np.datetime64(month, "M")
    if shift == "vma":
        rows = data[period == month].copy()
        rows["vma"] = rows["vma"] + VMA_SHIFT
        return rows
    near = data[(period >= str(centre - 1)) & (period <= str(centre + 1))]
    kinds = {"night": near["lum"].isin([3, 4, 5]), "department": near["dep"] == DEPARTMENT,
             "pedestrians": near["catu"] == 3}  # fmt: skip
    return near[kinds[shift]]


def serve(log_url: str, model: Any, threshold: float, rows: pd.DataFrame) -> None:
    """Score the rows as the API scores a large batch (ModelBundle.predict_proba above the compiled trees'
    MAX_ROWS: the model's own predict_proba; class = probability >= threshold) and write them to the
    prediction log as it does. (ModelBundle itself imports treelite, which the monitoring venv lacks.)"""
    from accidents.store.prediction_log import create_log_engine, ensure_schema, predictions

    matrix = rows[list(FEATURE_NAMES)].to_numpy(dtype=float)
    probability = np.asarray(model.predict_proba(matrix)[:, 1], dtype=float)
    classes = (probability >= threshold).astype(int)
    hours = rows["hour"].fillna(0).clip(0, 23).to_numpy(dtype=int)
    logged = [datetime.combine(day.date(), datetime.min.time(), UTC) + timedelta(hours=int(hour), seconds=i % 3600)
              for i, (day, hour) in enumerate(zip(rows[ACCIDENT_DATE], hours, strict=True))]  # fmt: skip
    records = [
        {"logged_at": at, "request_id": f"backtest{i:08d}", "model_version": VERSION, "model_source": "local",
         "caller_role": "backtest", "accident_id": str(accident), "probability": float(p), "predicted_class": int(c),
         "threshold": threshold, "shadow": False, **dict(zip(FEATURE_NAMES, features, strict=True))}
        for i, (at, accident, p, c, features) in enumerate(
            zip(logged, rows[ACCIDENT_ID], probability, classes, matrix.tolist(), strict=True))
    ]  # fmt: skip
    engine = create_log_engine(log_url)
    try:
        ensure_schema(engine, log_url)
        with engine.begin() as connection:
            connection.execute(predictions.insert(), records)
    finally:
        engine.dispose()


# --- monitoring of one window -------------------------------------------------------------------


def monitor(window: Window, log_url: str, since: datetime, until: datetime, profile_file: Path,
            calibration: pd.DataFrame, threshold: float, settings: Any) -> None:  # fmt: skip
    """The drift job and the estimate on one window, as the monitoring DAG runs them."""
    from accidents.monitoring import drift, estimation
    from accidents.store.prediction_log import read_window

    started = time.perf_counter()
    result = drift.run_job(log_url, settings, since, until, VERSION, None, profile_file)
    window.verdict = result["verdict"]
    window.drifted_share = result["drifted_share"]
    window.prediction_drift = result["prediction_drift"]
    window.drifted_features = list(result["drifted_features"] or [])
    scores = result["feature_scores"] or {}
    window.top_features = [f"{name} {score:.3f}" for name, score in sorted(scores.items(), key=lambda i: -i[1])[:3]]
    served = read_window(log_url, since, until, model_version=VERSION)
    if len(served) >= settings.min_window_rows:
        guess = estimation.estimate(served["probability"].to_numpy(dtype=float), calibration, threshold, VERSION)
        window.estimated_auc, window.estimated_f1 = guess.roc_auc, guess.f1
    window.seconds = round(time.perf_counter() - started, 2)


def grade(windows: list[Window], log_url: str, labels: pd.DataFrame | None) -> None:
    """The label job on a log: realized AUC and F1 per month (or the whole log for a shifted window)."""
    from accidents.monitoring import realized
    from accidents.store.prediction_log import read_window

    if labels is None:  # the label job itself, as if 2021 were published
        grades = realized.run_job(log_url, None, None, "official", None)
    else:  # a shifted window: the same grading on the labels already read
        grades = realized.grade_log(read_window(log_url, with_accident_id=True), labels)
    by_month = {g.month: g for g in grades if g.model_version == VERSION}
    for window in windows:
        g = by_month.get(window.month) if labels is None else by_month.get(realized.ALL_MONTHS)
        if g is None:
            continue
        window.realized_auc, window.realized_f1 = g.roc_auc, g.f1
        if g.roc_auc is not None and g.positive_rate is not None:
            positives = round(g.rows_labelled * g.positive_rate)
            window.realized_auc_se = round(auc_standard_error(g.roc_auc, positives, g.rows_labelled - positives), 4)
        if window.estimated_auc is not None and g.roc_auc is not None:
            window.auc_error = round(window.estimated_auc - g.roc_auc, 6)
            window.f1_error = round(window.estimated_f1 - g.f1, 6)


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982): how much a month's realized AUC varies with its sample alone, the yardstick
    an estimate's error is read against (about 0.007 for 4,000 accidents, 34 % severe)."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    return float(np.sqrt(variance / (positives * negatives)))


def decisions(windows: list[Window], test_auc: float, params: dict[str, Any]) -> None:
    """What the retrain policy would have decided after each unshifted month (labels not yet out), and
    for a shifted window, had it replaced its month."""
    from accidents.monitoring.retrain_decision import Thresholds, decide, evidence_of

    thresholds = Thresholds.from_params(params)
    history: list[dict[str, Any]] = []
    now = datetime(YEAR, 1, 1, tzinfo=UTC)
    for window in windows:
        as_drift = {"name": window.name, "model_version": VERSION, "verdict": window.verdict,
                    "drifted_share": window.drifted_share or 0.0, "prediction_drift": window.prediction_drift or 0.0,
                    "drifted_features": window.drifted_features, "window_rows": window.rows}  # fmt: skip
        as_estimate = {"name": window.name, "model_version": VERSION, "roc_auc": window.estimated_auc}
        before = [h for h in history if h["month"] < window.month]
        drifts = [h["drift"] for h in before] + [as_drift]
        estimates = [h["estimate"] for h in before] + [as_estimate]
        evidence = evidence_of(drifts, [], VERSION, test_auc, thresholds, estimates)
        choice = decide(evidence, [], now, thresholds)
        window.decision = ("retrain: " if choice.retrain else "no retrain: ") + choice.reason
        if window.shift is None:
            history.append({"month": window.month, "drift": as_drift, "estimate": as_estimate})


# --- the whole backtest -------------------------------------------------------------------------


def run(months: list[str], shifts: list[tuple[str, str]], params: dict[str, Any], folder: Path) -> dict[str, Any]:
    from accidents.monitoring.drift import Settings

    started = time.perf_counter()
    data = accidents_of(2020, YEAR)
    model, threshold, profile, calibration, val_auc = train_2020(data, params)
    profile_file = folder / "reference.parquet"
    profile.to_parquet(profile_file, index=False)
    settings = replace(Settings.from_params(params), window_rows=0, window_days=0)
    year = data[data[ACCIDENT_DATE].dt.year == YEAR]
    period = year[ACCIDENT_DATE].dt.to_period("M").astype(str)
    main_log = f"sqlite:///{folder / 'prediction_log.db'}"
    windows: list[Window] = []
    for month in months:
        rows = year[period == month]
        serve(main_log, model, threshold, rows)
        window = Window(month, month, None, len(rows))
        since = datetime.fromisoformat(f"{month}-01").replace(tzinfo=UTC)
        monitor(window, main_log, since, _next_month(since), profile_file, calibration, threshold, settings)
        windows.append(window)
        log.info("%s: %d rows, %s, estimated AUC %s (%.1f s)", month, len(rows), window.verdict, window.estimated_auc,
                 window.seconds)  # fmt: skip
    grade(windows, main_log, None)
    for number, (shift, month) in enumerate(shifts):
        rows = shifted(year, shift, month)
        shift_log = f"sqlite:///{folder / f'shift{number}.db'}"
        serve(shift_log, model, threshold, rows)
        window = Window(f"{month}+{shift}", month, shift, len(rows))
        monitor(window, shift_log, datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC), profile_file,
                calibration, threshold, settings)  # fmt: skip
        grade([window], shift_log, year[[ACCIDENT_ID, ACCIDENT_DATE, TARGET]])
        windows.append(window)
    windows.sort(key=lambda w: (w.month, w.shift or ""))
    decisions(windows, val_auc, params)
    return {"model": {"trained_on": "2020-01..2020-09", "validation": "2020-10..2020-12", "threshold": threshold,
                      "validation_auc": round(val_auc, 4), "calibration_rows": len(calibration)},
            "windows": [asdict(w) for w in windows], "goals": goals(windows),
            "seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # fmt: skip


def _next_month(moment: datetime) -> datetime:
    return (moment.replace(day=28) + timedelta(days=4)).replace(day=1)


def goals(windows: list[Window]) -> dict[str, Any]:
    """The issue's goals, measured."""
    plain = [w for w in windows if w.shift is None]
    injected = [w for w in windows if w.shift is not None]
    errors = [abs(w.auc_error) for w in plain if w.auc_error is not None]
    big = [abs(w.auc_error) for w in plain if w.auc_error is not None and w.rows >= BIG_MONTH]
    f1 = [abs(w.f1_error) for w in plain if w.f1_error is not None]
    answer = {
        "drift_alarms_unshifted": sum(w.verdict == "drift" for w in plain),
        "shifts_flagged": f"{sum(w.verdict == 'drift' for w in injected)} of {len(injected)}",
        "max_auc_error_big_months": round(max(big), 4) if big else None,
        "mean_auc_error": round(float(np.mean(errors)), 4) if errors else None,
        "max_f1_error": round(max(f1), 4) if f1 else None,
        "auc_errors_beyond_2_se": sum(
            abs(w.auc_error) > 2 * w.realized_auc_se for w in plain if w.auc_error is not None and w.realized_auc_se
        ),
    }
    answer["met"] = {
        "no_false_alarm": answer["drift_alarms_unshifted"] == 0,
        "every_shift_flagged": all(w.verdict == "drift" for w in injected),
        "auc_error_per_month": bool(big) and max(big) <= AUC_GOAL_MONTH,
        "auc_error_mean": bool(errors) and float(np.mean(errors)) <= AUC_GOAL_MEAN,
        "f1_error": bool(f1) and max(f1) <= F1_GOAL,
    }
    return answer


# --- reports ------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 4, sign: bool = False) -> str:
    return "—" if value is None else (f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}")


def _se(window: dict[str, Any]) -> str:
    return "" if window.get("realized_auc_se") is None else f" ± {window['realized_auc_se']:.4f}"


def markdown(report: dict[str, Any]) -> str:
    lines = ["| window | rows | drift verdict | drifted share | top features (score) | est. AUC | real. AUC ± SE | "
             "AUC error | est. F1 | real. F1 | F1 error | retrain policy |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for w in report["windows"]:
        policy = w["decision"].split(":")[0]
        lines.append(f"| {w['name']} | {w['rows']:,} | {w['verdict']} | {_num(w['drifted_share'], 2)} | "
                     f"{', '.join(w['top_features'])} | {_num(w['estimated_auc'])} | "
                     f"{_num(w['realized_auc'])}{_se(w)} | "
                     f"{_num(w['auc_error'], sign=True)} | {_num(w['estimated_f1'])} | {_num(w['realized_f1'])} | "
                     f"{_num(w['f1_error'], sign=True)} | {policy} |")  # fmt: skip
    g, m = report["goals"], report["model"]
    lines += ["", f"Model: trained on {m['trained_on']}, validation {m['validation']} (AUC {m['validation_auc']}, "
              f"threshold {m['threshold']:.3f}, calibration set {m['calibration_rows']:,} rows).",
              f"Goals: drift alarms on unshifted months {g['drift_alarms_unshifted']} (goal 0); shifts flagged "
              f"{g['shifts_flagged']}; max |AUC error| on months >= {BIG_MONTH:,} rows {g['max_auc_error_big_months']} "
              f"(goal {AUC_GOAL_MONTH}); mean |AUC error| {g['mean_auc_error']} (goal {AUC_GOAL_MEAN}); max |F1 error| "
              f"{g['max_f1_error']} (goal {F1_GOAL}); unshifted months whose |AUC error| exceeds twice the realized "
              f"AUC's own standard error: {g['auc_errors_beyond_2_se']}. "
              f"Met: {', '.join(k for k, v in g['met'].items() if v) or 'none'}; "
              f"missed: {', '.join(k for k, v in g['met'].items() if not v) or 'none'}.",
              f"Whole backtest {report['seconds']:.0f} s, peak RSS {report['peak_rss_mb']:.0f} MB; drift + estimate "
              f"per window {report['window_seconds']}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Estimated vs realized AUC by month as a small SVG, written by hand: matplotlib is not in the monitoring
    venv (it came with NannyML, which our own CBPE replaced), and a line chart needs no library."""
    plain = [w for w in report["windows"] if w["shift"] is None]
    width, height, left, top, step = 760, 320, 60, 30, 56
    values = [w[key] for w in plain for key in ("estimated_auc", "realized_auc") if w[key] is not None]
    bars = [(i, w["realized_auc"], 2 * w["realized_auc_se"]) for i, w in enumerate(plain) if w.get("realized_auc_se")]
    values += [v + sign * half for _, v, half in bars for sign in (-1, 1)]
    low, high = (min(values) - 0.005, max(values) + 0.005) if values else (0.0, 1.0)

    def y(value: float) -> float:
        return top + (high - value) / (high - low) * (height - top - 60)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             'font-size="11">', f'<text x="{left}" y="18" font-size="13">Model trained on 2020, serving 2021: '
             "estimated (CBPE) vs realized ROC AUC by month</text>"]  # fmt: skip
    for tick in np.linspace(low, high, 5):
        parts.append(f'<line x1="{left}" x2="{width - 20}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.3f}</text>')  # fmt: skip
    for i, w in enumerate(plain):
        parts.append(f'<text x="{left + 20 + i * step}" y="{height - 35}" text-anchor="middle">{w["name"]}</text>')
    parts += [
        f'<line x1="{left + 20 + i * step}" x2="{left + 20 + i * step}" y1="{y(v - half):.1f}" '
        f'y2="{y(v + half):.1f}" stroke="#d62728" stroke-opacity=".35" stroke-width="6"/>'
        for i, v, half in bars
    ]
    for key, colour, label in (("estimated_auc", "#1f77b4", "estimated (CBPE)"), ("realized_auc", "#d62728",
                               "realized (labels), band: ± 2 standard errors")):  # fmt: skip
        points = [(left + 20 + i * step, y(w[key])) for i, w in enumerate(plain) if w[key] is not None]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                     + " ".join(f"{x:.1f},{v:.1f}" for x, v in points) + '"/>')  # fmt: skip
        parts += [f'<circle cx="{x:.1f}" cy="{v:.1f}" r="3" fill="{colour}"/>' for x, v in points]
        offset = 0 if key == "estimated_auc" else 160
        parts.append(f'<rect x="{left + offset}" y="{height - 21}" width="12" height="3" fill="{colour}"/>'
                     f'<text x="{left + offset + 18}" y="{height - 16}">{label}</text>')  # fmt: skip
    path.write_text("\n".join([*parts, "</svg>"]) + "\n", encoding="utf-8")


def write_reports(report: dict[str, Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    seconds = [w["seconds"] for w in report["windows"]]
    report["window_seconds"] = f"{min(seconds):.1f}..{max(seconds):.1f} s" if seconds else "—"
    files = [folder / f"{REPORT}.json", folder / f"{REPORT}.md", folder / f"{REPORT}.svg"]
    files[0].write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    files[1].write_text(markdown(report), encoding="utf-8")
    plot(report, files[2])
    return files


def log_to_mlflow(uri: str, report: dict[str, Any], files: list[Path]) -> str:
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(MONITORING_EXPERIMENT)
    with mlflow.start_run(run_name="monitoring backtest", tags={"kind": "monitoring_backtest"}) as run:
        numbers = {k: float(v) for k, v in report["goals"].items() if isinstance(v, int | float)}
        mlflow.log_metrics({**numbers, "seconds": report["seconds"], "peak_rss_mb": report["peak_rss_mb"]})
        for w in report["windows"]:
            key = w["name"].replace("+", "_")
            mlflow.log_metrics({f"{key}/{name}": w[name] for name in ("estimated_auc", "realized_auc", "auc_error",
                                "drifted_share") if w[name] is not None})  # fmt: skip
        for path in files:
            mlflow.log_artifact(str(path))
        return run.info.run_id


def parse_shift(text: str) -> tuple[str, str]:
    kind, _, month = text.partition(":")
    if kind not in SHIFTS or len(month) != 7 or not month.startswith(str(YEAR)):
        raise argparse.ArgumentTypeError(f"a shift is KIND:{YEAR}-MM with KIND one of {SHIFTS}, got {text!r}")
    return kind, month


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accidents monitoring-backtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--months", nargs="+", default=[f"{YEAR}-{m:02d}" for m in range(1, 13)])
    parser.add_argument("--shift", dest="shifts", action="append", type=parse_shift,
                        help=f"KIND:{YEAR}-MM, repeatable (default: {' '.join(DEFAULT_SHIFTS)})")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: reports/)")
    parser.add_argument("--params", type=Path, default=None, help="params.yaml (default: the project's)")
    args = parser.parse_args(argv)
    shifts = args.shifts if args.shifts is not None else [parse_shift(s) for s in DEFAULT_SHIFTS]

    def body() -> None:
        if not os.environ.get("BAAC_DATA_DIR") and not (paths().raw / "tables").exists():
            log.info("no BAAC_DATA_DIR: the official tables are read from data/raw/tables")
        params = load_params(args.params)
        with tempfile.TemporaryDirectory(prefix="monitoring-backtest-") as scratch:
            report = run(args.months, shifts, params, Path(scratch))
        files = write_reports(report, args.out or paths().reports)
        print(markdown(report), flush=True)
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            log.info("logged to MLflow run %s", log_to_mlflow(uri, report, files))
        missing = [name for name, met in report["goals"]["met"].items() if not met]
        if missing:
            log.warning("goals missed: %s (see %s)", ", ".join(missing), files[1])

    return run_stage("monitoring_backtest", body)


if __name__ == "__main__":
    raise SystemExit(main())
