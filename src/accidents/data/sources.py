"""Where the official BAAC yearly tables live and how their files are named.

Stable data.gouv.fr resource ids (dataset 53698f4ca3a729239d2036df); `<base>/<id>`
redirects to the current file. Sizes and sha1 are the published ones where known: a
producer re-upload can change them, so a mismatch is reported and the file rejected.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import requests

from accidents.config import ENV_DATASET_API
from accidents.stage import PipelineError

DEFAULT_BASE_URL = "https://www.data.gouv.fr/fr/datasets/r/"
DATASET_ID = "53698f4ca3a729239d2036df"
# The data.gouv.fr dataset API lists every published resource (title, id, size, sha1): a year
# that is not in RESOURCES yet becomes visible there the day it is published.
DEFAULT_DATASET_API = f"https://www.data.gouv.fr/api/1/datasets/{DATASET_ID}/"
TABLES = ("caracteristiques", "lieux", "usagers", "vehicules")

# How data/raw/ is laid out after import_data (manifest.json "layout"), read by preprocess.
LAYOUT_TABLES = "tables"  # data/raw/tables/<year>/<table>.csv
LAYOUT_ACCIDENT_TABLE = "accident_table"  # data/raw/accident-table/{X,y}_{train,test}.csv
LAYOUT_SYNTHETIC = "synthetic"  # data/raw/synthetic/accidents.csv


@dataclass(frozen=True)
class Resource:
    resource_id: str
    size: int | None = None
    sha1: str | None = None


RESOURCES: dict[int, dict[str, Resource]] = {
    2019: {
        "caracteristiques": Resource("e22ba475-45a3-46ac-a0f7-9ca9ed1e283a", 6998722, "c1008e98ae4d6433cc79b16a5dbf95ffed116d55"),
        "lieux": Resource("2ad65965-36a1-4452-9c08-61a6c874e3e6", 5390071, "bab1d2f6a2799a24fd59bbc29b2bae4d6783a81a"),
        "usagers": Resource("36b1b7b3-84b4-4901-9163-59ae8a9e3028", 12454879, "8fba99e9246ee57454e726013ec4f1895831f6c3"),
        "vehicules": Resource("780cd335-5048-4bd6-a841-105b44eb2667", 6921630, "2841608bf5e40943578570edd53f31357d46a975"),
    },
    2020: {
        "caracteristiques": Resource("07a88205-83c1-4123-a993-cba5331e8ae0", 5655584, "aecac31214d34667a7a2c8ab179fbd25d1fe0794"),
        "lieux": Resource("e85c41f7-d4ea-4faf-877f-ab69a620ce21", 4521088, "73a8a21443641b919e8af2489e27dca714f60daa"),
        "usagers": Resource("78c45763-d170-4d51-a881-e3147802d7ee", 10054646, "2c99198f42ade793dac840cad965a563f984988c"),
        "vehicules": Resource("a66be22f-c346-49af-b196-71df24702250", 5492931, "1dff8742e6af1d06a9e288d5abedaeaa859cb6d1"),
    },
    2021: {
        "caracteristiques": Resource("85cfdc0c-23e4-4674-9bcd-79a970d7269b"),
        "lieux": Resource("8a4935aa-38cd-43af-bf10-0209d6d17434"),
        "usagers": Resource("ba5a1956-7e82-41b7-a602-89d7dd484d7a"),
        "vehicules": Resource("0bb5953a-25d8-46f8-8c25-b5c2f5ba905e"),
    },
    2022: {
        "caracteristiques": Resource("5fc299c0-4598-4c29-b74c-6a67b0cc27e7", 6884406, "494fd2adbc676a35b565583f284f32ee55baeeae"),
        "lieux": Resource("a6ef711a-1f03-44cb-921a-0ce8ec975995", 5617313, "7e2dcda426636df97fc4c28e16d9b3df0602028f"),
        "usagers": Resource("62c20524-d442-46f5-bfd8-982c59763ec8", 13013255, "df4761c5df6837b109ce80d73014a78800871b9e"),
        "vehicules": Resource("c9742921-4427-41e5-81bc-f13af8bc31a0", 6021965, "9eebc6381965ba230926e8d2681862b5ddd8c23b"),
    },
}  # fmt: skip

# The characteristics file changed spelling over the years: caracteristiques-2021.csv,
# carcteristiques-2022.csv, caract-2023.csv. Other tables keep their names.
_TABLE_PATTERNS = {
    "caracteristiques": r"(?:caracteristiques|carcteristiques|caract)",
    "lieux": r"lieux",
    "usagers": r"usagers",
    "vehicules": r"vehicules",
}
ACCIDENT_TABLE_FILES = ("X_train.csv", "X_test.csv", "y_train.csv", "y_test.csv")


def table_of(file_name: str, year: int) -> str | None:
    """Which official table `file_name` holds for `year`, whatever the year's spelling."""
    for table, pattern in _TABLE_PATTERNS.items():
        if re.fullmatch(rf"{pattern}[-_]{year}\.csv", file_name, flags=re.IGNORECASE):
            return table
    return None


