"""Estimated performance before labels: how good is the served model on this window, a year early?

    python -m accidents.monitoring.estimation                       # the newest window (params.yaml monitoring:)
    python -m accidents.monitoring.estimation --from 2026-12-01 --to 2026-12-08 --calibration val.parquet
    accidents estimate ARGS

BAAC labels are published once a year, 6 to 18 months after the accidents; until then the drift
job (accidents.monitoring.drift) says whether the traffic changed, not whether the model got worse.
Confidence-based performance estimation (CBPE, as NannyML defines it for binary classification, the
field's reference) reads the expected confusion matrix off calibrated probabilities: a row served with
probability p is severe with probability p, so the window's expected ROC AUC, F1 at the version's
threshold, precision, recall and positive rate follow from its probabilities alone. That holds while
the relation between features and label stays what it was (covariate shift only), and needs
calibrated probabilities: an isotonic calibrator is fitted on the version's labelled calibration set
(the validation period, out of sample: the training rows' own probabilities are optimistic), for the
estimate only (serving is unchanged), and applied only when it lowers the calibration error there
(NannyML's rule, `needs_calibration`). The calibration error of the raw and of the cross-fitted
isotonic probabilities (ECE, Brier) on that set is reported with every estimate.

Our own implementation, about 80 lines of NumPy and scikit-learn (IsotonicRegression), not the
nannyml package: NannyML 0.13.1 pulls xgboost, lightgbm, FLAML, plotly, kaleido, gcsfs and s3fs,
which grew the Airflow image's monitoring-venv stage from 348 MB to 2.4 GB. Each function follows the
NannyML 0.13.1 function it names, step for step (same sorts, same splits, same rounding);
tests/monitoring/test_cbpe_matches_nannyml.py runs NannyML itself in a test-only venv (.venv-nannyml,
`make setup-nannyml`) on real BAAC probabilities and finds the same numbers. Measured: a 5,000-row
window against a 9,585-row calibration set (the backtest's) in 0.11 s once scikit-learn is loaded
(4.4 s with its first import, at a load average of 9).

`--model report_time` estimates the report-time model's traffic (/v2/predict's rows, issue #25) with
the calibration set and threshold of that version of its own registered model (stage.REGISTERED_NAMES):
both models number their versions from 1, so the estimate is stored and tagged under its model.

The window is the drift job's (its Settings and read_traffic); the result goes to stdout as JSON, to
the prediction log's `estimated_performance` table (accidents.store.estimates: the API's gauges and
dashboard, graded by the label job) and to a run of the MLflow experiment `monitoring` (kind
estimated_performance). The calibration set of a
version is the artifact `calibration/calibration.parquet` of its training run (validation
probabilities and labels), or a file given with --calibration.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from accidents.config import MONITORING_EXPERIMENT, TAG_THRESHOLD, load_params, tracking_uri
from accidents.features import TARGET
from accidents.model.calibration_set import (  # noqa: F401  (re-exported: the job's callers read them here)
    CALIBRATION_ARTIFACT,
    PROBABILITY,
    calibration_frame,
)
from accidents.stage import MODELS, REGISTERED_NAMES, SEED, PipelineError, log, run_stage

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.isotonic import IsotonicRegression

METRICS = ("roc_auc", "f1", "precision", "recall")
CALIBRATION_FOLDS = 5
NEEDS_CALIBRATION_SPLITS = 10  # nannyml.calibration.needs_calibration's split_count
NEEDS_CALIBRATION_BINS = 10  # and bin_count
METHOD = (
    "CBPE (NannyML 0.13.1's binary rules, own implementation), isotonic calibration on the version's validation period"
)


@dataclass(frozen=True)
class Calibration:
    """How well the raw probabilities of the calibration set match its labels, and after isotonic
    calibration (cross-fitted: each fold calibrated by the others)."""

    rows: int
    positive_rate: float
    ece_raw: float
    brier_raw: float
    ece_isotonic: float
    brier_isotonic: float
    applied: bool  # needs_calibration: isotonic calibration lowers the pooled held-out ECE


@dataclass(frozen=True)
class Estimate:
    """CBPE's estimate of one window of one model version's served probabilities."""

    model_version: str | None
    window_rows: int
    threshold: float
    roc_auc: float
    f1: float
    precision: float
    recall: float
    positive_rate: float  # estimated share of severe accidents (mean calibrated probability)
    predicted_positive_rate: float  # observed share predicted severe
    calibration: Calibration
    seconds: float
    method: str

    def metrics(self) -> dict[str, float]:
        """Flat numbers for MLflow and reports."""
        values = {f"estimated_{name}": getattr(self, name) for name in (*METRICS, "positive_rate")}
        values["predicted_positive_rate"] = self.predicted_positive_rate
        values.update({f"calibration_{k}": float(v) for k, v in asdict(self.calibration).items() if k != "applied"})
        return values


# --- calibration --------------------------------------------------------------------------------


def calibration_of(truth: np.ndarray, probability: np.ndarray, applied: bool, seed: int = 0) -> Calibration:
    """ECE and Brier score of the raw probabilities and of cross-fitted isotonic ones."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics import brier_score_loss
    from sklearn.model_selection import StratifiedKFold

    from accidents.monitoring.realized import expected_calibration_error

    calibrated = np.empty_like(probability)
    folds = StratifiedKFold(CALIBRATION_FOLDS, shuffle=True, random_state=seed)
    for fit_rows, held_rows in folds.split(probability, truth):
        isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        isotonic.fit(probability[fit_rows], truth[fit_rows])
        calibrated[held_rows] = isotonic.predict(probability[held_rows])
    return Calibration(
        rows=len(truth), positive_rate=round(float(truth.mean()), 6),
        ece_raw=round(expected_calibration_error(truth, probability), 6),
        brier_raw=round(float(brier_score_loss(truth, probability)), 6),
        ece_isotonic=round(expected_calibration_error(truth, calibrated), 6),
        brier_isotonic=round(float(brier_score_loss(truth, calibrated)), 6), applied=applied,
    )  # fmt: skip


