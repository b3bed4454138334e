"""The drift job: does the served traffic still look like what its model learned from?

    python -m accidents.monitoring.drift                          # the newest window (params.yaml monitoring:)
    python -m accidents.monitoring.drift --from 2026-12-01 --to 2026-12-02 --rows 20000
    make monitor ARGS="--rows 2000"

Runs in its own venv (.venv-monitoring, `make setup-monitoring`): Evidently 0.7 needs pandas < 3.
Steps: read a window of the prediction log (the newest `window_rows` predictions, logged within
`window_days`, of the model version that served the newest one); below `min_window_rows`, the
verdict is `not_enough_data`. Else download that exact version's reference profile (logged at
train time, accidents.model.reference) from MLflow, keep the reference rows of the window's months in
the window's month mix (`seasonal`: accident hours, light and traffic follow the seasons), and
compute with Evidently, per feature, Jensen-Shannon distance (codes) or normed Wasserstein
distance (numbers), and the same for the predicted probabilities (prediction drift).

Specific as well as sensitive: the calendar features and `com` (~35,000 codes, `excluded_features`)
are not compared; and every score is Evidently's distance minus the distance a same-size random
sample of the reference gets against the rest of it, computed in the same run (the noise floor:
a 1,000-row window of 100 departments has a Jensen-Shannon distance of ~0.13 from the reference
by sampling alone). A feature drifts when that score reaches `feature_threshold`; the verdict is
`drift` when the drifted share reaches `drift_share_threshold` or the prediction score reaches
`prediction_threshold`. The result goes to `drift_results` (read by the API's gauges and
`GET /monitoring/drift`), Evidently's HTML report to a run of the MLflow experiment `monitoring`
(tagged with the model version, which is tagged back), and a JSON summary to stdout.

`--model report_time` watches the report-time model's traffic (/v2/predict, issue #25) the same
way: its window's 95 inputs are read from the log's `report_features` JSON, its reference is the
one train logs with each of its versions (under its own registered name), its codes and numbers
are those accidents.report_time.features declares (REPORT_CODES) and its calendar inputs and `com`
are not compared (`report_time_excluded_features`); the result is stored with model='report_time'.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from accidents.config import MONITORING_EXPERIMENT, load_params, tracking_uri
from accidents.features import FEATURE_NAMES, FEATURES
from accidents.model import reference
from accidents.stage import MODELS, REGISTERED_NAMES, PipelineError, log, run_stage
from accidents.store import drift_results
from accidents.store.drift_results import VERDICT_DRIFT, VERDICT_NO_DRIFT, VERDICT_NOT_ENOUGH_DATA
from accidents.store.prediction_log import (
    REPORT_TIME_MODEL,
    SEED_MODEL,
    create_log_engine,
    default_url,
    ensure_schema,
    predictions,
    read_window,
)

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine

TAG_DRIFT_RUN = "drift_run_id"
TAG_DRIFT_VERDICT = "drift_verdict"
REPORT_FILE = "drift_report.html"
CODED_RANGES = ("dep",)  # codes declared as a range (~100 departments): compared as categories


@dataclass(frozen=True)
class Inputs:
    """One model's inputs as the drift job reads and compares them."""

    model: str  # prediction_log.model
    features: tuple[str, ...]  # every input, in the model's order
    codes: frozenset[str]  # compared as categories (Jensen-Shannon); the others as numbers (Wasserstein)
    month: str  # the accident's month (1-12): the reference is matched on it

    @property
    def registered_name(self) -> str:
        return REGISTERED_NAMES[self.model]


def inputs_of(model: str) -> Inputs:
    """The seed's 28 contract features (their own log columns), or the report-time model's 95
    (accidents.report_time.features, logged as JSON in report_features)."""
    if model == SEED_MODEL:
        codes = frozenset({*CODED_RANGES, *(f.name for f in FEATURES if f.codes)})
        return Inputs(SEED_MODEL, FEATURE_NAMES, codes, "mois")
    if model == REPORT_TIME_MODEL:
        from accidents.report_time.features import REPORT_CODES, REPORT_FEATURES

        return Inputs(REPORT_TIME_MODEL, REPORT_FEATURES, REPORT_CODES, "month")
    raise PipelineError(f"unknown model {model!r}: one of {', '.join(MODELS)}")


