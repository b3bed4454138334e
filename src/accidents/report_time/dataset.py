"""The report-time model's data: official tables -> one row per accident -> the pipeline's splits.

One code path: a row is `features.accident_features` of the accident's `Tables`, the function a
request's reports go through too (`features.tables_from_reports`); `preprocess` writes these rows
(data/processed/report_time/) and the experiment (accidents.report_time.experiment) fits on
the same ones. The splits are `preprocess`'s own (accidents.data.splits.split_accidents: same periods, same
`max_rows` subsampling), so both models are trained, tuned and tested on the same months.
Measured for 2020 + 2021 (104,262 accidents): about 30 s to read and build, once per run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from accidents.data.official import raw_years
from accidents.data.sources import LAYOUT_TABLES
from accidents.data.splits import split_accidents
from accidents.features import ACCIDENT_DATE, ACCIDENT_ID, TARGET
from accidents.report_time.features import REPORT_FEATURES, accident_features
from accidents.report_time.raw import outcomes, tables_from_official
from accidents.stage import log, read_json

# Columns of data/processed/report_time/{train,val,test}.parquet: id and date (never inputs), features, target.
SPLIT_COLUMNS = (ACCIDENT_ID, ACCIDENT_DATE, *REPORT_FEATURES, TARGET)


def accident_frame(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One year's four official tables -> id, date, the report-time features and the target per
    accident (accidents without a known injury code, or without a date, are left out)."""
    tables = tables_from_official(frames)
    frame = pd.DataFrame(accident_features(tables), columns=list(REPORT_FEATURES))
    frame.insert(0, ACCIDENT_ID, tables.accident_ids)
    days = pd.to_datetime(
        pd.DataFrame({"year": tables.accidents["year"], "month": tables.accidents["month"],
                      "day": tables.accidents["day"]}), errors="coerce")  # fmt: skip
    frame.insert(1, ACCIDENT_DATE, days.dt.strftime("%Y-%m-%d"))
    frame[TARGET] = outcomes(frames, tables.accident_ids)
    return frame.dropna(subset=[ACCIDENT_DATE, TARGET]).astype({TARGET: int})


def has_tables(raw: Path) -> bool:
    """Whether data/raw holds the four official tables (the seed's joined table and the synthetic
    demo data have no users or vehicles to aggregate)."""
    return read_json(raw / "manifest.json")["layout"] == LAYOUT_TABLES


def make_splits(raw: Path, params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """The report-time rows of every imported year, split as `preprocess` splits (its params)."""
    frames = []
    for year, tables in raw_years(raw):
        frames.append(accident_frame(tables))
        log.info("report-time %s: %d accidents", year, len(frames[-1]))
    return split_accidents(pd.concat(frames, ignore_index=True), params)
