"""Real accidents of a period with their id, date, 28 features and label: what the replay sends
and what the label job grades the logged predictions against.

Two sources, the same rows either way:
- `processed`: the pipeline's splits (data/processed/{train,val,test}.csv) once they carry the
  accident id and date columns (accidents.features.ACCIDENT_ID / ACCIDENT_DATE);
- `official`: the official yearly tables (BAAC_DATA_DIR, else data/raw/tables/<year>), joined and
  cleaned by the pipeline's own preprocessing functions; rows still missing a required feature
  (the pipeline fills those with training modes) are left out, since the API would refuse them.
`auto` takes the processed splits when they have the columns, else the official tables.
BAAC_DATA_DIR comes from the environment, else from the project's `.env` (as for `make run`).
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pandas as pd
from dotenv import dotenv_values

from accidents.config import ENV_DATA_DIR, paths, project_dir
from accidents.features import ACCIDENT_DATE, ACCIDENT_ID, FEATURE_NAMES, FEATURES, TARGET
from accidents.pipeline.preprocess import clean, join_year, read_official_table
from accidents.data.sources import TABLES, find_year_tables
from accidents.stage import PipelineError, log

SOURCES = ("auto", "processed", "official")
SPLITS = ("train", "val", "test")
COLUMNS = [ACCIDENT_ID, ACCIDENT_DATE, *FEATURE_NAMES, TARGET]


def load_accidents(start: date, end: date, source: str = "auto") -> tuple[pd.DataFrame, str]:
    """Accidents dated start..end (inclusive), sorted by date then id, and a description of where
    they came from. Columns: ACCIDENT_ID (str), ACCIDENT_DATE (datetime64), the 28 features, TARGET."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}")
    if source in ("auto", "processed"):
        frame = _processed()
        if frame is not None:
            return _period(frame, start, end), f"processed splits ({paths().processed})"
        if source == "processed":
            raise PipelineError(f"the processed splits have no {ACCIDENT_ID}/{ACCIDENT_DATE} columns: run `dvc repro`")
    frames, origins = [], []
    for year in range(start.year, end.year + 1):
        folder, frame = _official_year(year)
        frames.append(frame)
        origins.append(str(folder))
    return _period(pd.concat(frames, ignore_index=True), start, end), "official tables (" + ", ".join(origins) + ")"


def _period(frame: pd.DataFrame, start: date, end: date) -> pd.DataFrame:
    days = frame[ACCIDENT_DATE].dt.date
    selected = frame[(days >= start) & (days <= end)]
    return selected.sort_values([ACCIDENT_DATE, ACCIDENT_ID], kind="stable").reset_index(drop=True)[COLUMNS]


def _processed() -> pd.DataFrame | None:
    files = [paths().split(name) for name in SPLITS]
    if not all(path.is_file() for path in files):
        return None
    header = pd.read_csv(files[0], nrows=0).columns
    if ACCIDENT_ID not in header or ACCIDENT_DATE not in header:
        return None
    frame = pd.concat([pd.read_csv(path, dtype={ACCIDENT_ID: str}) for path in files], ignore_index=True)
    # the joined accident table carries no ids (empty): such rows cannot be joined with labels
    frame = frame[frame[ACCIDENT_ID].fillna("").str.fullmatch(r"[0-9]{1,20}")]
    if frame.empty:
        return None
    frame[ACCIDENT_DATE] = pd.to_datetime(frame[ACCIDENT_DATE])
    return frame


def year_tables(year: int) -> dict[str, Path]:
    """`year`'s four official tables: in BAAC_DATA_DIR/<year> first (so a sample folder such as
    2021-raw-sample is never taken for the year), anywhere under BAAC_DATA_DIR, or the pipeline's
    data/raw/tables/<year>."""
    looked = []
    if mirror := os.environ.get(ENV_DATA_DIR) or dotenv_values(project_dir() / ".env").get(ENV_DATA_DIR):
        root = project_dir() / mirror  # a relative .env value is relative to the project
        for folder in (root / str(year), root):
            looked.append(folder)
            if folder.is_dir() and (found := find_year_tables(folder, year)) is not None:
                return found
    raw = paths().raw / "tables" / str(year)
    looked.append(raw)
    if all((raw / f"{table}.csv").is_file() for table in TABLES):
        return {table: raw / f"{table}.csv" for table in TABLES}
    raise PipelineError(f"no official {year} tables found (looked in {', '.join(map(str, looked))})")


def _official_year(year: int) -> tuple[Path, pd.DataFrame]:
    found = year_tables(year)
    tables = {table: read_official_table(found[table]) for table in TABLES}
    frame = clean(join_year(tables))
    required = [feature.name for feature in FEATURES if not feature.nullable]
    complete = frame[required].notna().all(axis=1)
    log.info("%s: %d accidents, %d left out (a required feature missing)", year, int(complete.sum()),
             int((~complete).sum()))  # fmt: skip
    frame = frame[complete].copy()
    frame[ACCIDENT_ID] = frame["Num_Acc"].astype(str)
    frame[ACCIDENT_DATE] = pd.to_datetime(
        {"year": frame["year_acc"], "month": frame["mois"], "day": frame["jour"]}, errors="coerce"
    )
    return found[TABLES[0]].parent, frame.dropna(subset=[ACCIDENT_DATE])
