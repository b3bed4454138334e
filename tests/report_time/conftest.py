"""Real 2021 accidents (the first 65 of the official tables, BAAC_DATA_DIR/2021-raw-sample) as
the official tables and as report requests built from the same rows."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from accidents.data.sources import TABLES
from accidents.pipeline.preprocess import read_official_table
from accidents.report_time.raw import report_bodies


@pytest.fixture(scope="session")
def sample_tables(baac_dir) -> dict[str, pd.DataFrame]:
    folder = baac_dir / "2021-raw-sample"
    return {table: read_official_table(folder / f"{table}-2021.csv") for table in TABLES}


def report_of(tables: dict[str, pd.DataFrame], accident: str) -> dict[str, Any]:
    """The JSON body a reporter would send for accident `accident`, built from its raw rows by the
    replay's and the benchmark's builder (accidents.report_time.raw.report_bodies)."""
    return report_bodies(tables, [accident])[accident]