@dataclass(frozen=True)
class Settings:
    """The `monitoring:` section of params.yaml."""

    window_rows: int = 5000
    window_days: float = 7
    min_window_rows: int = 1000
    excluded_features: tuple[str, ...] = ("year_acc", "jour", "mois", "com")
    # the report-time model's calendar and commune inputs, not compared for the same reasons
    report_time_excluded_features: tuple[str, ...] = ("month", "weekday", "com")
    seasonal: bool = True
    feature_threshold: float = 0.1
    drift_share_threshold: float = 0.1
    prediction_threshold: float = 0.1
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Settings:
        section = dict(params.get("monitoring") or {})
        known = {name: section[name] for name in cls.__dataclass_fields__ if name in section}
        for key, model in (("excluded_features", SEED_MODEL), ("report_time_excluded_features", REPORT_TIME_MODEL)):
            if key in known:
                known[key] = tuple(known[key])
                unknown = sorted(set(known[key]) - set(inputs_of(model).features))
                if unknown:
                    raise PipelineError(f"monitoring.{key} names features outside the contract of the {model} model: "
                                        f"{unknown}")  # fmt: skip
        return cls(**known)

    def excluded(self, model: str) -> tuple[str, ...]:
        return self.report_time_excluded_features if model == REPORT_TIME_MODEL else self.excluded_features

    def compared_of(self, inputs: Inputs) -> tuple[str, ...]:
        """The inputs compared: all but the excluded ones, in the model's order."""
        excluded = self.excluded(inputs.model)
        return tuple(name for name in inputs.features if name not in excluded)

    @property
    def compared(self) -> tuple[str, ...]:
        """The seed's compared features."""
        return self.compared_of(inputs_of(SEED_MODEL))


@dataclass
class Comparison:
    """Scores of one window against its reference (score = distance - noise floor, at least 0)."""

    scores: dict[str, float]
    raw: dict[str, float]
    noise: dict[str, float]
    prediction: float
    drifted: list[str]
    reference_rows: int
    seasonal_months: list[int] = field(default_factory=list)
    snapshot: Any = None  # Evidently's snapshot of window vs reference (the HTML report)


# --- window and reference -----------------------------------------------------------------------


def newest_version(engine: Engine, since: datetime | None, until: datetime | None,
                   model: str = SEED_MODEL) -> str | None:  # fmt: skip
    """The version of `model` that served the newest logged prediction of the time range (served
    rows: a shadow challenger's rows are not traffic; the other model's rows are not this one's,
    and both models' version numbers start at 1)."""
    query = (
        select(predictions.c.model_version)
        .where(predictions.c.shadow.is_(False), predictions.c.model == model)
        .order_by(predictions.c.id.desc())
        .limit(1)
    )
    if since is not None:
        query = query.where(predictions.c.logged_at >= since)
    if until is not None:
        query = query.where(predictions.c.logged_at < until)
    with engine.connect() as connection:
        return connection.execute(query).scalar()


def read_traffic(engine: Engine, settings: Settings, since: datetime | None, until: datetime | None,
                 version: str | None, model: str = SEED_MODEL) -> tuple[pd.DataFrame, str | None]:  # fmt: skip
    """The window: the newest `window_rows` served predictions of one version of `model` in the
    time range (the seed's: its 28 feature columns; the report-time model's: /v2/predict's rows,
    inputs in `report_features`)."""
    version = version or newest_version(engine, since, until, model)
    if version is None:
        import pandas as pd

        return pd.DataFrame(), None
    window = read_window(engine, since, until, model_version=version, newest=settings.window_rows or None,
                         model=model)  # fmt: skip
    return window, version


def window_inputs(window: pd.DataFrame, inputs: Inputs) -> pd.DataFrame:
    """The window with the model's inputs as columns: the seed's are columns of the log already;
    the report-time model's 95 are one JSON object a row in `report_features` (null: NaN)."""
    import pandas as pd

    if inputs.model == SEED_MODEL or window.empty:
        return window
    parsed = pd.DataFrame.from_records([json.loads(text) for text in window["report_features"]],
                                       index=window.index, columns=list(inputs.features))  # fmt: skip
    return pd.concat([window.drop(columns=[c for c in inputs.features if c in window]), parsed.astype(float)], axis=1)