def check_calibration_set(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of a calibration set; PipelineError when unusable."""
    missing = sorted({PROBABILITY, TARGET} - set(frame.columns))
    if missing:
        raise PipelineError(f"calibration set lacks columns {missing} (needs {PROBABILITY}, {TARGET})")
    frame = frame[[PROBABILITY, TARGET]].dropna()
    truth = frame[TARGET].to_numpy(dtype=int)
    probability = frame[PROBABILITY].to_numpy(dtype=float)
    if len(np.unique(truth)) != 2 or len(truth) < 10 * CALIBRATION_FOLDS:
        raise PipelineError(f"calibration set needs both classes and >= {10 * CALIBRATION_FOLDS} rows, "
                            f"has {len(truth)} rows, classes {sorted(np.unique(truth).tolist())}")  # fmt: skip
    if probability.min() < 0 or probability.max() > 1:
        raise PipelineError("calibration set probabilities outside [0, 1]")
    return truth, probability


# --- CBPE (NannyML 0.13.1's binary classification, re-implemented) ---------------------------------


def isotonic_calibrator() -> IsotonicRegression:
    """nannyml.calibration.IsotonicCalibrator's regressor: clipped outside the fitted range, no bounds."""
    from sklearn.isotonic import IsotonicRegression

    return IsotonicRegression(out_of_bounds="clip", increasing=True)


def equal_count_bins(rows: int, bins: int = NEEDS_CALIBRATION_BINS) -> list[tuple[int, int]]:
    """nannyml.calibration._get_bin_index_edges: `bins` runs of sorted rows, the last one takes the rest."""
    if rows <= 2 * bins:
        bins = rows // 2
    width = rows // bins
    edges = np.asarray(range(0, rows + 1, width))
    edges[-1] = rows
    return list(itertools.pairwise(edges))


def binned_ece(truth: np.ndarray, probability: np.ndarray, bins: list[tuple[int, int]]) -> float:
    """nannyml.calibration._calculate_expected_calibration_error: equal-count bins over the sorted scores."""
    order = probability.argsort()  # NumPy's default sort, as NannyML's: same ties, same bins
    probability, truth = probability[order], truth[order]
    terms = [(right - left) / len(probability) * abs(np.mean(probability[left:right]) - np.mean(truth[left:right]))
             for left, right in bins]  # fmt: skip
    return float(np.sum(terms))


def needs_calibration(truth: np.ndarray, probability: np.ndarray) -> bool:
    """nannyml.calibration.needs_calibration: isotonic calibration is applied when, pooled over 10 stratified
    90/10 shuffle splits (seed 42), the held-out tenths' ECE is lower calibrated than raw (one pooled
    comparison, not one per split); never for a single class or an AUC above 0.999."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedShuffleSplit

    if len(np.unique(truth)) == 1 or roc_auc_score(truth, probability) > 0.999:
        return False
    splits = StratifiedShuffleSplit(n_splits=NEEDS_CALIBRATION_SPLITS, test_size=0.1, random_state=42)
    held_truth, held_raw, held_calibrated = [], [], []
    for fit_rows, held_rows in splits.split(probability, truth):
        calibrator = isotonic_calibrator().fit(probability[fit_rows], truth[fit_rows])
        held_truth.append(truth[held_rows])
        held_raw.append(probability[held_rows])
        held_calibrated.append(calibrator.predict(probability[held_rows]))
    pooled_truth, pooled_raw = np.concatenate(held_truth), np.concatenate(held_raw)
    bins = equal_count_bins(len(pooled_raw))
    return binned_ece(pooled_truth, pooled_raw, bins) > binned_ece(pooled_truth, np.concatenate(held_calibrated), bins)


def expected_roc_auc(calibrated: np.ndarray, raw: np.ndarray) -> float:
    """nannyml...confidence_based.metrics.estimate_roc_auc: rows ranked by the model's raw score, each
    adding its calibrated probability to the expected true positives and the rest to the false ones;
    the area under that expected ROC curve (cumulative counts rounded to 5 decimals, as NannyML)."""
    from sklearn.metrics import auc

    order = np.argsort(raw)[::-1]
    calibrated = calibrated[order]
    true_positives = np.cumsum(calibrated)
    false_positives = 1 + np.arange(len(calibrated)) - true_positives
    true_positives = np.round(np.r_[0, true_positives], 5)
    false_positives = np.round(np.r_[0, false_positives], 5)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(auc(false_positives / false_positives[-1], true_positives / true_positives[-1]))


def ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator != 0 else 0.0


def expected_scores(predicted: np.ndarray, calibrated: np.ndarray) -> dict[str, float]:
    """F1, precision and recall of the expected confusion matrix at the threshold: a row predicted severe
    is a true positive with probability p, a false positive with 1 - p; one predicted not severe a false
    negative with p (nannyml's estimate_f1, estimate_precision, estimate_recall)."""
    positive = predicted == 1
    true_positives = float(np.sum(np.where(positive, calibrated, 0)))
    false_positives = float(np.sum(np.where(positive, 1 - calibrated, 0)))
    false_negatives = float(np.sum(np.where(positive, 0, calibrated)))
    return {"f1": ratio(true_positives, true_positives + 0.5 * (false_positives + false_negatives)),
            "precision": ratio(true_positives, true_positives + false_positives),
            "recall": ratio(true_positives, true_positives + false_negatives)}  # fmt: skip


def cbpe(
    window: np.ndarray, truth: np.ndarray, probability: np.ndarray, threshold: float
) -> tuple[dict[str, float], bool, np.ndarray]:
    """(metrics, calibration applied, calibrated window): CBPE of one window against a calibration set."""
    applied = needs_calibration(truth, probability)
    calibrated = isotonic_calibrator().fit(probability, truth).predict(window) if applied else window
    values = {"roc_auc": expected_roc_auc(calibrated, window),
              **expected_scores((window >= threshold).astype(int), calibrated)}  # fmt: skip
    return values, applied, calibrated


# --- the estimate -------------------------------------------------------------------------------


def estimate(window_probability: np.ndarray, calibration_set: pd.DataFrame, threshold: float,
             model_version: str | None = None, seed: int = 0) -> Estimate:  # fmt: skip
    """CBPE's estimated ROC AUC, F1, precision, recall at `threshold` of one window of probabilities,
    calibrated (isotonic) on the version's labelled calibration set."""
    started = time.perf_counter()
    truth, probability = check_calibration_set(calibration_set)
    window = np.asarray(window_probability, dtype=float)
    if len(window) == 0:
        raise PipelineError("an empty window has no estimated performance")
    if np.isnan(window).any():
        raise PipelineError("the window has missing probabilities")
    values, applied, calibrated = cbpe(window, truth, probability, threshold)
    return Estimate(
        model_version=model_version, window_rows=len(window), threshold=float(threshold),
        **{name: round(values[name], 6) for name in METRICS},
        positive_rate=round(float(np.mean(calibrated)), 6),
        predicted_positive_rate=round(float(np.mean(window >= threshold)), 6),
        calibration=calibration_of(truth, probability, applied, seed),
        seconds=round(time.perf_counter() - started, 3), method=METHOD,
    )  # fmt: skip


def method() -> str:
    return METHOD


# --- the version's calibration set --------------------------------------------------------------


def read_calibration(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise PipelineError(f"calibration file {path} does not exist")
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def download_calibration(client: Any, version: str, model: str = SEED) -> tuple[pd.DataFrame, float]:
    """The calibration set and decision threshold of `version` of `model`'s registered model."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    name = REGISTERED_NAMES[model]
    try:
        model_version = client.get_model_version(name, version)
        threshold = float(model_version.tags[TAG_THRESHOLD])
        with tempfile.TemporaryDirectory() as folder:
            path = client.download_artifacts(model_version.run_id, CALIBRATION_ARTIFACT, folder)
            return pd.read_parquet(path), threshold
    except (MlflowException, OSError, KeyError, ValueError) as error:
        why = f"version {version} of {name} has no calibration set ({CALIBRATION_ARTIFACT}) or threshold tag"
        raise PipelineError(f"{why}: {error}; retrain, or pass --calibration and --threshold") from error


# --- MLflow -------------------------------------------------------------------------------------


def log_estimate(uri: str, result: Estimate, window: dict[str, str | None], model: str = SEED) -> str:
    """A run in the `monitoring` experiment with the estimate, tagged with the model's registered
    name and version."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(MONITORING_EXPERIMENT)
    tags = {"model_name": REGISTERED_NAMES[model], "model_version": str(result.model_version), "model": model,
            "kind": "estimated_performance",
            **{f"window_{key}": str(value) for key, value in window.items()}}  # fmt: skip
    run_name = f"estimate v{result.model_version}" if model == SEED else f"estimate {model} v{result.model_version}"
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        mlflow.log_metrics({**result.metrics(), "window_rows": result.window_rows, "threshold": result.threshold})
        mlflow.log_dict(asdict(result), "estimated_performance.json")
        return run.info.run_id


# --- the job ------------------------------------------------------------------------------------


def run_job(log_url: str, since: datetime | None, until: datetime | None, version: str | None,
            mlflow_uri: str | None, calibration_file: Path | None, threshold: float | None,
            params: dict[str, Any], rows: int | None = None, model: str = SEED) -> dict[str, Any]:  # fmt: skip
    """Estimate the performance of `model`'s drift window (the same rows the drift job compares):
    its served probabilities only, so the report-time model's 95 inputs are never parsed here."""
    from accidents.monitoring.drift import Settings, mlflow_client, read_traffic
    from accidents.store.prediction_log import create_log_engine, ensure_schema

    settings = Settings.from_params(params)
    if rows is not None:
        settings = replace(settings, window_rows=rows)
    if since is None and until is None and settings.window_days:
        since = datetime.now(UTC) - timedelta(days=settings.window_days)
    engine = create_log_engine(log_url)
    try:
        ensure_schema(engine, log_url)
        window, version = read_traffic(engine, settings, since, until, version, model)
    finally:
        engine.dispose()
    answer: dict[str, Any] = {"model": model, "model_version": version, "window_rows": len(window), "estimate": None}
    if len(window) < settings.min_window_rows:
        log.info("%d rows < monitoring.min_window_rows %d: no estimate", len(window), settings.min_window_rows)
        return answer
    if calibration_file is not None:
        calibration, logged_threshold = read_calibration(calibration_file), None
    elif mlflow_uri:
        calibration, logged_threshold = download_calibration(mlflow_client(mlflow_uri), str(version), model)
    else:
        raise PipelineError("no calibration set: pass --calibration, or set MLFLOW_TRACKING_URI")
    if threshold is None:
        threshold = logged_threshold if logged_threshold is not None else float(window["threshold"].iloc[-1])
    result = estimate(window["probability"].to_numpy(dtype=float), calibration, threshold, version, settings.seed)
    log.info("%s version %s, %d rows: estimated ROC AUC %.4f, F1 %.4f (calibration ECE %.4f raw, %.4f isotonic) "
             "in %.1f s", model, version, len(window), result.roc_auc, result.f1, result.calibration.ece_raw,
             result.calibration.ece_isotonic, result.seconds)  # fmt: skip
    answer["estimate"] = asdict(result)
    start, end = window["logged_at"].min().to_pydatetime(), window["logged_at"].max().to_pydatetime()
    if mlflow_uri and calibration_file is None:
        answer["mlflow_run_id"] = log_estimate(mlflow_uri, result, {"start": str(start), "end": str(end)}, model)
    answer["id"] = store_estimate(log_url, answer, start, end)
    return answer


def store_estimate(log_url: str, answer: dict[str, Any], start: datetime, end: datetime) -> int:
    """The estimate as a row of `estimated_performance` (accidents.store.estimates), beside the
    drift results: what the API's gauges and dashboard read and the label job grades; its id."""
    from accidents.store import estimates
    from accidents.store.prediction_log import create_log_engine

    engine = create_log_engine(log_url)
    try:
        row = estimates.row_of(answer["estimate"], start, end, answer.get("mlflow_run_id"), model=answer["model"])
        return estimates.store(engine, row)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accidents estimate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-url", default=None, help="the prediction log's SQLAlchemy URL (default: as the API)")
    parser.add_argument("--from", dest="since", type=datetime.fromisoformat, help="logged since (UTC)")
    parser.add_argument("--to", dest="until", type=datetime.fromisoformat, help="logged before (UTC)")
    parser.add_argument("--rows", type=int, default=None, help="window size (default: monitoring.window_rows)")
    parser.add_argument("--model-version", default=None, help="default: the version that served the newest row")
    parser.add_argument("--calibration", type=Path, help="a calibration set (Parquet/CSV: probability, grav) "
                        "instead of the version's artifact (no MLflow run then)")  # fmt: skip
    parser.add_argument("--threshold", type=float, default=None, help="default: the version's threshold tag")
    parser.add_argument("--tracking-uri", default=None, help="MLflow (default: MLFLOW_TRACKING_URI)")
    parser.add_argument("--params", type=Path, default=None, help="params.yaml (default: the project's)")
    parser.add_argument("--model", choices=MODELS, default=SEED, help=f"whose traffic: {SEED} (/predict's, "
                        "default) or report_time (/v2/predict's; its registered model's calibration set)")  # fmt: skip
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []

    def body() -> None:
        from accidents.store.prediction_log import default_url

        uri = args.tracking_uri or (None if args.calibration else tracking_uri())
        results.append(run_job(args.log_url or default_url(), args.since, args.until, args.model_version, uri,
                               args.calibration, args.threshold, load_params(args.params), args.rows,
                               args.model))  # fmt: skip

    status = run_stage("estimate", body)
    if results:
        print(json.dumps(results[0], default=str))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
