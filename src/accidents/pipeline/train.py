"""DVC stage `train`: fit the configured model, tune its threshold, log and register it.

Logs parameters, validation metrics, plots and the model (skops, with signature and input
example) to MLflow, registers a new version of MODEL_NAME with the tags serving needs, and
writes models/challenger.zip for `evaluate`.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

import mlflow
import pandas as pd
import skops.io
from mlflow.models import infer_signature

from accidents.config import ENV_RUN_REASON, EXPERIMENT_NAME, MODEL_NAME, load_params, paths
from accidents.features import FEATURE_NAMES, SEED_EXAMPLE
from accidents.model import calibration_set, reference, registry
from accidents.model.importance import log_importance
from accidents.model.model_store import TRUSTED_TYPES, ModelBundle, ModelMetadata, dumps_model, write_bundle
from accidents.model.modeling import best_threshold, fit_model, score, split_xy
from accidents.model.plots import write_plots
from accidents.stage import PipelineError, log, read_json, run_stage, write_json


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


def data_params() -> dict[str, Any]:
    """What the model was trained on, as the import and preprocess stages recorded it."""
    project = paths()
    manifest = read_json(project.raw_manifest)
    summary = read_json(project.processed / "summary.json")
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


def main() -> None:
    project = paths()
    params = load_params(project.params)["train"]
    train_rows = pd.read_csv(project.split("train"))
    x_train, y_train = split_xy(train_rows)
    x_val, y_val = split_xy(pd.read_csv(project.split("val")))
    source = data_source()

    log.info("fitting %s on %d rows (target encoding: %s)", params["family"], len(y_train),
             ", ".join(params.get("target_encoding") or []) or "none")  # fmt: skip
    started = time.perf_counter()
    try:
        model = fit_model(params, x_train, y_train, x_val, y_val)
    except ValueError as error:
        raise PipelineError(f"cannot fit the configured model: {error}") from error
    fit_seconds = time.perf_counter() - started
    val_probability = model.predict_proba(x_val)[:, 1]
    threshold = best_threshold(y_val, val_probability)
    val_metrics = score(y_val, val_probability, threshold)
    model_bytes = len(dumps_model(model))
    log.info("validation: ROC AUC %.4f, F1 %.4f at threshold %.3f (%.1f s, model %.2f MB)",
             val_metrics["roc_auc"], val_metrics["f1"], threshold, fit_seconds, model_bytes / 1e6)  # fmt: skip

    registry.connect()
    mlflow.set_experiment(EXPERIMENT_NAME)
    trained_at = datetime.now(UTC).isoformat(timespec="seconds")
    with mlflow.start_run(run_name=f"train-{params['family']}") as run:
        mlflow.set_tags({"stage": "train", "data_source": source, "model_family": params["family"],
                         "run_reason": run_reason()})  # fmt: skip
        mlflow.log_params({**flat_params(params), **data_params(), "train_rows": len(y_train), "val_rows": len(y_val)})
        mlflow.log_metrics({f"val_{name}": value for name, value in val_metrics.items()})
        mlflow.log_metrics({"fit_seconds": fit_seconds, "model_size_mb": model_bytes / 1e6})
        for image in write_plots(project.plots / "validation", y_val, val_probability, threshold):
            mlflow.log_artifact(str(image), artifact_path="plots/validation")
        log_importance(model, x_val, y_val, project.plots / "importance")
        example = pd.DataFrame([SEED_EXAMPLE], columns=list(FEATURE_NAMES), dtype=float)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict_proba(example.to_numpy())[:, 1]),
            input_example=example,
            registered_model_name=MODEL_NAME,
            skops_trusted_types=required_trusted_types(model),
        )
        version = str(info.registered_model_version)
        probabilities = model.predict_proba(x_train)[:, 1]  # what monitoring compares this version's traffic with
        reference.log(reference.build(train_rows, probabilities, params["reference_rows"], params["seed"]))
        calibration_set.log_calibration(val_probability, y_val)  # what monitoring estimates performance with
        client = registry.client()
        for key, value in {
            registry.TAG_THRESHOLD: threshold,
            registry.TAG_DATA_SOURCE: source,
            registry.TAG_TRAINED_AT: trained_at,
            registry.TAG_FAMILY: params["family"],
        }.items():
            client.set_model_version_tag(MODEL_NAME, version, key, str(value))
        run_id = run.info.run_id

    metadata = ModelMetadata(
        model_name=MODEL_NAME, version=version, run_id=run_id, threshold=threshold, data_source=source,
        trained_at=trained_at, model_family=params["family"],
        metrics={f"val_{name}": value for name, value in val_metrics.items()},
    )  # fmt: skip
    write_bundle(project.challenger, ModelBundle(model, metadata))
    report = {
        "version": version,
        "run_id": run_id,
        "data_source": source,
        "fit_seconds": round(fit_seconds, 2),
        "model_size_mb": round(model_bytes / 1e6, 3),
        **{f"val_{k}": round(v, 4) for k, v in val_metrics.items()},
    }
    write_json(project.train_report, report)
    log.info("registered %s version %s (run %s, data %s)", MODEL_NAME, version, run_id, source)


if __name__ == "__main__":
    raise SystemExit(run_stage("train", main))