def matched_reference(
    window: pd.DataFrame, profile: pd.DataFrame, settings: Settings, month: str = "mois"
) -> tuple[pd.DataFrame, list[int]]:
    """The reference rows of the window's months (the `month` input: the seed's `mois`), sampled
    in the window's month mix, as many as the scarcest month allows; the whole reference when not
    seasonal, a month is missing or the mix leaves fewer than min_window_rows."""
    import pandas as pd

    if not settings.seasonal:
        return profile, []
    mix = window[month].dropna().round().astype(int).value_counts(normalize=True)
    months = profile[month].round().astype(int)
    available = months.value_counts()
    if any(available.get(month, 0) == 0 for month in mix.index):
        missing = sorted(int(m) for m in mix.index if available.get(m, 0) == 0)
        log.warning("reference has no rows of months %s: comparing with the whole reference", missing)
        return profile, []
    total = min(available[month] / share for month, share in mix.items())
    parts = [profile[months == month].sample(n=max(1, int(total * share)), random_state=settings.seed)
             for month, share in mix.items()]  # fmt: skip
    matched = pd.concat(parts).sort_index()
    if len(matched) < settings.min_window_rows:  # too few to compare with (and to measure the noise floor)
        log.warning("only %d reference rows in the window's month mix: comparing with the whole reference",
                    len(matched))  # fmt: skip
        return profile, []
    return matched, sorted(int(month) for month in mix.index)


# --- comparison ---------------------------------------------------------------------------------


def _distances(current: pd.DataFrame, base: pd.DataFrame, columns: list[str],
               codes: frozenset[str]) -> tuple[dict[str, float], Any]:  # fmt: skip
    """Evidently's per-column drift distances (current vs base) and its snapshot; `codes`: the
    columns compared as categories."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    categorical = [c for c in columns if c in codes]
    definition = DataDefinition(numerical_columns=[c for c in columns if c not in categorical],
                                categorical_columns=categorical)  # fmt: skip
    # methods pinned: Evidently's default swaps them for p-values (KS, chi-square) when the base has <= 1000
    # rows, e.g. the noise floor's rest of a ~2,000-row seasonal reference, and a p-value is not a distance
    preset = DataDriftPreset(columns=columns, cat_method="jensenshannon", num_method="wasserstein")
    snapshot = Report([preset]).run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(base[columns], data_definition=definition),
    )
    distances = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            distances[config["column"]] = float(metric["value"])
    return distances, snapshot


def compare(
    window: pd.DataFrame, profile: pd.DataFrame, settings: Settings, inputs: Inputs | None = None
) -> Comparison:
    """Per-feature and prediction scores of the window (its inputs as columns) against its
    (matched) reference; `inputs`: the model's (default the seed's)."""
    inputs = inputs or inputs_of(SEED_MODEL)
    compared = settings.compared_of(inputs)
    base, months = matched_reference(window, profile, settings, inputs.month)
    columns = [*compared, reference.PROBABILITY]
    current = window[columns]
    started = time.perf_counter()
    raw, snapshot = _distances(current, base, columns, inputs.codes)
    # the noise floor: a reference sample of the window's size against the rest of the reference
    size = min(len(current), len(base) // 2)
    null_sample = base.sample(n=size, random_state=settings.seed + 1)
    noise, _ = _distances(null_sample, base.drop(null_sample.index), columns, inputs.codes)
    log.info("Evidently: %d window rows vs %d reference rows, %d columns, twice, in %.1f s", len(current), len(base),
             len(columns), time.perf_counter() - started)  # fmt: skip
    scores = {name: round(max(0.0, raw[name] - noise[name]), 6) for name in compared if name in raw}
    drifted = [name for name, score in scores.items() if score >= settings.feature_threshold]
    prediction = round(max(0.0, raw[reference.PROBABILITY] - noise[reference.PROBABILITY]), 6)
    return Comparison(scores, raw, noise, prediction, drifted, len(base), months, snapshot)


def verdict_of(comparison: Comparison, settings: Settings) -> tuple[str, float]:
    share = len(comparison.drifted) / len(comparison.scores) if comparison.scores else 0.0
    drifted = share >= settings.drift_share_threshold or comparison.prediction >= settings.prediction_threshold
    return (VERDICT_DRIFT if drifted else VERDICT_NO_DRIFT), round(share, 6)


def method_of(settings: Settings, comparison: Comparison | None) -> str:
    from importlib.metadata import version

    months = comparison.seasonal_months if comparison else []
    basis = f"reference months {','.join(map(str, months))}" if months else "whole reference"
    return (f"evidently {version('evidently')}: Jensen-Shannon (codes) / Wasserstein normed (numbers) "
            f"minus a same-size reference sample's; {basis}")[:200]  # fmt: skip


# --- MLflow -------------------------------------------------------------------------------------


def mlflow_client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def reference_of(client: Any, version: str, inputs: Inputs | None = None) -> pd.DataFrame:
    """The reference profile logged with the run of `version` of the model's registered model."""
    from mlflow.exceptions import MlflowException

    inputs = inputs or inputs_of(SEED_MODEL)
    name = inputs.registered_name
    try:
        model_version = client.get_model_version(name, version)
    except MlflowException as error:
        raise PipelineError(f"model version {version} of {name} not in the registry: {error}") from error
    try:
        return reference.download(client, model_version.run_id, inputs.features)
    except LookupError as error:
        raise PipelineError(str(error)) from error


