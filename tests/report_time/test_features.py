"""One feature code path: a report built from a real 2021 accident gives exactly the row the
official tables give, whatever the order of its vehicles and users, and no outcome reaches it."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest

from accidents.features import in_codes
from accidents.report_time.contract import TABLE_FIELDS, AccidentReport
from accidents.report_time.features import REPORT_FEATURES, _days, accident_features, in_domain, tables_from_reports
from accidents.report_time.raw import outcomes, tables_from_official
from tests.report_time.conftest import report_of


@pytest.fixture(scope="module")
def raw_rows(sample_tables) -> dict[str, np.ndarray]:
    tables = tables_from_official(sample_tables)
    return dict(zip(tables.accident_ids, accident_features(tables), strict=True))


def test_every_sample_accident_gives_the_same_row_as_a_report_and_as_raw_tables(sample_tables, raw_rows):
    reports = [AccidentReport.model_validate(report_of(sample_tables, accident)) for accident in raw_rows]
    from_reports = accident_features(tables_from_reports(reports))
    expected = np.array(list(raw_rows.values()))
    assert from_reports.shape == (65, len(REPORT_FEATURES))
    for name, got, want in zip(REPORT_FEATURES, from_reports.T, expected.T, strict=True):
        np.testing.assert_array_equal(got, want, err_msg=name)
    # the sample exercises the aggregates: pedestrians, two-wheelers, unknown (-1) codes
    column = dict(zip(REPORT_FEATURES, expected.T, strict=True))
    assert column["n_pedestrians"].sum() > 0 and column["n_two_wheelers"].sum() > 0
    assert np.isnan(expected).any()


def test_one_report_alone_gives_its_row_from_the_full_tables(sample_tables, raw_rows):
    accident = "202100000003"
    report = AccidentReport.model_validate(report_of(sample_tables, accident))
    np.testing.assert_array_equal(accident_features(tables_from_reports([report]))[0], raw_rows[accident])


def test_order_of_vehicles_and_users_does_not_change_the_row(sample_tables, raw_rows):
    several = [accident for accident in raw_rows if len(report_of(sample_tables, accident)["vehicles"]) >= 2]
    shuffle = random.Random(0)
    for accident in several:
        body = report_of(sample_tables, accident)
        for _ in range(5):
            shuffle.shuffle(body["vehicles"])
            for vehicle in body["vehicles"]:
                shuffle.shuffle(vehicle["users"])
            row = accident_features(tables_from_reports([AccidentReport.model_validate(body)]))[0]
            np.testing.assert_array_equal(row, raw_rows[accident], err_msg=accident)


def test_features_carry_no_outcome(sample_tables):
    """Changing every user's injury severity changes no feature (only the target)."""
    before = accident_features(tables_from_official(sample_tables))
    changed = {**sample_tables, "usagers": sample_tables["usagers"].assign(grav="2")}
    tables = tables_from_official(changed)
    np.testing.assert_array_equal(accident_features(tables), before)
    assert set(outcomes(changed, tables.accident_ids)) == {1.0}
    assert 0 < np.nanmean(outcomes(sample_tables, tables.accident_ids)) < 1


@pytest.mark.parametrize(
    "feature", [f for fields in TABLE_FIELDS.values() for f in fields], ids=lambda feature: feature.name
)
def test_the_vectorized_domain_check_agrees_with_the_per_value_rule(feature):
    """Both paths send every raw code through `Feature.accepts`; the contract uses `violation`."""
    low = min(feature.codes) if feature.codes is not None else feature.minimum
    high = max(feature.codes) if feature.codes is not None else feature.maximum
    values = np.array([low - 1, low, low + 0.5, (low + high) / 2, high, high + 1, -1, np.nan, np.inf, -np.inf])
    expected = [not np.isnan(value) and feature.violation(float(value)) is None for value in values]
    assert feature.accepts(values).tolist() == expected
    assert np.isnan(in_domain(feature, values)).tolist() == [not ok for ok in expected]


ODD_VALUES = [np.nan, np.inf, -np.inf, -0.0, 0.5, -0.5, -1, 1e300, -1e300, 2.0**63, 98.9999, 99, 100, 1e-300]


@pytest.mark.parametrize("codes", [range(0, 27), (1, 80), (0,), (5, 6), range(1, 100), (99,), (0, 1, 2, 4, 5, 6, 9)])
def test_the_code_lookup_is_isin(codes):
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.integers(-3, 105, 300).astype(float), rng.uniform(-5, 110, 100), ODD_VALUES])
    assert in_codes(values, codes).tolist() == np.isin(values, sorted(codes)).tolist()
    assert in_codes(np.zeros(0), codes).shape == (0,)


def test_days_are_the_dates_numpy_reads_from_their_text():
    """`_days` reads each date through numpy's calendar without text; the text route it replaced
    (each part's integer part, formatted YYYY-MM-DD) is the reference, invalid dates included."""

    def from_text(year: float, month: float, day: float) -> float:
        if not (np.isfinite(year) and np.isfinite(month) and np.isfinite(day)):
            return np.nan
        try:
            return float(np.datetime64(f"{int(year):04d}-{int(month):02d}-{int(day):02d}", "D").astype(np.int64))
        except ValueError:
            return np.nan

    rng = np.random.default_rng(1)
    n = 20_000
    year = rng.integers(1995, 2110, n).astype(float)
    year[::97], year[::101], year[::103] = rng.integers(-20, 12_000, len(year[::97])), np.nan, year[::103] + 0.7
    year[:6] = [2020, 2021, 2100, 2000, 1900, 999]
    month = rng.integers(-1, 15, n).astype(float)
    month[::89], month[::83] = np.nan, month[::83] + 0.5
    day = rng.integers(-1, 33, n).astype(float)
    day[::71], day[::73], day[::61] = np.nan, day[::73] + 0.9, -0.5
    month[:6], day[:6] = 2, 29
    expected = [from_text(*parts) for parts in zip(year, month, day, strict=True)]
    np.testing.assert_array_equal(_days(year, month, day), expected)
    assert np.isfinite(expected).sum() > n / 2


def test_the_serving_side_imports_no_pandas_nor_scikit_learn():
    """The API will turn reports into features in its own process, which keeps pandas out
    (api/serving/lean_imports.py): the contract and the features must not need it."""
    code = (
        "import sys, accidents.report_time.contract, accidents.report_time.features\n"
        "print(sorted(m for m in ('pandas', 'pyarrow', 'sklearn', 'mlflow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]"
