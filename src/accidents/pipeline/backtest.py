"""Rolling-origin backtest: does retraining on fresh data pay?

For each cutoff in `backtest.cutoffs`, the configured model (params `train`) is trained on every
accident before the cutoff (its last `backtest.val_months` months as validation: early stopping
and the decision threshold), then scored on the `backtest.horizon_months` months from the
cutoff. The same test months are also scored with the model of the previous cutoff, trained
`horizon` months earlier: the difference is what retraining on the newest months bought.

    python -m accidents.pipeline.backtest            # reads data/processed/, writes reports/backtest.{json,md}

Results go to reports/backtest.json, reports/backtest.md (the README's table) and an MLflow run
(tag stage=backtest). Not a DVC stage: it fits one model per cutoff, minutes on two years, and
`dvc repro` stays within its time budget.
"""

from __future__ import annotations

import argparse
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from accidents.config import EXPERIMENT_NAME, load_params, paths
from accidents.features import ACCIDENT_DATE, ACCIDENT_ID
from accidents.model import registry
from accidents.model.modeling import best_threshold, fit_model, score, split_xy
from accidents.stage import PipelineError, log, run_stage, write_json


def all_accidents() -> pd.DataFrame:
    """train + val + test of data/processed, in date order."""
    project = paths()
    frames = [pd.read_csv(project.split(name), dtype={ACCIDENT_ID: str}) for name in ("train", "val", "test")]
    data = pd.concat(frames, ignore_index=True)
    data["_date"] = pd.to_datetime(data[ACCIDENT_DATE])
    return data.sort_values("_date", kind="stable").reset_index(drop=True)


def periods(cutoff: str, settings: dict[str, Any]) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]:
    """(validation start, cutoff, end of the scored horizon)."""
    start = pd.Timestamp(cutoff)
    val_start = (start.to_period("M") - int(settings["val_months"])).to_timestamp()
    end = (start.to_period("M") + int(settings["horizon_months"])).to_timestamp()
    return val_start, start, end


def _period(frame: pd.DataFrame) -> str:
    return f"{frame['_date'].min():%Y-%m-%d}..{frame['_date'].max():%Y-%m-%d}"


def run_backtest(data: pd.DataFrame, train_params: dict[str, Any], settings: dict[str, Any]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    previous: tuple[Any, float, str] | None = None  # (model, threshold, cutoff) of the last cutoff
    for cutoff in settings["cutoffs"]:
        val_start, start, end = periods(str(cutoff), settings)
        train = data[data["_date"] < val_start]
        val = data[(data["_date"] >= val_start) & (data["_date"] < start)]
        test = data[(data["_date"] >= start) & (data["_date"] < end)]
        if min(len(train), len(val), len(test)) == 0 or len(set(test["grav"])) < 2:
            raise PipelineError(f"backtest cutoff {cutoff}: an empty period (train {len(train)}, validation "
                                f"{len(val)}, test {len(test)} rows)")  # fmt: skip
        x_val, y_val = split_xy(val)
        x_test, y_test = split_xy(test)
        log.info("cutoff %s: training on %d rows (%s), scoring %d rows (%s)", cutoff, len(train), _period(train),
                 len(test), _period(test))  # fmt: skip
        model = fit_model(train_params, *split_xy(train), x_val, y_val)
        threshold = best_threshold(y_val, model.predict_proba(x_val)[:, 1])
        fresh = score(y_test, model.predict_proba(x_test)[:, 1], threshold)
        row: dict[str, Any] = {
            "cutoff": str(cutoff),
            "train_period": _period(train),
            "test_period": _period(test),
            "train_rows": len(train),
            "test_rows": len(test),
            "roc_auc": round(fresh["roc_auc"], 4),
            "f1": round(fresh["f1"], 4),
            "previous_cutoff": None,
            "previous_roc_auc": None,
            "previous_f1": None,
            "roc_auc_gain": None,
        }
        if previous is not None:
            old_model, old_threshold, old_cutoff = previous
            stale = score(y_test, old_model.predict_proba(x_test)[:, 1], old_threshold)
            row.update(previous_cutoff=old_cutoff, previous_roc_auc=round(stale["roc_auc"], 4),
                       previous_f1=round(stale["f1"], 4),
                       roc_auc_gain=round(fresh["roc_auc"] - stale["roc_auc"], 4))  # fmt: skip
        results.append(row)
        previous = (model, threshold, str(cutoff))
    return results


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| cutoff | trained on | scored on | rows scored | ROC AUC | F1 | previous model's ROC AUC / F1 | AUC gain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        previous = "—"
        if row["previous_cutoff"] is not None:
            previous = f"{row['previous_roc_auc']:.4f} / {row['previous_f1']:.4f}"
        gain = "—" if row["roc_auc_gain"] is None else f"{row['roc_auc_gain']:+.4f}"
        lines.append(f"| {row['cutoff']} | {row['train_period']} | {row['test_period']} | {row['test_rows']:,} | "
                     f"{row['roc_auc']:.4f} | {row['f1']:.4f} | {previous} | {gain} |")  # fmt: skip
    gains = [row["roc_auc_gain"] for row in results if row["roc_auc_gain"] is not None]
    if gains:
        lines.append("")
        lines.append(f"Mean ROC AUC gain of retraining on the newest months: {np.mean(gains):+.4f} "
                     f"({len(gains)} comparisons).")  # fmt: skip
    return "\n".join(lines) + "\n"


def log_to_mlflow(results: list[dict[str, Any]], train_params: dict[str, Any], settings: dict[str, Any]) -> str:
    registry.connect()
    mlflow.set_experiment(EXPERIMENT_NAME)
    with mlflow.start_run(run_name="backtest") as run:
        mlflow.set_tags({"stage": "backtest", "model_family": train_params["family"]})
        encoded = ",".join(train_params.get("target_encoding") or []) or "none"
        windows = {key: settings[key] for key in ("horizon_months", "val_months")}
        mlflow.log_params({"cutoffs": ",".join(map(str, settings["cutoffs"])), "target_encoding": encoded, **windows})
        for row in results:
            key = row["cutoff"]
            mlflow.log_metrics({f"backtest/{key}/roc_auc": row["roc_auc"], f"backtest/{key}/f1": row["f1"]})
            if row["roc_auc_gain"] is not None:
                mlflow.log_metric(f"backtest/{key}/roc_auc_gain", row["roc_auc_gain"])
        mlflow.log_artifact(str(paths().backtest), artifact_path="backtest")
        mlflow.log_artifact(str(paths().backtest.with_suffix(".md")), artifact_path="backtest")
        return run.info.run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-mlflow", action="store_true", help="write reports/ only")
    args = parser.parse_args(argv)
    project = paths()
    params = load_params(project.params)
    settings, train_params = params["backtest"], params["train"]
    results = run_backtest(all_accidents(), train_params, settings)
    write_json(project.backtest, {"cutoffs": results, "horizon_months": settings["horizon_months"]})
    table = markdown_table(results)
    project.backtest.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table, flush=True)
    if not args.no_mlflow:
        log.info("backtest logged to MLflow run %s", log_to_mlflow(results, train_params, settings))


if __name__ == "__main__":
    raise SystemExit(run_stage("backtest", main))
