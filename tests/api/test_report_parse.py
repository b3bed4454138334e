"""parse_reports pauses the cyclic garbage collector while a body is parsed (api/serving/reports.py):
whatever the body (the vectorized batch path, the models' path, a refused body), the collector is
running again afterwards, and a collector the process had turned off stays off."""

from __future__ import annotations

import copy
import gc
from collections.abc import Iterator

import orjson
import pytest

from accidents.report_time.contract import REPORT_EXAMPLE
from api.serving.prediction import PayloadError
from api.serving.reports import VECTORIZED_MIN_ACCIDENTS, parse_reports

BATCH = orjson.dumps({"accidents": [REPORT_EXAMPLE] * VECTORIZED_MIN_ACCIDENTS})
ONE = orjson.dumps(REPORT_EXAMPLE)
REFUSED = orjson.dumps({"accidents": [{**copy.deepcopy(REPORT_EXAMPLE), "lum": 99}] * VECTORIZED_MIN_ACCIDENTS})


@pytest.fixture
def collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


@pytest.mark.parametrize("body", [BATCH, ONE, REFUSED, b"{not json"], ids=["batch", "one", "refused", "garbage"])
def test_the_collector_runs_again_after_any_body(collector_restored, body):
    gc.enable()
    try:
        tables = parse_reports(body, 1000)
    except PayloadError:
        tables = None
    assert gc.isenabled()
    if body in (BATCH, ONE):
        assert tables is not None and len(tables.accident_ids) == body.count(b'"accident_id"')


def test_a_collector_turned_off_stays_off(collector_restored):
    gc.disable()
    parse_reports(BATCH, 1000)
    assert not gc.isenabled()
