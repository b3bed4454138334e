"""Where the official BAAC yearly tables live and how their files are named.

Stable data.gouv.fr resource ids (dataset 53698f4ca3a729239d2036df); `<base>/<id>`
redirects to the current file. Sizes and sha1 are the published ones where known: a
producer re-upload can change them, so a mismatch is reported and the file rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE_URL = "https://www.data.gouv.fr/fr/datasets/r/"
TABLES = ("caracteristiques", "lieux", "usagers", "vehicules")


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
    """The four official tables of `year` anywhere under `folder`, or None if incomplete."""
    found: dict[str, Path] = {}
    for candidate in sorted(folder.rglob("*.csv")):
        table = table_of(candidate.name, year)
        if table and table not in found:
            found[table] = candidate
    return found if len(found) == len(TABLES) else None


def find_accident_table(folder: Path) -> Path | None:
    """A folder under `folder` (itself included) holding the already-joined accident table."""
    for candidate in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        if all((candidate / name).is_file() for name in ACCIDENT_TABLE_FILES):
            return candidate
    return None
