"""The vectorized reading of report bodies (accidents.report_time.bodies) against the contract's:
on real 2021 accidents and on thousands of one-change variants of them, `tables_from_bodies`
either declines (None: the contract then names the problems) or gives exactly the Tables the
validated models give; it never takes a body the contract refuses."""

from __future__ import annotations

import copy
import random
from typing import Any

import numpy as np
import orjson
import pytest
from pydantic import ValidationError

from accidents.report_time.bodies import tables_from_bodies
from accidents.report_time.contract import OUTCOME_FIELDS, TABLE_FIELDS, ReportBatch
from accidents.report_time.features import Tables, tables_from_reports
from accidents.report_time.raw import accepted_reports, report_bodies


@pytest.fixture(scope="module")
def bodies(sample_tables) -> list[dict[str, Any]]:
    """The sample's accidents the contract accepts, as JSON would carry them."""
    ids = sorted(set(sample_tables["caracteristiques"]["Num_Acc"]))
    accepted, _ = accepted_reports(report_bodies(sample_tables, ids), ids)
    return orjson.loads(orjson.dumps(accepted))


def contract_tables(accidents: list[Any]) -> Tables | None:
    try:
        return tables_from_reports(ReportBatch.model_validate({"accidents": accidents}).accidents)
    except ValidationError:
        return None


def assert_same(got: Tables, want: Tables) -> None:
    assert got.accident_ids == want.accident_ids
    for part in ("accidents", "vehicles", "users"):
        columns, expected = getattr(got, part), getattr(want, part)
        assert columns.keys() == expected.keys(), part
        for name, column in columns.items():
            assert column.dtype == expected[name].dtype and column.shape == expected[name].shape, (part, name)
            # bit for bit: NaN where NaN, and 0.0 is not -0.0
            assert column.tobytes() == expected[name].tobytes(), (part, name, column, expected[name])


def test_real_accidents_give_the_contracts_tables(bodies):
    assert len(bodies) == 65
    got = tables_from_bodies(bodies)
    assert got is not None
    assert_same(got, contract_tables(bodies))


NUMBERS = [None, 0, 1, 2, 3, 5, 7, 9, 10, 11, 12, 20, 21, 80, 99, 100, -1, 2.0, 2.5, -0.0, 1e-9, True, False,
           "1", "A", "B", "a", [], {}, 10**40, 1e300, float("nan"), float("inf"), 1880, 2100, 2101, 45.5,
           90, 90.0001, -180, 999, 1000]  # fmt: skip
TEXTS = {
    "date": ["2021-02-28", "2021-02-29", "2024-02-29", "2005-01-01", "2004-12-31", "2100-12-31", "2021-9-25",
             "2021-09-25T00:00:00", "", None, 20210925],
    "hrmn": ["00:00", "23:59", "24:00", "7:32", "07:32 ", None, 732],
    "dep": ["01", "2A", "2B", "2C", "20", "96", "971", "988", "989", " 75", "75", None, 75],
    "com": ["75056", "2A004", "97411", "98818", "00000", "3031", "75056\n", None, 75056],
    "accident_id": ["1", "1" * 20, "1" * 21, "12a", "123\n", "", None, 123],
}  # fmt: skip
STRUCTURE = ["drop", "extra", "outcome", "null", "list", "text"]


def mutated(bodies: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Some accidents, one of them with one field or one object changed."""
    accidents = copy.deepcopy(rng.sample(bodies, rng.randint(1, 12)))
    accident = rng.choice(accidents)
    vehicle = rng.choice(accident["vehicles"])
    holders = {"accident": accident, "place": accident["place"], "vehicle": vehicle}
    if vehicle["users"]:
        holders["user"] = rng.choice(vehicle["users"])
    table = rng.choice(sorted(holders))
    holder = holders[table]
    change = rng.random()
    if change < 0.55:
        holder[rng.choice(TABLE_FIELDS[table]).name] = rng.choice(NUMBERS)
    elif change < 0.7 and table == "accident":
        field = rng.choice(sorted(TEXTS))
        accident[field] = rng.choice(TEXTS[field])
    elif change < 0.8:
        kind = rng.choice(STRUCTURE)
        key = rng.choice(sorted(holder))
        if kind == "drop":
            del holder[key]
        elif kind == "extra":
            holder["speed"] = 80
        elif kind == "outcome":
            holder[rng.choice(sorted(OUTCOME_FIELDS))] = 1
        else:
            holder[key] = {"null": None, "list": [], "text": "x"}[kind]
    elif change < 0.9:
        accident["vehicles"] = rng.choice([[], None, {}, [None], [[]], accident["vehicles"] * 2])
    else:
        vehicle["users"] = rng.choice([[], None, {}, [None], [{}], vehicle["users"] * 3])
    return accidents


def test_variants_are_declined_or_read_as_the_contract_reads_them(bodies):
    rng = random.Random(25)
    outcomes = {"same": 0, "declined, contract refuses": 0, "declined, contract accepts": 0}
    for _ in range(3000):
        accidents = mutated(bodies, rng)
        got, want = tables_from_bodies(accidents), contract_tables(accidents)
        if got is None:
            outcomes["declined, contract refuses" if want is None else "declined, contract accepts"] += 1
            continue
        assert want is not None, accidents  # never a body the contract refuses
        assert_same(got, want)
        outcomes["same"] += 1
    # both sides exercised: many variants stay valid (2.0 for 2, -0.0, nulls, letters...), many do not
    assert outcomes["same"] > 500 and outcomes["declined, contract refuses"] > 500, outcomes


def test_whole_floats_letters_and_missing_optionals_are_read_as_the_contract_reads_them(bodies):
    accidents = copy.deepcopy(bodies[:3])
    user = accidents[0]["vehicles"][0]["users"][0]
    user |= {"an_nais": 1983.0, "actp": "A", "secu2": -0.0}
    del accidents[1]["place"]["nbv"], accidents[1]["lat"], accidents[2]["vehicles"][0]["users"]
    accidents[2]["long"] = -0.0
    got = tables_from_bodies(accidents)
    assert got is not None
    assert_same(got, contract_tables(accidents))
    assert got.users["actp"][0] == 10 and np.isnan(got.accidents["lat"][1])
    assert str(got.users["secu2"][0]) == "0.0" and str(got.accidents["long"][2]) == "-0.0"  # as the contract reads them


def test_no_accident_no_vehicle_a_nan_and_an_unknown_field_are_declined(bodies):
    assert tables_from_bodies([]) is None  # the contract's batch holds one accident at least
    assert tables_from_bodies([{**bodies[0], "vehicles": []}]) is None
    assert tables_from_bodies([{**bodies[0], "lat": float("nan")}]) is None  # JSON has no NaN; null is not NaN
    renamed = copy.deepcopy(bodies[0])  # as many fields as the contract's, one of them unknown
    renamed["place"]["speed"] = renamed["place"].pop("vma")
    assert tables_from_bodies([renamed]) is None and contract_tables([renamed]) is None
