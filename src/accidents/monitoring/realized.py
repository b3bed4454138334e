"""Label job: grade the logged predictions against the truth once the official year is published.

    python -m accidents.monitoring.realized                       # every logged prediction with an accident_id
    python -m accidents.monitoring.realized --from 2026-12-01     # logged since (UTC), --to until

Reads the prediction log (accidents.store.prediction_log.read_window, no HTTP), keeps per model version
the latest prediction of each accident id, joins the labels by accident id (accidents.data.labelled:
the processed splits or the official tables of the years the ids belong to: a BAAC Num_Acc starts
with its year) and computes, per model version and per month of the accidents, the realized ROC
AUC, F1, precision, recall, calibration (Brier score, expected calibration error, mean
probability against the observed rate) and positive rates, with the number of rows joined.
Predictions with no label yet stay counted (`rows_unlabelled`). Results go to the log's database
(`realized_performance`, which the API exports as Prometheus gauges) and to MLflow: one run per
model version in the `monitoring` experiment, tagged with the model's name and version, and the
model version itself tagged with that run and the realized AUC.

Both models' rows are graded, each apart (`model`: "seed" for /predict's rows, "report_time" for
/v2/predict's, issue #25): both registered models number their versions from 1, so a grade is
stored, logged and tagged under its model (`realized_performance.model`, revision 0007; the
registered name accidents-severity or accidents-report-time). The label is the same for both, an
accident with a user killed or hospitalised. Estimates and shadow pairs are graded per model too
(below).

Estimated performance (accidents.monitoring.estimation, stored in `estimated_performance` with its
model, revision 0008) is graded too, on its own model's rows: each stored estimate whose window is
not fully labelled yet gets the realized AUC and F1 of the same rows (the window re-read from the
log: that version's newest `window_rows` rows between its first and last logged_at) and its error,
estimated − realized, once their labels are published.

Shadow rows (the challenger's predictions of served rows, api/serving/shadow.py) are graded apart: per
model (the seed's challenger beside /predict, the report-time model's beside /v2/predict) and per
(challenger, champion) pair, both models on the same labelled rows (rows with `shadow_challenger`
and `shadow_champion` set, and `model`), what GET /monitoring/shadow?model= shows and POST
/model/promote?model= judges by. A pair of one model is never the other's: their versions both
start at 1, so the pairs are read, stored and tagged under their model.
On those same rows (ordered by accident id, so the same rows give the same interval), the paired
bootstrap 95 % intervals of the challenger-minus-champion AUC and F1 differences
(accidents.model.bootstrap, `promotion.bootstrap_rounds` of params.yaml, seed 0 as `evaluate`) are
logged and tagged on the challenger's model version of its registered model (`shadow_intervals_vs_
<champion>`, with the job id), where POST /model/promote reads them: the labels are here, not in the API.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, f1_score, precision_score, recall_score, roc_auc_score

from accidents.config import MONITORING_EXPERIMENT, load_params, tracking_uri
from accidents.data.labelled import SOURCES, load_accidents
from accidents.features import ACCIDENT_DATE, ACCIDENT_ID, TARGET
from accidents.model.bootstrap import paired_intervals, too_few
from accidents.model.promotion import COMPARED, DEFAULT_ROUNDS, TAG_SHADOW_INTERVALS, interval_text, rule_settings
from accidents.stage import MODELS, REGISTERED_NAMES, PipelineError, log, run_stage
from accidents.store import estimates
from accidents.store.prediction_log import (
    SEED_MODEL,
    create_log_engine,
    default_url,
    ensure_schema,
    read_window,
    realized,
)

TAG_MONITORING_RUN = "monitoring_run_id"
TAG_REALIZED_AUC = "realized_roc_auc"
CALIBRATION_BINS = 10
ALL_MONTHS = None  # the month column of the overall row
ACCIDENT_ID_COLUMN = "accident_id"  # the log's column (the labels call it ACCIDENT_ID)
Pair = tuple[str, str]  # (challenger version, champion version) of shadow rows


@dataclass
class Grade:
    model_version: str
    month: str | None
    rows_logged: int
    rows_labelled: int
    rows_unlabelled: int
    roc_auc: float | None = None
    f1: float | None = None
    precision: float | None = None
    recall: float | None = None
    positive_rate: float | None = None
    predicted_positive_rate: float | None = None
    mean_probability: float | None = None
    brier: float | None = None
    ece: float | None = None
    # shadow comparisons: this model graded on the labelled shadow rows of the pair
    shadow_champion: str | None = None
    shadow_challenger: str | None = None
    model: str = SEED_MODEL  # which model's logged rows (prediction_log.model): its versions are its own


def expected_calibration_error(truth: np.ndarray, probability: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Share-weighted gap between mean probability and observed rate over equal-width bins."""
    index = np.minimum((probability * bins).astype(int), bins - 1)
    total = 0.0
    for each in np.unique(index):
        mask = index == each
        total += mask.mean() * abs(probability[mask].mean() - truth[mask].mean())
    return float(total)