def find_year_tables(folder: Path, year: int) -> dict[str, Path] | None:
    """The four official tables of `year` in the year folder `folder/<year>/`, or None if incomplete.

    Only the year folder counts: a mirror also holds samples under the same file names (the
    65-accident `2021-raw-sample/`), which must never be taken for the whole year.
    """
    year_dir = folder / str(year)
    if not year_dir.is_dir():
        return None
    found: dict[str, Path] = {}
    for candidate in sorted(year_dir.glob("*.csv")):
        table = table_of(candidate.name, year)
        if table and table not in found:
            found[table] = candidate
    return found if len(found) == len(TABLES) else None


def local_years(folder: Path) -> list[int]:
    """Years whose four official tables are complete in a year folder of the mirror `folder`."""
    if not folder.is_dir():
        return []
    candidates = (int(path.name) for path in folder.iterdir() if path.is_dir() and re.fullmatch(r"\d{4}", path.name))
    return sorted(year for year in candidates if find_year_tables(folder, year) is not None)


ACCIDENT_TABLE_FOLDER = "2021-accident-table"  # the seed's joined 2021 table, in the mirror


def find_accident_table(folder: Path) -> Path | None:
    """The seed's joined accident table: `folder/2021-accident-table/` or `folder` itself."""
    for candidate in (folder / ACCIDENT_TABLE_FOLDER, folder):
        if all((candidate / name).is_file() for name in ACCIDENT_TABLE_FILES):
            return candidate
    return None


_RESOURCE_TITLE = re.compile(r"(?P<table>[a-z]+)[-_](?P<year>\d{4})\.csv", flags=re.IGNORECASE)


def dataset_api_url() -> str:
    return os.environ.get(ENV_DATASET_API) or DEFAULT_DATASET_API


def online_resources(timeout: float = 30.0) -> dict[int, dict[str, Resource]]:
    """Complete years published on data.gouv.fr (dataset API), with each table's resource."""
    try:
        response = requests.get(dataset_api_url(), timeout=timeout)
        response.raise_for_status()
        listed = response.json().get("resources") or []
    except (requests.RequestException, ValueError) as error:
        raise PipelineError(f"data.gouv.fr dataset API {dataset_api_url()} did not answer: {error}") from error
    years: dict[int, dict[str, Resource]] = {}
    for item in listed:
        match = _RESOURCE_TITLE.fullmatch(str(item.get("title", "")).strip())
        if not match:
            continue
        year = int(match["year"])
        table = table_of(match.group(0), year)
        if table is None or table in years.get(year, {}):
            continue
        checksum = item.get("checksum") or {}
        sha1 = checksum.get("value") if checksum.get("type") == "sha1" else None
        years.setdefault(year, {})[table] = Resource(str(item["id"]), item.get("filesize") or None, sha1)
    return {year: tables for year, tables in sorted(years.items()) if len(tables) == len(TABLES)}


def online_years(timeout: float = 30.0) -> list[int]:
    return sorted(online_resources(timeout))
