"""The report-time model's quality on the project's temporal split: `accidents report-time-experiment`.

Builds the report-time features (accidents.report_time.features) of every accident of
`report_time.years` from the official tables, splits them as the pipeline does (train before the
validation period, validation = the 3 months before the test period, test = the newest 6
months: with 2020 + 2021, train <= 2021-03, validation 2021-Q2, test 2021-07..12), fits the
configured HistGradientBoosting (params.yaml `report_time:`), picks the threshold that maximises
F1 on validation, and prints ROC AUC / F1 on the test period and the model's size (skops bytes).
Writes reports/report_time.json. Nothing of the test period reaches training: the target
encodings are fitted out-of-fold on the training rows, early stopping and the threshold use the
validation period only. The assembled frame is cached in `report_time.cache_dir` (never the repo).
Measured on the shared 2-core machine (load 10-12): 2020 + 2021 give 104,262 accidents (test
2021-07..12: 30,765), ROC AUC 0.8631 / F1 0.7254 on the test period, a 4.35 MB model, 40-48 s
per fit with OMP_NUM_THREADS=1 (a fit with OpenMP's two threads under that load: 496 s), about
30 s to build the features of both years once. docs/report-time-model.md records the variants tried.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from accidents.config import load_params, paths
from accidents.data.labelled import year_tables
from accidents.data.splits import temporal_split
from accidents.features import ACCIDENT_DATE, ACCIDENT_ID, FEATURES, TARGET
from accidents.model.model_store import dumps_model
from accidents.model.modeling import best_threshold, score
from accidents.pipeline.preprocess import MODE_FILLED, clean, join_year
from accidents.report_time.dataset import accident_frame
from accidents.report_time.features import REPORT_FEATURES
from accidents.report_time.model import fit
from accidents.report_time.raw import read_year
from accidents.stage import PipelineError, log, run_stage, write_json

# Whether the seed contract's pipeline keeps the accident: its model's test rows are those of the
# test period (29,738 of 30,765 in 2021-07..12), so both models can be compared on the same rows.
IN_SEED_SPLITS = "in_seed_splits"


def year_frame(year: int) -> pd.DataFrame:
    """One year's accidents (dataset.accident_frame) and whether the seed's pipeline keeps each."""
    frames = read_year(year_tables(year))
    frame = accident_frame(frames)
    frame[IN_SEED_SPLITS] = frame[ACCIDENT_ID].isin(seed_accidents(frames))
    return frame


def code_version() -> str:
    """A digest of the code that builds the features: a change to it rebuilds the cache."""
    digest = hashlib.sha256()
    for module in ("contract.py", "features.py", "raw.py", "dataset.py", "model.py", "experiment.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    return digest.hexdigest()[:12]


def seed_accidents(frames: dict[str, pd.DataFrame]) -> set[str]:
    """The accidents the seed contract's pipeline keeps (preprocess: joined, cleaned, a row
    without a required feature dropped; the mode-filled ones kept): the seed model's test rows."""
    seed = clean(join_year(frames))
    required = [feature.name for feature in FEATURES if not feature.nullable and feature.name not in MODE_FILLED]
    return set(seed.loc[seed[required].notna().all(axis=1), ACCIDENT_ID])


def load_frame(years: list[int], cache_dir: Path) -> pd.DataFrame:
    """The accidents of `years`, from the cache when this exact feature list was built before."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    frames = []
    for year in years:
        cached = cache_dir / f"features-{year}-{code_version()}.parquet"
        if not cached.is_file():
            year_frame(year).to_parquet(cached, index=False)
        frames.append(pd.read_parquet(cached))
    return pd.concat(frames, ignore_index=True)


def evaluate(params: dict[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
    splits = temporal_split(frame, params)
    started = time.perf_counter()
    inputs = {name: (split[list(REPORT_FEATURES)].to_numpy(float), split[TARGET].to_numpy(int))
              for name, split in splits.items() if name != "test"}  # fmt: skip
    model = fit(params, *inputs["train"], *inputs["val"])
    fit_seconds = time.perf_counter() - started

    def probability(split: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(split[list(REPORT_FEATURES)].to_numpy(float))[:, 1]

    threshold = best_threshold(splits["val"][TARGET].to_numpy(int), probability(splits["val"]))
    result: dict[str, Any] = {
        name: {"rows": len(split), "first_date": str(split[ACCIDENT_DATE].min()),
               "last_date": str(split[ACCIDENT_DATE].max()),
               **{key: round(value, 4) for key, value in
                  score(split[TARGET].to_numpy(int), probability(split), threshold).items()}}
        for name, split in splits.items()
    }  # fmt: skip
    seed_test = splits["test"][splits["test"][IN_SEED_SPLITS]]
    result["test_seed_rows"] = {
        "rows": len(seed_test),
        **{
            key: round(value, 4)
            for key, value in score(seed_test[TARGET].to_numpy(int), probability(seed_test), threshold).items()
        },
    }
    result["model_size_mb"] = round(len(dumps_model(model)) / 1e6, 3)
    result["iterations"] = int(model.named_steps["model"].n_iter_)
    result["fit_seconds"] = round(fit_seconds, 1)
    return result


def override_param(params: dict[str, Any], override: str) -> None:
    """Apply one KEY=VALUE (dotted KEY, YAML VALUE) to `params`; unknown keys are refused."""
    key, _, value = override.partition("=")
    *parents, leaf = key.split(".")
    target = params
    for part in parents:
        target = target.get(part) if isinstance(target, dict) else None
    if not isinstance(target, dict) or leaf not in target:
        raise PipelineError(f"--set {override!r}: report_time has no parameter {key!r}")
    target[leaf] = yaml.safe_load(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", type=Path, default=paths().reports / "report_time.json")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a report_time parameter for this run (e.g. categorical=false, "
                             "hist_gradient_boosting.learning_rate=0.1); VALUE is YAML")  # fmt: skip
    args = parser.parse_args(argv)
    project = paths()
    params = load_params(project.params)
    for override in args.set:
        override_param(params["report_time"], override)
    settings = {**params["preprocess"], **params["report_time"]}
    frame = load_frame(list(settings["years"]), Path(settings["cache_dir"]))
    log.info("%d accidents, %d features", len(frame), len(REPORT_FEATURES))
    result = evaluate(settings, frame)
    test = result["test"]
    if test["rows"] == 0:
        raise PipelineError("the test period is empty")
    print(
        f"test {test['first_date']}..{test['last_date']} ({test['rows']} accidents): ROC AUC {test['roc_auc']:.4f}, "
        f"F1 {test['f1']:.4f} at threshold {test['threshold']:.3f}; "
        f"validation ROC AUC {result['val']['roc_auc']:.4f}; model {result['model_size_mb']:.2f} MB, "
        f"{result['iterations']} iterations, {result['fit_seconds']} s; on the seed model's "
        f"{result['test_seed_rows']['rows']} test accidents: ROC AUC {result['test_seed_rows']['roc_auc']:.4f}, "
        f"F1 {result['test_seed_rows']['f1']:.4f}"
    )
    write_json(args.report, {"features": len(REPORT_FEATURES), "params": params["report_time"], **result})


if __name__ == "__main__":
    raise SystemExit(run_stage("report-time-experiment", main))