def grade(rows: pd.DataFrame, version: str, month: str | None, logged: int, unlabelled: int,
          model: str = SEED_MODEL) -> Grade:  # fmt: skip
    result = Grade(version, month, logged, len(rows), unlabelled, model=model)
    if rows.empty:
        return result
    truth = rows[TARGET].to_numpy(dtype=int)
    predicted = rows["predicted_class"].to_numpy(dtype=int)
    probability = rows["probability"].to_numpy(dtype=float)
    both_classes = len(np.unique(truth)) == 2
    result.roc_auc = float(roc_auc_score(truth, probability)) if both_classes else None
    result.f1 = float(f1_score(truth, predicted, zero_division=0))
    result.precision = float(precision_score(truth, predicted, zero_division=0))
    result.recall = float(recall_score(truth, predicted, zero_division=0))
    result.positive_rate = float(truth.mean())
    result.predicted_positive_rate = float(predicted.mean())
    result.mean_probability = float(probability.mean())
    result.brier = float(brier_score_loss(truth, probability))
    result.ece = expected_calibration_error(truth, probability)
    return result


def latest_per_accident(logged: pd.DataFrame) -> pd.DataFrame:
    """One prediction per (model version, accident id): the latest (an accident replayed twice
    counts once per version)."""
    ordered = logged.sort_values("id", kind="stable")
    return ordered.drop_duplicates(["model_version", ACCIDENT_ID_COLUMN], keep="last")


def labels_for(accident_ids: pd.Series, source: str) -> tuple[pd.DataFrame, list[str]]:
    """Labels (id, date, grav) of the years the ids belong to; years with no data are reported."""
    years = sorted({int(text[:4]) for text in accident_ids.unique() if len(text) >= 4 and text[:4].isdigit()})
    frames, origins = [], []
    for year in years:
        try:
            frame, origin = load_accidents(date(year, 1, 1), date(year, 12, 31), source)
        except PipelineError as error:
            log.warning("no labels for %d yet: %s", year, error)
            continue
        frames.append(frame[[ACCIDENT_ID, ACCIDENT_DATE, TARGET]])
        origins.append(origin)
    if not frames:  # typed: grade_log reads the (empty) dates as dates
        empty = {ACCIDENT_ID: pd.Series(dtype=object), ACCIDENT_DATE: pd.Series(dtype="datetime64[ns]"),
                 TARGET: pd.Series(dtype=float)}  # fmt: skip
        return pd.DataFrame(empty), origins
    labels = pd.concat(frames, ignore_index=True).drop_duplicates(ACCIDENT_ID, keep="first")
    return labels, origins


def grade_log(logged: pd.DataFrame, labels: pd.DataFrame, model: str = SEED_MODEL) -> list[Grade]:
    """Per version of `model`: one overall grade (month None) and one per month of the accidents."""
    served = latest_per_accident(logged)
    joined = served.merge(labels, left_on=ACCIDENT_ID_COLUMN, right_on=ACCIDENT_ID, how="left")
    grades = []
    for version, rows in joined.groupby(joined["model_version"].fillna("unknown"), sort=True):
        labelled = rows[rows[TARGET].notna()]
        unlabelled = len(rows) - len(labelled)
        grades.append(grade(labelled, str(version), ALL_MONTHS, len(rows), unlabelled, model))
        months = labelled[ACCIDENT_DATE].dt.strftime("%Y-%m")
        for month, in_month in labelled.groupby(months, sort=True):
            grades.append(grade(in_month, str(version), str(month), len(in_month), 0, model))
    return grades


