"""Batch scoring with the champion: the DVC stage `predict` and a CLI.

    python -m accidents.pipeline.predict INPUT [-o OUTPUT] [--local]    # CLI
    python -m accidents.pipeline.predict --stage                         # DVC stage: params `predict`

INPUT is a CSV with the 28 feature columns, or JSON: one object of named features, a list
of such objects, `{"features": [...28 numbers...]}` (the seed's test_features.json) or
`{"instances": [...]}`. A `Num_Acc` column (or key) is optional: when present it is kept
beside each prediction, so predictions join with labels later. The CLI's champion comes from
the registry (MLFLOW_TRACKING_URI), or from models/champion.zip with --local or when MLflow
is unreachable; the stage always scores models/champion.zip, its declared dependency, and
writes `predict.output` (default: the test period's accidents into data/predictions/).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from accidents.config import load_params, paths, tracking_uri
from accidents.features import ACCIDENT_ID, FEATURE_NAMES, N_FEATURES, row_violations
from accidents.model import registry
from accidents.model.model_store import ModelBundle, ModelLoadError, read_bundle
from accidents.stage import PipelineError, log, run_stage

Rows = list[list[Any]]
Ids = list[str] | None  # accident ids (Num_Acc) of the rows, when the input has them


def rows_from_json(data: Any) -> tuple[Rows, Ids]:
    if isinstance(data, dict) and "instances" in data:
        data = data["instances"]
    items = data if isinstance(data, list) and data and not _is_number(data[0]) else [data]
    ids = [str(item[ACCIDENT_ID]) for item in items if isinstance(item, dict) and item.get(ACCIDENT_ID) is not None]
    rows = []
    for index, item in enumerate(items):
        if isinstance(item, dict) and "features" in item:
            item = item["features"]
        if isinstance(item, dict):
            missing = [name for name in FEATURE_NAMES if name not in item]
            if missing:
                raise PipelineError(f"row {index}: missing features {missing}")
            item = [item[name] for name in FEATURE_NAMES]
        if not isinstance(item, list) or len(item) != N_FEATURES:
            raise PipelineError(f"row {index}: expected {N_FEATURES} features in contract order")
        rows.append(item)
    return rows, (ids if len(ids) == len(rows) else None)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_rows(path: Path) -> tuple[Rows, Ids]:
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path, dtype={ACCIDENT_ID: str})
        missing = [name for name in FEATURE_NAMES if name not in frame.columns]
        if missing:
            raise PipelineError(f"{path}: missing columns {missing}")
        features = frame[list(FEATURE_NAMES)]
        ids = frame[ACCIDENT_ID].fillna("").tolist() if ACCIDENT_ID in frame.columns else None
        return features.astype(object).where(features.notna(), None).values.tolist(), ids
    try:
        return rows_from_json(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as error:
        raise PipelineError(f"{path} is neither CSV nor valid JSON: {error}") from error


def load_champion(local_only: bool) -> ModelBundle:
    uri = tracking_uri()
    if not local_only and registry.is_reachable(uri):
        bundle = registry.load_champion(registry.client(uri))
        if bundle is not None:
            return bundle
    try:
        return read_bundle(paths().champion)
    except ModelLoadError as error:
        raise PipelineError(f"no champion available (registry {uri}, local copy): {error}") from error


def score_rows(bundle: ModelBundle, rows: Rows, ids: Ids = None) -> pd.DataFrame:
    for index, row in enumerate(rows):
        problems = row_violations(row)
        if problems:
            raise PipelineError(f"row {index}: " + "; ".join(f"{name} {reason}" for name, reason in problems))
    matrix = np.array([[np.nan if value is None else value for value in row] for row in rows], dtype=float)
    probability = bundle.predict_proba(matrix)
    threshold = bundle.metadata.threshold
    result = pd.DataFrame({
        "prediction": (probability >= threshold).astype(int),
        "probability": probability.round(6),
        "threshold": threshold,
        "model_version": bundle.metadata.version,
    })  # fmt: skip
    if ids is not None:
        result.insert(0, ACCIDENT_ID, ids)
    return result


def run_stage_predict() -> Path:
    """The DVC stage: score `predict.input` with models/champion.zip into `predict.output`."""
    project = paths()
    params = load_params(project.params)["predict"]
    source, output = project.root / params["input"], project.root / params["output"]
    if not source.is_file():
        raise PipelineError(f"predict.input {params['input']}: no such file")
    bundle = load_champion(local_only=True)
    score_and_write(bundle, source, output)
    return output


def score_and_write(bundle: ModelBundle, source: Path, output: Path | None) -> None:
    rows, ids = read_rows(source)
    result = score_rows(bundle, rows, ids)
    if bundle.metadata.data_source == "synthetic":
        log.warning("the champion was trained on SYNTHETIC data: do not use these predictions")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(output or sys.stdout, index=False)
    log.info("scored %d rows with %s version %s%s", len(result), bundle.metadata.model_name,
             bundle.metadata.version, f" into {output}" if output else "")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, nargs="?")
    parser.add_argument("-o", "--output", type=Path, help="CSV output (default: stdout)")
    parser.add_argument("--local", action="store_true", help="use models/champion.zip, not the registry")
    parser.add_argument("--stage", action="store_true", help="the DVC stage: input and output from params.yaml")
    args = parser.parse_args(argv)
    if args.stage:
        run_stage_predict()
        return
    if args.input is None:
        parser.error("INPUT is required (or --stage)")
    if not args.input.is_file():
        raise PipelineError(f"{args.input}: no such file")
    score_and_write(load_champion(args.local), args.input, args.output)


if __name__ == "__main__":
    raise SystemExit(run_stage("predict", main))
