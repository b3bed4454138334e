"""DVC stage `train`: fit each selected model, tune its threshold, log and register it.

For each model of `pipeline.models` (accidents.pipeline.lifecycle: the seed contract's model,
then the report-time model), one function: logs parameters, validation metrics, plots and the
model (skops, with signature and input example) to MLflow, registers a new version of the
model's registered name (MODEL_NAME, REPORT_MODEL_NAME) with the tags serving needs and a
calibration set, and writes its challenger bundle for `evaluate` (models/challenger.zip,
models/report_time/trained/challenger.zip).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import skops.io
from mlflow.models import infer_signature

from accidents.config import ENV_RUN_REASON, EXPERIMENT_NAME, load_params, paths
from accidents.model import calibration_set, reference, registry
from accidents.model.importance import log_importance
from accidents.model.model_store import TRUSTED_TYPES, ModelBundle, ModelMetadata, dumps_model, write_bundle
from accidents.model.modeling import best_threshold, score
from accidents.model.plots import write_plots
from accidents.pipeline.lifecycle import ModelLine, report_time_line, seed_line
from accidents.stage import (
    SEED,
    PipelineError,
    log,
    read_json,
    run_report_time,
    run_stage,
    selected,
    write_json,
)

# More to log inside a model's training run: (model, training rows, x_train, x_val, y_val).
Extras = Callable[[Any, pd.DataFrame, np.ndarray, np.ndarray, np.ndarray], None]


def data_source() -> str:
    """ "synthetic" when import_data fell back to generated data, else "real"."""
    return "synthetic" if read_json(paths().raw_manifest)["source"] == "synthetic" else "real"


def flat_params(params: dict[str, Any]) -> dict[str, Any]:
    family = params["family"]
    return {
        "family": family,
        "seed": params["seed"],
        "target_encoding": ",".join(params.get("target_encoding") or []) or "none",
        "early_stopping_on": params.get("early_stopping_on", "validation"),
        **{f"{family}.{k}": v for k, v in params[family].items()},
    }


def data_params(summary_path: Path) -> dict[str, Any]:
    """What the model was trained on, as the import and preprocess stages recorded it."""
    project = paths()
    manifest = read_json(project.raw_manifest)
    summary = read_json(summary_path)
    preprocess = load_params(project.params)["preprocess"]
    return {
        "data_years": ",".join(str(year) for year in manifest.get("years", [])),
        "data_layout": manifest["layout"],
        "split": preprocess["split"] if manifest["layout"] != "accident_table" else "accident_table",
        **{f"{name}_period": f"{summary[name]['first_date']}..{summary[name]['last_date']}"
           for name in ("train", "val", "test") if name in summary},
    }  # fmt: skip


def run_reason() -> str:
    """Why this run started (the DAG passes its run conf's reason; a shell run says so)."""
    return os.environ.get(ENV_RUN_REASON) or "manual (shell)"


def required_trusted_types(model: Any) -> list[str]:
    """skops types the model needs; all must be on our allow-list or serving could not load it."""
    needed = skops.io.get_untrusted_types(data=dumps_model(model))
    unknown = sorted(set(needed) - set(TRUSTED_TYPES))
    if unknown:
        raise PipelineError(f"model needs types outside model_store.TRUSTED_TYPES: {unknown}")
    return sorted(needed)


def train(line: ModelLine, params: dict[str, Any], extras: Extras | None = None) -> dict[str, Any]:
    """Fit `line`'s model on its training rows, choose its threshold on its validation rows only,
    log the run to MLflow and register a version of `line.registered_name` with the serving tags
    and a calibration set; write its challenger bundle and train report. `params` is the model's
    params.yaml section; `extras` logs more inside the run (the drift reference; the seed's importance)."""
    train_rows = line.read_split("train")
    x_train, y_train = line.xy(train_rows)
    x_val, y_val = line.xy(line.read_split("val"))
    source, family = data_source(), params.get("family", "hist_gradient_boosting")

    log.info("%s: fitting %s on %d rows (target encoding: %s)", line.key, family, len(y_train),
             ", ".join(params.get("target_encoding") or []) or "none")  # fmt: skip
    started = time.perf_counter()
    try:
        model = line.fit(params, x_train, y_train, x_val, y_val)
    except ValueError as error:
        raise PipelineError(f"cannot fit the configured {line.key} model: {error}") from error
    fit_seconds = time.perf_counter() - started
    val_probability = model.predict_proba(x_val)[:, 1]
    threshold = best_threshold(y_val, val_probability)
    val_metrics = score(y_val, val_probability, threshold)
    model_bytes = len(dumps_model(model))
    log.info("%s validation: ROC AUC %.4f, F1 %.4f at threshold %.3f (%.1f s, model %.2f MB)", line.key,
             val_metrics["roc_auc"], val_metrics["f1"], threshold, fit_seconds, model_bytes / 1e6)  # fmt: skip

    registry.connect()
    mlflow.set_experiment(EXPERIMENT_NAME)
    trained_at = datetime.now(UTC).isoformat(timespec="seconds")
    run_name = f"train-{family}" if line.key == SEED else f"train-{line.key}"
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags({"stage": "train", "model": line.key, "data_source": source, "model_family": family,
                         "run_reason": run_reason()})  # fmt: skip
        mlflow.log_params({**flat_params({"family": family, **params}), **data_params(line.processed / "summary.json"),
                           "train_rows": len(y_train), "val_rows": len(y_val)})  # fmt: skip
        mlflow.log_metrics({f"val_{name}": value for name, value in val_metrics.items()})
        mlflow.log_metrics({"fit_seconds": fit_seconds, "model_size_mb": model_bytes / 1e6})
        for image in write_plots(line.validation_plots, y_val, val_probability, threshold):
            mlflow.log_artifact(str(image), artifact_path="plots/validation")
        example = pd.DataFrame([line.example], columns=list(line.feature_names), dtype=float)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict_proba(example.to_numpy())[:, 1]),
            input_example=example,
            registered_model_name=line.registered_name,
            skops_trusted_types=required_trusted_types(model),
        )
        version = str(info.registered_model_version)
        if extras is not None:
            extras(model, train_rows, x_train, x_val, y_val)
        calibration_set.log_calibration(val_probability, y_val)  # what monitoring estimates performance with
        client = registry.client()
        for key, value in {
            registry.TAG_THRESHOLD: threshold,
            registry.TAG_DATA_SOURCE: source,
            registry.TAG_TRAINED_AT: trained_at,
            registry.TAG_FAMILY: family,
        }.items():
            client.set_model_version_tag(line.registered_name, version, key, str(value))
        run_id = run.info.run_id

    metadata = ModelMetadata(
        model_name=line.registered_name, version=version, run_id=run_id, threshold=threshold, data_source=source,
        trained_at=trained_at, model_family=family,
        metrics={f"val_{name}": value for name, value in val_metrics.items()},
    )  # fmt: skip
    write_bundle(line.challenger, ModelBundle(model, metadata, line.example))
    report = {
        "version": version,
        "run_id": run_id,
        "data_source": source,
        "fit_seconds": round(fit_seconds, 2),
        "model_size_mb": round(model_bytes / 1e6, 3),
        **{f"val_{k}": round(v, 4) for k, v in val_metrics.items()},
    }
    write_json(line.train_report, report)
    log.info("registered %s version %s (run %s, data %s)", line.registered_name, version, run_id, source)
    return report


