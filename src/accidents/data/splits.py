"""Train / validation / test splits of one-row-per-accident frames (`preprocess` params).

Both models go through them (the seed's rows in accidents.pipeline.preprocess, the report-time
rows in accidents.report_time.dataset), so they are trained, tuned and tested on the same periods.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from accidents.features import ACCIDENT_DATE, TARGET
from accidents.stage import PipelineError, log

SPLITS = ("temporal", "random")


def month_start(day: pd.Timestamp, months_back: int) -> pd.Timestamp:
    return (day.to_period("M") - months_back).to_timestamp()


def temporal_bounds(dates: pd.Series, params: dict[str, Any]) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(validation start, test start): explicit dates from params, else the newest months.

    Default: the test period is the last `test_months` calendar months of the data, validation
    the `val_months` before it; with 2020 + 2021: validation 2021-04..06, test 2021-07..12. A new
    year shifts both windows forward without an edit.
    """
    newest = pd.Timestamp(dates.max())
    test_start = pd.Timestamp(params["test_start"]) if params.get("test_start") else month_start(
        newest, int(params["test_months"]) - 1)  # fmt: skip
    val_start = pd.Timestamp(params["val_start"]) if params.get("val_start") else month_start(
        test_start, int(params["val_months"]))  # fmt: skip
    if not val_start < test_start:
        raise PipelineError(f"validation must start before the test period: {val_start.date()} >= {test_start.date()}")
    return val_start, test_start


def temporal_split(data: pd.DataFrame, params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Train on the past, tune on the period just before the test period, test on the newest."""
    dates = pd.to_datetime(data[ACCIDENT_DATE])
    val_start, test_start = temporal_bounds(dates, params)
    splits = {
        "train": data[dates < val_start],
        "val": data[(dates >= val_start) & (dates < test_start)],
        "test": data[dates >= test_start],
    }
    log.info("temporal split: train < %s <= validation < %s <= test", val_start.date(), test_start.date())
    for name, split in splits.items():
        if split.empty:
            raise PipelineError(
                f"temporal split: the {name} period is empty (data {dates.min().date()} .. {dates.max().date()}, "
                f"validation from {val_start.date()}, test from {test_start.date()})"
            )
    return splits


def random_split(data: pd.DataFrame, params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """The seed's split: a random `test_size` share is the test set."""
    train, test = train_test_split(data, test_size=params["test_size"], random_state=params["seed"])
    return {"train": train, "test": test}


def carve_validation(splits: dict[str, pd.DataFrame], params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """A stratified random validation share of train (random split and the seed's table)."""
    if "val" in splits:
        return splits
    train, val = train_test_split(
        splits["train"], test_size=params["val_size"], random_state=params["seed"], stratify=splits["train"][TARGET]
    )
    return {"train": train, "val": val, "test": splits["test"]}


def subsample(splits: dict[str, pd.DataFrame], max_rows: int, seed: int) -> dict[str, pd.DataFrame]:
    """About `max_rows` rows in all, each split keeping its share (fast smoke runs and tests)."""
    total = sum(len(split) for split in splits.values())
    return {
        name: split.sample(n=min(len(split), max(50, int(max_rows * len(split) / total))), random_state=seed)
        for name, split in splits.items()
    }


def split_accidents(data: pd.DataFrame, params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """One row per accident (with its date) -> train / val / test as `preprocess.split` says; the
    report-time model's rows go through it too (accidents.report_time.dataset), so both models
    see the same periods."""
    if params["split"] not in SPLITS:
        raise PipelineError(f"preprocess.split must be one of {SPLITS}, got {params['split']!r}")
    splits = (temporal_split if params["split"] == "temporal" else random_split)(data, params)
    return shrink_and_validate(splits, params)


def shrink_and_validate(splits: dict[str, pd.DataFrame], params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """`preprocess.max_rows` subsampling, then a validation share of train when the split has none."""
    if params.get("max_rows"):
        splits = subsample(splits, int(params["max_rows"]), params["seed"])
    return carve_validation(splits, params)
