"""Rolling-origin backtest: does retraining on fresh data pay?

For each cutoff in `backtest.cutoffs`, a model is trained on every accident before the cutoff
(its last `backtest.val_months` months as validation: early stopping and the decision
threshold), then scored on the `backtest.horizon_months` months from the cutoff. The same test
months are also scored with the model of the previous cutoff, trained `horizon` months earlier:
the difference is what retraining on the newest months bought.

Either model the pipeline trains (accidents.pipeline.lifecycle): the seed's (params `train`, rows
of data/processed/) or, with `--model report_time`, the report-time model (params `report_time`,
rows of data/processed/report_time/), each with the fit function `train` uses for it.

    python -m accidents.pipeline.backtest                       # the seed: reports/backtest.{json,md}
    python -m accidents.pipeline.backtest --model report_time   # reports/report_time/backtest.{json,md}

Results go to the JSON and Markdown files above and an MLflow run (tags stage=backtest and
model=<key>). Not a DVC stage: it fits one model per cutoff, minutes on two years, and
`dvc repro` stays within its time budget.
"""

from __future__ import annotations

import argparse
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from accidents.config import EXPERIMENT_NAME, load_params, paths
from accidents.features import ACCIDENT_DATE, TARGET
from accidents.model import registry
from accidents.model.modeling import best_threshold, score
from accidents.pipeline.lifecycle import ModelLine, report_time_line, seed_line
from accidents.stage import MODELS, REPORT_TIME, SEED, PipelineError, log, run_stage, write_json


def all_accidents(line: ModelLine) -> pd.DataFrame:
    """The model's train + val + test splits (data/processed or its own folder), in date order."""
    missing = [str(line.split(name)) for name in ("train", "val", "test") if not line.split(name).exists()]
    if missing:
        raise PipelineError(f"no processed rows for the {line.key} model ({', '.join(missing)}): run `dvc repro "
                            f"preprocess` with it in params.yaml pipeline.models")  # fmt: skip
    data = pd.concat([line.read_split(name) for name in ("train", "val", "test")], ignore_index=True)
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


def run_backtest(line: ModelLine, data: pd.DataFrame, train_params: dict[str, Any], settings: dict[str, Any]
                 ) -> list[dict[str, Any]]:  # fmt: skip
    results: list[dict[str, Any]] = []
    previous: tuple[Any, float, str] | None = None  # (model, threshold, cutoff) of the last cutoff
    for cutoff in settings["cutoffs"]:
        val_start, start, end = periods(str(cutoff), settings)
        train = data[data["_date"] < val_start]
        val = data[(data["_date"] >= val_start) & (data["_date"] < start)]
        test = data[(data["_date"] >= start) & (data["_date"] < end)]
        if min(len(train), len(val), len(test)) == 0 or len(set(test[TARGET])) < 2:
            raise PipelineError(f"backtest cutoff {cutoff}: an empty period (train {len(train)}, validation "
                                f"{len(val)}, test {len(test)} rows)")  # fmt: skip
        x_val, y_val = line.xy(val)
        x_test, y_test = line.xy(test)
        log.info("cutoff %s: training on %d rows (%s), scoring %d rows (%s)", cutoff, len(train), _period(train),
                 len(test), _period(test))  # fmt: skip
        model = line.fit(train_params, *line.xy(train), x_val, y_val)
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


def log_to_mlflow(line: ModelLine, results: list[dict[str, Any]], train_params: dict[str, Any],
                  settings: dict[str, Any]) -> str:  # fmt: skip
    registry.connect()
    mlflow.set_experiment(EXPERIMENT_NAME)
    with mlflow.start_run(run_name="backtest" if line.key != REPORT_TIME else "backtest report_time") as run:
        family = train_params.get("family", "hist_gradient_boosting")  # the report-time model has one family
        mlflow.set_tags({"stage": "backtest", "model": line.key, "model_family": family})
        encoded = ",".join(train_params.get("target_encoding") or []) or "none"
        windows = {key: settings[key] for key in ("horizon_months", "val_months")}
        mlflow.log_params({"cutoffs": ",".join(map(str, settings["cutoffs"])), "target_encoding": encoded, **windows})
        for row in results:
            key = row["cutoff"]
            mlflow.log_metrics({f"backtest/{key}/roc_auc": row["roc_auc"], f"backtest/{key}/f1": row["f1"]})
            if row["roc_auc_gain"] is not None:
                mlflow.log_metric(f"backtest/{key}/roc_auc_gain", row["roc_auc_gain"])
        mlflow.log_artifact(str(line.backtest), artifact_path="backtest")
        mlflow.log_artifact(str(line.backtest.with_suffix(".md")), artifact_path="backtest")
        return run.info.run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-mlflow", action="store_true", help="write reports/ only")
    parser.add_argument("--model", choices=MODELS, default=SEED,
                        help="which model to backtest (default: the seed's)")  # fmt: skip
    args = parser.parse_args(argv)
    project = paths()
    params = load_params(project.params)
    line = report_time_line(project) if args.model == REPORT_TIME else seed_line(project)
    settings, train_params = params["backtest"], params[line.params_section]
    results = run_backtest(line, all_accidents(line), train_params, settings)
    write_json(line.backtest, {"model": line.key, "cutoffs": results, "horizon_months": settings["horizon_months"]})
    table = markdown_table(results)
    line.backtest.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table, flush=True)
    if not args.no_mlflow:
        log.info("backtest logged to MLflow run %s", log_to_mlflow(line, results, train_params, settings))


if __name__ == "__main__":
    raise SystemExit(run_stage("backtest", main))