def log_report(uri: str, client: Any, result: dict[str, Any], comparison: Comparison) -> str:
    """A run in the `monitoring` experiment with the HTML report and the scores, tagged with the
    model's registered name and version; the version is tagged back."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(MONITORING_EXPERIMENT)
    version, model = result["model_version"], result["model"]
    name = REGISTERED_NAMES[model]
    tags = {"model_name": name, "model_version": version, "model": model, "kind": "drift",
            "verdict": result["verdict"], "window_start": str(result["window_start"]),
            "window_end": str(result["window_end"])}  # fmt: skip
    run_name = f"drift v{version}" if model == SEED_MODEL else f"drift {model} v{version}"
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        mlflow.log_metrics({"drifted_share": result["drifted_share"], "prediction_drift": result["prediction_drift"],
                            "window_rows": result["window_rows"], "reference_rows": result["reference_rows"],
                            **{f"drift_{name}": score for name, score in comparison.scores.items()}})  # fmt: skip
        with tempfile.TemporaryDirectory() as folder:
            report = Path(folder) / REPORT_FILE
            comparison.snapshot.save_html(str(report))
            mlflow.log_artifact(str(report))
            scores = Path(folder) / "drift_scores.json"
            detail = {"score": comparison.scores, "distance": comparison.raw, "noise_floor": comparison.noise,
                      "drifted": comparison.drifted}  # fmt: skip
            scores.write_text(json.dumps(detail, indent=2))
            mlflow.log_artifact(str(scores))
        run_id = run.info.run_id
    client.set_model_version_tag(name, version, TAG_DRIFT_RUN, run_id)
    client.set_model_version_tag(name, version, TAG_DRIFT_VERDICT, result["verdict"])
    return run_id


# --- the job ------------------------------------------------------------------------------------


def run_job(log_url: str, settings: Settings, since: datetime | None = None, until: datetime | None = None,
            version: str | None = None, mlflow_uri: str | None = None,
            reference_file: Path | None = None, model: str = SEED_MODEL) -> dict[str, Any]:  # fmt: skip
    """Compare one window of `model`'s traffic with its version's reference and store the result;
    the stored row."""
    inputs = inputs_of(model)
    now = datetime.now(UTC)
    if since is None and until is None and settings.window_days:
        since = now - timedelta(days=settings.window_days)
    engine = create_log_engine(log_url)
    try:
        ensure_schema(engine, log_url)
        started = time.perf_counter()
        window, version = read_traffic(engine, settings, since, until, version, model)
        window = window_inputs(window, inputs)
        log.info("window: %d logged predictions of %s model version %s (%s .. %s) read in %.1f s", len(window), model,
                 version, since or "start", until or "now", time.perf_counter() - started)  # fmt: skip
        result: dict[str, Any] = {
            "computed_at": now, "window_rows": len(window), "model_version": version, "reference_rows": 0,
            "window_start": window["logged_at"].min().to_pydatetime() if len(window) else None,
            "window_end": window["logged_at"].max().to_pydatetime() if len(window) else None,
            "feature_scores": {}, "drifted_features": [], "drifted_share": None, "prediction_drift": None,
            "verdict": VERDICT_NOT_ENOUGH_DATA, "report_run_id": None, "method": method_of(settings, None),
            "model": model,
        }  # fmt: skip
        if len(window) < settings.min_window_rows:
            log.info("%d rows < monitoring.min_window_rows %d: not enough data", len(window), settings.min_window_rows)
        else:
            client = mlflow_client(mlflow_uri) if mlflow_uri else None
            if reference_file is not None:
                import pandas as pd

                profile = pd.read_parquet(reference_file)
            elif client is not None:
                profile = reference_of(client, version, inputs)
            else:
                raise PipelineError("no reference: give an MLflow tracking URI or --reference FILE")
            log.info("reference of version %s: %d rows", version, len(profile))
            comparison = compare(window, profile, settings, inputs)
            verdict, share = verdict_of(comparison, settings)
            result.update(reference_rows=comparison.reference_rows, feature_scores=comparison.scores,
                          drifted_features=comparison.drifted, drifted_share=share,
                          prediction_drift=comparison.prediction, verdict=verdict,
                          method=method_of(settings, comparison))  # fmt: skip
            top = sorted(comparison.scores.items(), key=lambda item: -item[1])[:5]
            log.info("verdict %s: drifted %s (share %.2f), prediction drift %.3f; top scores %s", verdict,
                     comparison.drifted or "none", share, comparison.prediction,
                     ", ".join(f"{name} {score:.3f}" for name, score in top))  # fmt: skip
            if client is not None:
                result["report_run_id"] = log_report(mlflow_uri, client, result, comparison)
                log.info("report logged to MLflow run %s (experiment %s)", result["report_run_id"],
                         MONITORING_EXPERIMENT)  # fmt: skip
        result["id"] = drift_results.store(engine, result)
    finally:
        engine.dispose()
    return result


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m accidents.monitoring.drift", description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-url", default=None, help="the prediction log's SQLAlchemy URL (default: as the API)")
    parser.add_argument("--from", dest="since", type=_moment, help="logged since (ISO, UTC; default: window_days ago)")
    parser.add_argument("--to", dest="until", type=_moment, help="logged before (ISO, UTC)")
    parser.add_argument("--rows", type=int, help="window size (default: monitoring.window_rows)")
    parser.add_argument("--model-version", help="the version whose traffic to compare (default: the newest's)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow (default: MLFLOW_TRACKING_URI)")
    parser.add_argument("--reference", type=Path, help="a reference Parquet file instead of the version's artifact "
                        "(no MLflow run then: benchmarks, offline checks)")  # fmt: skip
    parser.add_argument("--params", type=Path, default=None, help="params.yaml (default: the project's)")
    parser.add_argument("--model", choices=MODELS, default=SEED_MODEL, help=f"whose traffic: {SEED_MODEL} "
                        "(/predict's, default) or report_time (/v2/predict's, its 95 inputs)")  # fmt: skip
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # fail in seconds, not minutes, when MLflow is down
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    results: list[dict[str, Any]] = []

    def body() -> None:
        settings = Settings.from_params(load_params(args.params))
        if args.rows is not None:
            settings = replace(settings, window_rows=args.rows)
        mlflow_uri = None if args.reference else (args.tracking_uri or tracking_uri())
        results.append(run_job(args.log_url or default_url(), settings, args.since, args.until, args.model_version,
                               mlflow_uri, args.reference, args.model))  # fmt: skip

    status = run_stage("monitor", body)
    if results:
        print(json.dumps(results[0], default=str))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