def grade_shadow(shadow: pd.DataFrame, labels: pd.DataFrame, rounds: int = DEFAULT_ROUNDS, model: str = SEED_MODEL
                 ) -> tuple[list[Grade], dict[Pair, dict[str, Any]]]:  # fmt: skip
    """Per (challenger, champion) pair of `model`'s shadow rows: both models graded on the same
    labelled rows (the latest shadow row of each accident), overall only, and the paired intervals
    of their differences on those rows. The champion's prediction of each row is the one logged
    beside the challenger's (api/serving/shadow.py). The grades are stored under `model`."""
    grades, intervals = [], {}
    pairs = shadow.groupby([shadow["model_version"].fillna("unknown"), shadow["champion_version"].fillna("unknown")])
    for (challenger, champion), rows in pairs:
        latest = rows.sort_values("id", kind="stable").drop_duplicates(ACCIDENT_ID_COLUMN, keep="last")
        joined = latest.merge(labels, left_on=ACCIDENT_ID_COLUMN, right_on=ACCIDENT_ID, how="left")
        labelled = joined[joined[TARGET].notna()]
        unlabelled = len(joined) - len(labelled)
        theirs = labelled.assign(
            probability=labelled["champion_probability"], predicted_class=labelled["champion_class"]
        )
        for version, graded in ((challenger, labelled), (champion, theirs)):
            result = grade(graded, str(version), ALL_MONTHS, len(joined), unlabelled, model)
            result.shadow_challenger, result.shadow_champion = str(challenger), str(champion)
            grades.append(result)
        intervals[(str(challenger), str(champion))] = shadow_intervals(labelled, rounds)
    return grades, intervals


def shadow_intervals(labelled: pd.DataFrame, rounds: int) -> dict[str, Any]:
    """The paired bootstrap intervals of the challenger-minus-champion differences on the labelled
    shadow rows of one pair, ordered by accident id; {"rows", "unavailable": why} when too few."""
    rows = labelled.sort_values(ACCIDENT_ID_COLUMN, kind="stable")
    truth = rows[TARGET].to_numpy(dtype=float)
    reason = too_few(truth)
    if reason is not None:
        return {"rows": len(truth), "unavailable": reason}
    found = paired_intervals(truth, (rows["probability"], rows["predicted_class"]),
                             (rows["champion_probability"], rows["champion_class"]), rounds)  # fmt: skip
    return {"rows": len(truth), **found}


def grade_shadows(shadows: dict[str, pd.DataFrame], labels: pd.DataFrame
                  ) -> tuple[list[Grade], dict[str, dict[Pair, dict[str, Any]]]]:  # fmt: skip
    """grade_shadow of each model's shadow rows apart: the grades of all, the intervals by model
    (each tagged on its own registered model)."""
    grades: list[Grade] = []
    intervals: dict[str, dict[Pair, dict[str, Any]]] = {}
    rounds = bootstrap_rounds() if any(not rows.empty for rows in shadows.values()) else DEFAULT_ROUNDS
    for model, rows in shadows.items():
        if rows.empty:
            continue
        graded, intervals[model] = grade_shadow(rows, labels, rounds, model)
        grades += graded
    return grades, intervals


def bootstrap_rounds() -> int:
    """promotion.bootstrap_rounds of the project's params.yaml (as `evaluate`), else the default."""
    try:
        return rule_settings(load_params()["promotion"])[2]
    except (OSError, KeyError, TypeError, ValueError) as error:
        log.warning("promotion.bootstrap_rounds unreadable (%s): %d rounds", type(error).__name__, DEFAULT_ROUNDS)
        return DEFAULT_ROUNDS


def tag_shadow_intervals(uri: str, intervals: dict[Pair, dict[str, Any]], job_id: str, model: str = SEED_MODEL
                         ) -> None:  # fmt: skip
    """Each challenger version of `model`'s registered model tagged with its intervals against each
    champion, and this job's id (POST /model/promote uses them only with the realized grades of the
    same job)."""
    from accidents.model import registry

    reason = registry.unreachable_reason(uri)
    if reason is not None:
        log.warning("MLflow unreachable (%s): shadow intervals not recorded", reason)
        return
    mlflow_client = registry.client(uri)
    name = REGISTERED_NAMES[model]
    for (challenger, champion), found in intervals.items():
        if not challenger.isdigit():
            continue
        try:
            mlflow_client.set_model_version_tag(name, challenger, TAG_SHADOW_INTERVALS + champion,
                                                json.dumps({"job_id": job_id, **found}))  # fmt: skip
        except Exception as error:  # a version of another registry (e.g. served from a local copy)
            log.warning("could not tag %s version %s: %s", name, challenger, error)


