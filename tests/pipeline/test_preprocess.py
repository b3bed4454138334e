"""Preprocessing semantics: the seed's joins and mappings, with its bugs fixed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from accidents.data.sources import TABLES
from accidents.features import ACCIDENT_DATE, ACCIDENT_ID, FEATURE_NAMES, row_violations
from accidents.pipeline.preprocess import (
    SEVERITY_RANK,
    accident_dates,
    clean,
    fill_and_drop,
    join_year,
    read_official_table,
    temporal_split,
)
from accidents.stage import PipelineError

ACCIDENT_LEVEL = ["catr", "circ", "surf", "situ", "vma", "jour", "mois", "lum", "dep", "com", "agg_", "int", "atm",
                  "col", "lat", "long", "hour", "nb_victim", "nb_vehicules", "year_acc"]  # fmt: skip
USER_LEVEL = ["place", "catu", "sexe", "secu1", "victim_age", "catv", "obsm", "motor"]


def raw_tables(users: list[dict], vehicles: list[dict], accident: dict | None = None) -> dict[str, pd.DataFrame]:
    """Minimal official-format tables (strings, as read from the CSVs) for one accident."""
    base = {"Num_Acc": "202100000001"}
    caract = {**base, "jour": "30", "mois": "11", "an": "2021", "hrmn": "07:32", "lum": "2", "dep": "2A",
              "com": "2A004", "agg": "1", "int": "1", "atm": "2", "col": "1", "adr": "x", "lat": "41,9",
              "long": "8,7", **(accident or {})}  # fmt: skip
    place = {**base, "catr": "3", "circ": "2", "surf": "1", "situ": "1", "vma": "80"}
    user_defaults = {**base, "num_veh": "A01", "place": "1", "catu": "1", "sexe": "1", "an_nais": "1980",
                     "secu1": "1", "grav": "4"}  # fmt: skip
    vehicle_defaults = {**base, "num_veh": "A01", "catv": "7", "obsm": "2", "motor": "1"}
    return {
        "caracteristiques": pd.DataFrame([caract]),
        "lieux": pd.DataFrame([place]),
        "usagers": pd.DataFrame([{**user_defaults, **user} for user in users]),
        "vehicules": pd.DataFrame([{**vehicle_defaults, **vehicle} for vehicle in vehicles]),
    }


def test_most_severe_user_kept_and_target_mapping():
    tables = raw_tables(
        users=[{"id_vehicule": "1", "grav": "1", "an_nais": "1990"},  # unharmed
               {"id_vehicule": "1", "grav": "3", "an_nais": "1950", "place": "2", "catu": "2"},  # hospitalised
               {"id_vehicule": "2", "num_veh": "B01", "grav": "4"}],  # slightly injured
        vehicles=[{"id_vehicule": "1"}, {"id_vehicule": "2", "num_veh": "B01", "catv": "1"}],
    )  # fmt: skip
    row = clean(join_year(tables)).iloc[0]
    assert row["grav"] == 1  # hospitalised -> severe
    assert (row["place"], row["catu"], row["victim_age"]) == (2, 2, 71)
    assert (row["nb_victim"], row["nb_vehicules"]) == (3, 2)
    assert row["catv"] == 2  # official code 7 (car) grouped as 2
    assert row["atm"] == 1  # rain grouped as adverse
    assert (row["dep"], row["com"]) == (201, 201004)  # Corsica
    assert (row["lat"], row["long"], row["hour"]) == (pytest.approx(41.9), pytest.approx(8.7), 7)


@pytest.mark.parametrize(("grav", "target"), [("2", 1), ("3", 1), ("4", 0), ("1", 0)])
def test_target_is_killed_or_hospitalised(grav, target):
    tables = raw_tables(users=[{"id_vehicule": "1", "grav": grav}], vehicles=[{"id_vehicule": "1"}])
    assert clean(join_year(tables)).iloc[0]["grav"] == target


def test_unknown_injury_codes_are_not_labelled():
    tables = raw_tables(users=[{"id_vehicule": "1", "grav": "-1"}], vehicles=[{"id_vehicule": "1"}])
    assert join_year(tables).empty


def test_victim_age_outside_0_120_becomes_missing():  # the seed's filter was a no-op
    tables = raw_tables(users=[{"id_vehicule": "1", "an_nais": "1890"}], vehicles=[{"id_vehicule": "1"}])
    assert np.isnan(clean(join_year(tables)).iloc[0]["victim_age"])
    tables = raw_tables(users=[{"id_vehicule": "1", "an_nais": "2030"}], vehicles=[{"id_vehicule": "1"}])
    assert np.isnan(clean(join_year(tables)).iloc[0]["victim_age"])


def test_minus_one_and_zero_codes_become_missing_and_required_ones_drop_the_row():
    motor_zero = raw_tables(users=[{"id_vehicule": "1"}], vehicles=[{"id_vehicule": "1", "motor": "0"}])
    assert np.isnan(clean(join_year(motor_zero)).iloc[0]["motor"])
    circ_unknown = raw_tables(users=[{"id_vehicule": "1"}], vehicles=[{"id_vehicule": "1"}])
    circ_unknown["lieux"]["circ"] = " -1"
    assert np.isnan(clean(join_year(circ_unknown)).iloc[0]["circ"])
    for table, column, value in [("vehicules", "catv", "0"), ("vehicules", "obsm", "-1"), ("lieux", "vma", "-1"),
                                 ("usagers", "secu1", "-1"), ("caracteristiques", "atm", "-1")]:  # fmt: skip
        tables = raw_tables(users=[{"id_vehicule": "1"}], vehicles=[{"id_vehicule": "1"}])
        tables[table][column] = value
        assert clean(join_year(tables)).empty, (table, column)


def test_out_of_contract_values_become_missing():
    tables = raw_tables(users=[{"id_vehicule": "1", "sexe": "-1"}], vehicles=[{"id_vehicule": "1"}],
                        accident={"lum": "7"})  # fmt: skip
    row = clean(join_year(tables)).iloc[0]
    assert np.isnan(row["sexe"]) and np.isnan(row["lum"])


def test_mode_fill_uses_train_modes_and_output_satisfies_the_contract():
    train = pd.DataFrame({name: [1.0, 1.0, 1.0] for name in FEATURE_NAMES}).assign(grav=[0, 1, 0])
    train["surf"] = [2.0, 2.0, np.nan]
    test = train.copy().assign(surf=[np.nan, 1.0, 1.0])
    filled = fill_and_drop({"train": train, "test": test})
    assert filled["train"]["surf"].tolist() == [2.0, 2.0, 2.0]
    assert filled["test"]["surf"].tolist() == [2.0, 1.0, 1.0]  # train's mode, not test's


def test_real_sample_matches_the_seed_accident_table(baac_dir):
    """All 60 sample accidents surviving the filter match the reference table built by the seed."""
    folder = baac_dir / "2021-raw-sample"
    tables = {table: read_official_table(folder / f"{table}-2021.csv") for table in TABLES}
    ours = clean(join_year(tables))
    assert len(ours) == 60
    reference = pd.concat(
        [pd.read_csv(baac_dir / "2021-accident-table" / f"X_{split}.csv").assign(
            grav=pd.read_csv(baac_dir / "2021-accident-table" / f"y_{split}.csv")["grav"].to_numpy())
         for split in ("train", "test")]
    )  # fmt: skip
    keys = ["lat", "long", "com", "hour", "jour", "mois"]
    merged = ours.merge(reference, on=keys, how="inner", suffixes=("", "_seed"))
    assert len(merged) == 60
    for column in [c for c in ACCIDENT_LEVEL if c not in keys] + ["grav"]:
        seed = merged[f"{column}_seed"]
        same = (merged[column] == seed) | merged[column].isna()  # NaN: filled later from train modes
        assert same.all(), column
    # User-level features: the seed kept one of the most severely injured users (its sort was
    # unstable); ours keeps the first listed. Each seed row must be one of the tied candidates.
    users = tables["usagers"].assign(rank=pd.to_numeric(tables["usagers"]["grav"]).map(SEVERITY_RANK))
    for _, row in merged.iterrows():
        candidates = users[(users["Num_Acc"] == row["Num_Acc"]) & (users["rank"] == users.loc[
            users["Num_Acc"] == row["Num_Acc"], "rank"].max())]  # fmt: skip
        seats = set(pd.to_numeric(candidates["place"]))
        assert row["place_seed"] in seats and row["place"] in seats
    filled = fill_and_drop({"train": ours})["train"]
    assert len(filled) == 60
    for row in filled[list(FEATURE_NAMES)].itertuples(index=False):
        assert not row_violations([None if pd.isna(value) else value for value in row])


def dated_frame(first: str, last: str) -> pd.DataFrame:
    dates = pd.date_range(first, last, freq="D")
    frame = pd.DataFrame({name: 1.0 for name in FEATURE_NAMES}, index=range(len(dates)))
    ids = [f"2021{i:08d}" for i in range(len(dates))]
    return frame.assign(**{ACCIDENT_ID: ids, ACCIDENT_DATE: dates.strftime("%Y-%m-%d")}, grav=np.arange(len(dates)) % 2)


TEMPORAL = {"split": "temporal", "test_months": 6, "val_months": 3, "test_start": None, "val_start": None}


def test_temporal_split_tests_on_the_newest_months_and_validates_just_before():
    splits = temporal_split(dated_frame("2020-01-01", "2021-12-31"), TEMPORAL)
    periods = {name: (split[ACCIDENT_DATE].min(), split[ACCIDENT_DATE].max()) for name, split in splits.items()}
    assert periods == {"train": ("2020-01-01", "2021-03-31"), "val": ("2021-04-01", "2021-06-30"),
                       "test": ("2021-07-01", "2021-12-31")}  # fmt: skip
    # a new year moves both windows forward without an edit
    later = temporal_split(dated_frame("2020-01-01", "2022-12-31"), TEMPORAL)
    assert later["test"][ACCIDENT_DATE].min() == "2022-07-01" and later["val"][ACCIDENT_DATE].min() == "2022-04-01"


def test_temporal_split_with_fixed_dates_and_clear_errors():
    fixed = temporal_split(dated_frame("2020-01-01", "2021-12-31"), {**TEMPORAL, "test_start": "2021-01-01",
                                                                     "val_start": "2020-10-01"})  # fmt: skip
    assert fixed["test"][ACCIDENT_DATE].min() == "2021-01-01" and fixed["train"][ACCIDENT_DATE].max() == "2020-09-30"
    gap = pd.concat([dated_frame("2021-01-01", "2021-05-31"), dated_frame("2021-07-01", "2021-12-31")])
    assert len(temporal_split(gap, TEMPORAL)["val"]) == 61  # 2021-04..05: June is missing
    with pytest.raises(PipelineError, match="the val period is empty"):
        temporal_split(gap, {**TEMPORAL, "val_start": "2021-06-01"})
    with pytest.raises(PipelineError, match="the train period is empty"):
        temporal_split(dated_frame("2021-01-01", "2021-12-31"), {**TEMPORAL, "test_months": 10})


def test_accident_dates_are_iso_and_invalid_dates_missing():
    frame = pd.DataFrame({"year_acc": [2021.0, 2021.0, 2020.0], "mois": [2.0, 2.0, np.nan], "jour": [28.0, 30.0, 1.0]})
    assert accident_dates(frame).tolist()[0] == "2021-02-28"
    assert accident_dates(frame)[1:].isna().all()
