"""The experiment's model shape fits the report-time features (with and without categorical
splits) and its command-line overrides reach only existing parameters. The full experiment is a
script (`accidents report-time-experiment`), not a test."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from accidents.config import load_params, paths
from accidents.report_time.experiment import override_param
from accidents.report_time.features import accident_features
from accidents.report_time.model import build_model
from accidents.report_time.raw import outcomes, tables_from_official
from accidents.stage import PipelineError


@pytest.fixture(scope="module")
def params() -> dict:
    return {**load_params(paths().params)["preprocess"], **load_params(paths().params)["report_time"]}


@pytest.mark.parametrize("categorical", [False, True])
def test_the_model_fits_the_sample_accidents(sample_tables, params, categorical):
    tables = tables_from_official(sample_tables)
    x, y = accident_features(tables), outcomes(sample_tables, tables.accident_ids)
    settings = copy.deepcopy(params) | {"categorical": categorical}
    settings["hist_gradient_boosting"] |= {"max_iter": 5, "min_samples_leaf": 5, "early_stopping": False}
    model = build_model(settings).fit(x, y.astype(int))
    probability = model.predict_proba(x)[:, 1]
    assert probability.shape == (65,) and np.all((probability > 0) & (probability < 1))


def test_overrides_reach_nested_parameters_and_refuse_unknown_ones(params):
    settings = copy.deepcopy(params)
    override_param(settings, "hist_gradient_boosting.learning_rate=0.1")
    override_param(settings, "target_encoding=[]")
    assert settings["hist_gradient_boosting"]["learning_rate"] == 0.1 and settings["target_encoding"] == []
    for wrong in ("hist_gradient_boosting.learning_rat=0.1", "nothing=1", "seed.deeper=1"):
        with pytest.raises(PipelineError, match="no parameter"):
            override_param(settings, wrong)