def store(engine: Any, grades: list[Grade], job_id: str, label_source: str, runs: dict[tuple[str, str], str]) -> None:
    computed_at = datetime.now(UTC)
    rows = [{**asdict(g), "computed_at": computed_at, "job_id": job_id, "label_source": label_source[:200],
             "mlflow_run_id": None if g.shadow_challenger else runs.get((g.model, g.model_version))}
            for g in grades]  # fmt: skip
    with engine.begin() as connection:
        connection.execute(realized.insert(), rows)


def log_to_mlflow(uri: str, grades: list[Grade], job_id: str, window: dict[str, str | None]
                  ) -> dict[tuple[str, str], str]:  # fmt: skip
    """One run per (model, version) in the `monitoring` experiment; the registered version is
    tagged with it. Runs by (model, version)."""
    import mlflow

    from accidents.model import registry

    reason = registry.unreachable_reason(uri)
    if reason is not None:
        log.warning("MLflow unreachable (%s): results stored, not logged to MLflow", reason)
        return {}
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(MONITORING_EXPERIMENT)
    mlflow_client = registry.client(uri)
    runs = {}
    for model, version in sorted({(g.model, g.model_version) for g in grades}):
        mine = [g for g in grades if (g.model, g.model_version) == (model, version)]
        overall = next(g for g in mine if g.month is ALL_MONTHS)
        name = REGISTERED_NAMES[model]
        tags = {"model_name": name, "model_version": version, "model": model, "job_id": job_id,
                "kind": "realized_performance",
                **{f"window_{key}": str(value) for key, value in window.items()}}  # fmt: skip
        run_name = f"realized v{version}" if model == SEED_MODEL else f"realized {model} v{version}"
        with mlflow.start_run(run_name=run_name, tags=tags) as run:
            mlflow.log_metrics({f"realized_{key}": value for key, value in _numbers(overall).items()})
            for each in mine:
                if each.month is not ALL_MONTHS:
                    month = each.month.replace("-", "_")
                    mlflow.log_metrics({f"realized_{key}_{month}": value for key, value in _numbers(each).items()})
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "realized_performance.json"
                path.write_text(json.dumps([asdict(g) for g in mine], indent=2))
                mlflow.log_artifact(str(path))
        runs[(model, version)] = run.info.run_id
        if version.isdigit():
            try:
                mlflow_client.set_model_version_tag(name, version, TAG_MONITORING_RUN, run.info.run_id)
                if overall.roc_auc is not None:
                    mlflow_client.set_model_version_tag(name, version, TAG_REALIZED_AUC, f"{overall.roc_auc:.4f}")
            except Exception as error:  # a version of another registry (e.g. served from a local copy)
                log.warning("could not tag %s version %s: %s", name, version, error)
    return runs


def _numbers(g: Grade) -> dict[str, float]:
    values = asdict(g)
    return {key: float(value) for key, value in values.items()
            if key not in ("model_version", "month", "shadow_champion", "shadow_challenger", "model")
            and value is not None}  # fmt: skip


# --- estimated performance, graded -----------------------------------------------------------


def estimate_windows(engine: Any, since: datetime | None, until: datetime | None) -> list[tuple[dict, pd.DataFrame]]:
    """Each stored estimate still to grade with its window's logged rows: the same rows the
    estimate read (that model's version's newest `window_rows` served rows between the window's
    first and last logged_at), those with an accident id."""
    pending = []
    for estimate in estimates.to_grade(engine, since, until):
        rows = read_window(engine, estimate["window_start"], estimate["window_end"] + timedelta(microseconds=1),
                           model_version=estimate["model_version"], newest=estimate["window_rows"],
                           model=estimate["model"])  # fmt: skip
        pending.append((estimate, rows[rows[ACCIDENT_ID_COLUMN].notna()]))
    return pending


def grade_estimates(engine: Any, pending: list[tuple[dict, pd.DataFrame]], labels: pd.DataFrame) -> list[dict]:
    """Record the realized AUC/F1 of each estimate's labelled rows and the estimate's error; the
    estimates graded now (those with no label yet stay to grade)."""
    graded = []
    for estimate, rows in pending:
        joined = rows.merge(labels, left_on=ACCIDENT_ID_COLUMN, right_on=ACCIDENT_ID, how="left")
        labelled = joined[joined[TARGET].notna()]
        if labelled.empty:
            continue
        result = grade(labelled, str(estimate["model_version"]), ALL_MONTHS, len(rows), len(rows) - len(labelled))
        estimates.record_grade(engine, estimate, len(labelled), result.roc_auc, result.f1)
        graded.append(estimate)
        log.info("estimate #%d (version %s, %d rows): estimated AUC %.4f vs realized %s, F1 %.4f vs %s on %d "
                 "labelled rows", estimate["id"], estimate["model_version"], estimate["window_rows"],
                 estimate["roc_auc"], _fmt(result.roc_auc), estimate["f1"], _fmt(result.f1), len(labelled))  # fmt: skip
    return graded


