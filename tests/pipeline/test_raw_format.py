"""Parsing the real official raw format (the 2021 sample) and its year-to-year quirks."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from accidents.data.sources import find_accident_table, find_year_tables, table_of
from accidents.pipeline.preprocess import department_code, numeric, parse_coordinate, parse_hour, read_official_table


@pytest.fixture(scope="module")
def sample(baac_dir):
    folder = baac_dir / "2021-raw-sample"
    return {name: read_official_table(folder / f"{name}-2021.csv")
            for name in ("caracteristiques", "lieux", "usagers", "vehicules")}  # fmt: skip


def test_sample_row_counts_and_quoted_headers(sample):
    assert {name: len(frame) for name, frame in sample.items()} == {
        "caracteristiques": 65, "lieux": 65, "usagers": 175, "vehicules": 114,
    }  # fmt: skip
    assert "Num_Acc" in sample["usagers"].columns and "id_vehicule" in sample["vehicules"].columns


def test_minus_one_with_leading_space_is_parsed(sample):
    raw = sample["lieux"].set_index("Num_Acc").loc["202100000001", "v1"]
    assert raw == "-1"  # was '" -1"' in the file
    assert numeric(pd.Series([" -1", "-1", "", "N/A", "3"])).tolist()[:2] == [-1, -1]


def test_no_break_space_in_vehicle_ids_is_removed_consistently(sample):
    users_ids = set(sample["usagers"]["id_vehicule"])
    assert "201764" in users_ids and not any("\u00a0" in value or " " in value for value in users_ids)
    assert users_ids <= set(sample["vehicules"]["id_vehicule"])


def test_decimal_comma_coordinates(sample):
    lat = parse_coordinate(sample["caracteristiques"]["lat"], 90)
    assert lat.iloc[0] == pytest.approx(44.038958)
    assert lat.between(-90, 90).all()


def test_hours_from_both_formats():
    hours = parse_hour(pd.Series(["07:32", "732", "0732", "2359", "12:5", "0:05", "25:00", "", "7h30"]))
    assert hours.tolist()[:6] == [7, 7, 7, 23, 12, 0]
    assert hours.iloc[6:].isna().all()


def test_pre_2019_integer_coordinates_are_scaled():
    assert parse_coordinate(pd.Series(["4886000", "48,86", "48.86"]), 90).tolist() == pytest.approx([48.86] * 3)


def test_corsica_codes():
    assert department_code(pd.Series(["2A", "2B", "2A004", "2b033", "75", "N/C"])).tolist()[:5] == [
        201, 202, 201004, 202033, 75,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "year", "table"),
    [("caracteristiques-2021.csv", 2021, "caracteristiques"), ("carcteristiques-2022.csv", 2022, "caracteristiques"),
     ("caract-2023.csv", 2023, "caracteristiques"), ("usagers-2023.csv", 2023, "usagers"),
     ("vehicules_2020.csv", 2020, "vehicules"), ("lieux-2021.csv", 2022, None), ("notes.csv", 2021, None)],
)  # fmt: skip
def test_file_name_spellings(name, year, table):
    assert table_of(name, year) == table


def test_find_tables_with_other_spellings_and_latin1(baac_dir, tmp_path):
    source = baac_dir / "2021-raw-sample"
    year_dir = tmp_path / "mirror" / "2023"
    year_dir.mkdir(parents=True)
    shutil.copy(source / "caracteristiques-2021.csv", year_dir / "caract-2023.csv")
    for table in ("lieux", "usagers", "vehicules"):
        shutil.copy(source / f"{table}-2021.csv", year_dir / f"{table}-2023.csv")
    latin1 = year_dir / "caract-2023.csv"
    latin1.write_bytes(latin1.read_text(encoding="utf-8").encode("latin-1"))
    found = find_year_tables(tmp_path / "mirror", 2023)
    assert found is not None and found["caracteristiques"].name == "caract-2023.csv"
    frame = read_official_table(found["caracteristiques"])
    assert len(frame) == 65 and any("è" in value for value in frame["adr"])  # accents decoded from Latin-1
    assert find_year_tables(tmp_path / "mirror", 2024) is None
    assert find_accident_table(baac_dir) == baac_dir / "2021-accident-table"
