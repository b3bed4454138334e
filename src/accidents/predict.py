"""Batch scoring CLI with the champion: `python -m accidents.predict INPUT [-o OUTPUT]`.

INPUT is a CSV with the 28 feature columns, or JSON: one object of named features, a list
of such objects, `{"features": [...28 numbers...]}` (the seed's test_features.json) or
`{"instances": [...]}`. The champion comes from the registry (MLFLOW_TRACKING_URI), or from
models/champion.zip with --local or when MLflow is unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from accidents import registry
from accidents.config import paths, tracking_uri
from accidents.features import FEATURE_NAMES, N_FEATURES, row_violations
from accidents.model_store import ModelBundle, ModelLoadError, read_bundle
from accidents.stage import PipelineError, log, run_stage


def rows_from_json(data: Any) -> list[list[Any]]:
    if isinstance(data, dict) and "instances" in data:
        data = data["instances"]
    items = data if isinstance(data, list) and data and not _is_number(data[0]) else [data]
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
    return rows


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_rows(path: Path) -> list[list[Any]]:
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path)
        missing = [name for name in FEATURE_NAMES if name not in frame.columns]
        if missing:
            raise PipelineError(f"{path}: missing columns {missing}")
        return frame[list(FEATURE_NAMES)].astype(object).where(frame.notna(), None).values.tolist()
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


def score_rows(bundle: ModelBundle, rows: list[list[Any]]) -> pd.DataFrame:
    for index, row in enumerate(rows):
        problems = row_violations(row)
        if problems:
            raise PipelineError(f"row {index}: " + "; ".join(f"{name} {reason}" for name, reason in problems))
    matrix = np.array([[np.nan if value is None else value for value in row] for row in rows], dtype=float)
    probability = bundle.predict_proba(matrix)
    threshold = bundle.metadata.threshold
    return pd.DataFrame({
        "prediction": (probability >= threshold).astype(int),
        "probability": probability.round(6),
        "threshold": threshold,
        "model_version": bundle.metadata.version,
    })  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path)
    parser.add_argument("-o", "--output", type=Path, help="CSV output (default: stdout)")
    parser.add_argument("--local", action="store_true", help="use models/champion.zip, not the registry")
    args = parser.parse_args(argv)
    if not args.input.is_file():
        raise PipelineError(f"{args.input}: no such file")
    bundle = load_champion(args.local)
    result = score_rows(bundle, read_rows(args.input))
    if bundle.metadata.data_source == "synthetic":
        log.warning("the champion was trained on SYNTHETIC data: do not use these predictions")
    result.to_csv(args.output or sys.stdout, index=False)
    log.info("scored %d rows with %s version %s", len(result), bundle.metadata.model_name, bundle.metadata.version)


if __name__ == "__main__":
    raise SystemExit(run_stage("predict", main))