def run_job(log_url: str, since: datetime | None, until: datetime | None, source: str, mlflow_uri: str | None
            ) -> list[Grade]:  # fmt: skip
    engine = create_log_engine(log_url)
    try:
        ensure_schema(engine, log_url)
        # each model's rows graded apart: both registered models number their versions from 1
        logged = {model: read_window(engine, since, until, with_accident_id=True, model=model) for model in MODELS}
        shadows = {model: read_window(engine, since, until, with_accident_id=True, shadow=True, model=model)
                   for model in MODELS}  # fmt: skip
        counts = ", ".join(f"{len(rows)} of the {model} model ({len(shadows[model])} shadow rows)"
                           for model, rows in logged.items())  # fmt: skip
        log.info("logged predictions with an accident id: %s", counts)
        if all(rows.empty for rows in (*logged.values(), *shadows.values())):
            return []
        pending = estimate_windows(engine, since, until)
        ids = pd.concat([*(rows[ACCIDENT_ID_COLUMN] for rows in (*logged.values(), *shadows.values())),
                         *(rows[ACCIDENT_ID_COLUMN] for _, rows in pending)], ignore_index=True)  # fmt: skip
        labels, origins = labels_for(ids, source)
        grade_estimates(engine, pending, labels)
        grades = [g for model, rows in logged.items() if not rows.empty for g in grade_log(rows, labels, model)]
        compared, intervals = grade_shadows(shadows, labels)
        job_id = uuid.uuid4().hex
        window = {"from": since.isoformat() if since else None, "to": until.isoformat() if until else None}
        runs = log_to_mlflow(mlflow_uri, grades, job_id, window) if mlflow_uri and grades else {}
        for model, found in intervals.items():
            if mlflow_uri and found:
                tag_shadow_intervals(mlflow_uri, found, job_id, model)
        grades += compared
        store(engine, grades, job_id, "; ".join(origins) or "no labels", runs)
        for g in compared:
            log.info("%s shadow %s vs champion %s: model %s realized AUC %s, F1 %s on %d labelled rows", g.model,
                     g.shadow_challenger, g.shadow_champion, g.model_version, _fmt(g.roc_auc), _fmt(g.f1),
                     g.rows_labelled)  # fmt: skip
        for model, found in intervals.items():
            for (challenger, champion), each in found.items():
                log.info("%s shadow %s vs champion %s: %s", model, challenger, champion, each.get("unavailable")
                         or ", ".join(interval_text(metric, each[metric]) for metric in COMPARED))  # fmt: skip
    finally:
        engine.dispose()
    for g in grades:
        if g.month is ALL_MONTHS and g.shadow_challenger is None:
            log.info("%s model %s: %d logged, %d labelled, %d unlabelled; realized AUC %s, F1 %s", g.model,
                     g.model_version, g.rows_logged, g.rows_labelled, g.rows_unlabelled, _fmt(g.roc_auc),
                     _fmt(g.f1))  # fmt: skip
    return grades


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m accidents.monitoring.realized", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--log-url", default=None, help="the prediction log's SQLAlchemy URL (default: as the API)")
    parser.add_argument("--from", dest="since", type=datetime.fromisoformat, help="logged since (UTC)")
    parser.add_argument("--to", dest="until", type=datetime.fromisoformat, help="logged before (UTC)")
    parser.add_argument("--source", choices=SOURCES, default="auto", help="where the labels come from")
    parser.add_argument("--tracking-uri", default=None, help="MLflow (default: MLFLOW_TRACKING_URI)")
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args(argv)
    mlflow_uri = None if args.no_mlflow else (args.tracking_uri or tracking_uri())
    grades: list[Grade] = []

    def body() -> None:
        grades.extend(run_job(args.log_url or default_url(), args.since, args.until, args.source, mlflow_uri))

    status = run_stage("realized", body)
    print(json.dumps([asdict(g) for g in grades if g.month is ALL_MONTHS]))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