def log_reference(model: Any, train_rows: pd.DataFrame, x_train: np.ndarray, line: ModelLine,
                  params: dict[str, Any]) -> None:  # fmt: skip
    """The version's drift reference: what the drift job compares this version's traffic with
    (a sample of its training rows, in its own inputs, with its probabilities on them)."""
    probabilities = model.predict_proba(x_train)[:, 1]
    reference.log(reference.build(train_rows, probabilities, params["reference_rows"], params["seed"],
                                  line.feature_names))  # fmt: skip


def seed_extras(line: ModelLine, params: dict[str, Any]) -> Extras:
    """The seed model's drift reference and feature importance (its contract's 28 features)."""

    def log_extras(model: Any, train_rows: pd.DataFrame, x_train: np.ndarray, x_val: np.ndarray,
                   y_val: np.ndarray) -> None:  # fmt: skip
        log_importance(model, x_val, y_val, paths().plots / "importance")
        log_reference(model, train_rows, x_train, line, params)

    return log_extras


def report_time_extras(line: ModelLine, params: dict[str, Any]) -> Extras:
    """The report-time model's drift reference (its 95 inputs; issue #25: drift covers both models)."""

    def log_extras(model: Any, train_rows: pd.DataFrame, x_train: np.ndarray, x_val: np.ndarray,
                   y_val: np.ndarray) -> None:  # fmt: skip
        log_reference(model, train_rows, x_train, line, params)

    return log_extras


def main() -> None:
    project = paths()
    params = load_params(project.params)
    selected(params)  # a wrong pipeline.models fails before any work
    seed = seed_line(project)
    train(seed, params[seed.params_section], seed_extras(seed, params[seed.params_section]))
    line = report_time_line(project)
    section = params[line.params_section]
    run_report_time(params, line.challenger.parent, line.processed,
                    lambda: train(line, section, report_time_extras(line, section)))  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(run_stage("train", main))
