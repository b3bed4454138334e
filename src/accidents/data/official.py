"""Reading the official BAAC tables: CSV quirks, codes and numbers, hours, coordinates.

Shared by the seed's preprocessing (accidents.pipeline.preprocess) and the report-time model's
(accidents.report_time.raw): both read the same files the same way. Handles `;`-separated,
quoted, UTF-8 or Latin-1 files, " -1" codes, decimal commas, "HH:MM" and "HHMM" hours,
pre-2019 integer coordinates and no-break spaces in ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from accidents.data.sources import TABLES

# Official injury codes (grav): 1 unharmed, 2 killed, 3 hospitalised, 4 slightly injured.
SEVERE_CODES = (2, 3)
# Rank used to keep one user per accident, as the seed ranked them (hospitalised, killed,
# slightly injured, unharmed): with it the joined rows match the seed's accident table.
SEVERITY_RANK = {3: 4, 2: 3, 4: 2, 1: 1}
ID_COLUMNS = ("Num_Acc", "id_vehicule", "num_veh")


def read_official_table(path: Path) -> pd.DataFrame:
    """One official CSV as strings: `;`-separated, quoted, UTF-8 or Latin-1, values trimmed."""
    for encoding in ("utf-8", "latin-1"):
        try:
            frame = pd.read_csv(path, sep=";", dtype=str, encoding=encoding, keep_default_na=False)
            break
        except UnicodeDecodeError:
            continue
    frame.columns = [column.strip().strip('"').lstrip("\ufeff") for column in frame.columns]
    for column in frame.columns:
        frame[column] = frame[column].str.replace("\u00a0", " ").str.strip()
    for column in ID_COLUMNS:
        if column in frame.columns:  # "201 764" in one table, "201764" in another year: one key
            frame[column] = frame[column].str.replace(" ", "", regex=False)
    return frame


def numeric(values: pd.Series) -> pd.Series:
    """Codes and numbers: " -1" -> -1, "" / "N/A" -> NaN, decimal commas accepted."""
    return pd.to_numeric(values.str.replace(",", ".", regex=False), errors="coerce")


def parse_hour(values: pd.Series) -> pd.Series:
    """Hour from "07:32" (2019+) or "732" / "0732" (older files); invalid -> NaN."""
    text = values.fillna("").str.strip()
    with_colon = pd.to_numeric(text.str.split(":").str[0], errors="coerce")
    digits_only = text.where(text.str.fullmatch(r"\d{1,4}"))
    without_colon = pd.to_numeric(digits_only.str.zfill(4).str[:2], errors="coerce")
    hours = with_colon.where(text.str.contains(":"), without_colon)
    return hours.where(hours.between(0, 23))


def parse_coordinate(values: pd.Series, limit: float) -> pd.Series:
    """Decimal degrees from "48,86" or "48.86"; pre-2019 integer micro-degrees are scaled."""
    coordinate = numeric(values)
    scaled = coordinate.where(coordinate.abs() <= limit, coordinate / 100000)
    return scaled.where(scaled.abs() <= limit)


def raw_years(raw: Path) -> Iterator[tuple[str, dict[str, pd.DataFrame]]]:
    """(year, its four official tables) for each year import_data wrote (tables layout)."""
    for year_dir in sorted(path for path in (raw / "tables").iterdir() if path.is_dir()):
        yield year_dir.name, {table: read_official_table(year_dir / f"{table}.csv") for table in TABLES}
