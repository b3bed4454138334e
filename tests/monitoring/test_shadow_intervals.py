"""Issue #24 item 4 for POST /model/promote: the decision carries the paired bootstrap 95 % intervals
of the AUC and F1 differences (challenger minus champion) on the labelled shadow rows, and
`promotion.rule: interval` judges by them. Real components: uvicorn with the shadow on, a real
MLflow registry of its own, real accidents of 2021-07..12 replayed with their Num_Acc, the real label
job (which holds the labels, computes the intervals and tags them on the challenger's version).

The models: the trained champion and the same model with another decision threshold, so their AUC
difference is exactly zero and their F1 difference is known offline on the same rows."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
import yaml

from accidents.config import CHALLENGER_ALIAS, MODEL_NAME
from accidents.data.labelled import load_accidents
from accidents.features import ACCIDENT_ID, FEATURE_NAMES, TARGET
from accidents.model.bootstrap import MIN_PER_CLASS, MIN_ROWS, paired_intervals, too_few
from accidents.model.promotion import COMPARED, TAG_SHADOW_INTERVALS, interval_text
from accidents.monitoring.replay import select_rows
from tests.api.conftest import login, register
from tests.monitoring.test_replay_realized import PERIOD, run_cli
from tests.support.monitoring import api_on_own_registry, wait_for
from tests.support.project import REPO, data_dir

pytestmark = pytest.mark.timeout(900)
FEW, LIMIT = 50, 600  # under and over MIN_ROWS labelled rows
ROUNDS = 400
BAD_THRESHOLD = 0.95  # far above the trained threshold: a much lower F1 on the same probabilities


def use_interval_rule(project: Path) -> None:
    """The checkout's params.yaml with `promotion.rule: interval` (and fewer rounds: a faster test)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["promotion"].update(rule="interval", bootstrap_rounds=ROUNDS)
    (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")


def offline_intervals(bundle, limit: int, challenger_threshold: float, champion_threshold: float) -> dict:
    """paired_intervals on the replayed rows scored offline, in accident id order (as the label job)."""
    frame, _ = load_accidents(date.fromisoformat(PERIOD[0]), date.fromisoformat(PERIOD[1]), "official")
    rows = select_rows(frame, None, {}, limit, seed=0)
    rows = rows.assign(**{ACCIDENT_ID: rows[ACCIDENT_ID].astype(str)}).sort_values(ACCIDENT_ID, kind="stable")
    probability = bundle.predict_proba(rows[list(FEATURE_NAMES)].to_numpy(dtype=float))
    return paired_intervals(rows[TARGET].to_numpy(dtype=float), (probability, challenger_threshold),
                            (probability, champion_threshold), ROUNDS)  # fmt: skip


def assert_same_intervals(answered: dict, expected: dict) -> None:
    assert answered["rounds"] == expected["rounds"] and answered["level"] == expected["level"]
    for metric in COMPARED:
        for bound in ("difference", "low", "high"):
            assert answered[metric][bound] == pytest.approx(expected[metric][bound], abs=1e-12), (metric, bound)


class Stack:
    def __init__(self, stack, bundle, env: dict[str, str]):
        self.stack, self.bundle, self.env = stack, bundle, env
        self.url, self.uri = stack.server.url, stack.uri
        self.headers = login(self.url)

    def shadow(self, threshold: float) -> str:
        """Register the bundle with `threshold` as the challenger; the API loads it now."""
        version = register(self.uri, self.bundle, threshold=threshold)
        mlflow.MlflowClient(self.uri).set_registered_model_alias(MODEL_NAME, CHALLENGER_ALIAS, version)
        requests.post(f"{self.url}/model/reload", headers=self.headers, timeout=60).raise_for_status()
        info = requests.get(f"{self.url}/model", headers=self.headers, timeout=10).json()
        assert info["challenger"]["version"] == version
        return version

    def shadow_rows(self, challenger: str) -> int:
        report = requests.get(f"{self.url}/monitoring/shadow", params={"challenger_version": challenger},
                              headers=self.headers, timeout=10).json()  # fmt: skip
        return sum(entry["rows"] for entry in report)

    def replay_and_grade(self, limit: int, challenger: str) -> dict:
        """Replay `limit` accidents, wait until shadowed, run the label job; the pair's realized grades."""
        before = self.shadow_rows(challenger)
        run_cli("accidents.monitoring.replay", "--from", PERIOD[0], "--to", PERIOD[1], "--limit", str(limit),
                "--source", "official", "--batch-size", "50", "--concurrency", "2", "--url", self.url,
                "--no-progress", "--json", env=self.env)  # fmt: skip
        wait_for(lambda: self.shadow_rows(challenger) == before + limit, what="every replayed row shadowed")
        run_cli("accidents.monitoring.realized", "--log-url", self.stack.log_url, "--source", "official",
                "--tracking-uri", self.uri, env=self.env)  # fmt: skip
        (entry,) = requests.get(f"{self.url}/monitoring/shadow", params={"challenger_version": challenger},
                                headers=self.headers, timeout=10).json()  # fmt: skip
        return entry["realized"]

    def promote(self, **body: object) -> requests.Response:
        return requests.post(f"{self.url}/model/promote", json=body, headers=self.headers, timeout=60)

    def version_tags(self, version: str) -> dict[str, str]:
        return mlflow.MlflowClient(self.uri).get_model_version(MODEL_NAME, version).tags


def test_promotion_reports_the_shadow_intervals_and_the_interval_rule_judges_by_them(api_server, champion_bundle,
                                                                                     tmp_path):  # fmt: skip
    trained = champion_bundle.metadata.threshold
    with api_on_own_registry(api_server, champion_bundle, tmp_path, SHADOW_ENABLED="true",
                             SHADOW_SHARE="1") as served:  # fmt: skip
        use_interval_rule(served.project)
        env = {**os.environ, "BAAC_DATA_DIR": str(data_dir()), "ACCIDENTS_PROJECT_DIR": str(served.project)}
        stack = Stack(served, champion_bundle, env)
        worse = stack.shadow(BAD_THRESHOLD)

        # 1. too few labelled rows: the interval is unavailable and the interval rule cannot judge
        realized = stack.replay_and_grade(FEW, worse)
        assert realized["challenger"]["rows_labelled"] == FEW < MIN_ROWS
        refused = stack.promote()
        assert refused.status_code == 409, refused.text
        assert "promotion.rule interval cannot judge: the interval is unavailable" in refused.json()["detail"]
        assert f"{FEW} labelled rows" in refused.json()["detail"]

        # 2. enough rows, a worse challenger: intervals equal to the bootstrap's on the same rows,
        # F1's below zero: refused; an override promotes it and the audit tags carry the intervals
        realized = stack.replay_and_grade(LIMIT, worse)  # the first FEW accidents are among these (same seed)
        assert realized["challenger"]["rows_labelled"] == LIMIT
        expected = offline_intervals(champion_bundle, LIMIT, BAD_THRESHOLD, trained)
        assert expected["f1"]["high"] < 0 and expected["roc_auc"] == {"difference": 0, "low": 0, "high": 0}
        refused = stack.promote()
        assert refused.status_code == 409, refused.text
        assert interval_text("f1", expected["f1"]) in refused.json()["detail"]
        answer = stack.promote(override=True, reason="test: promote the worse model")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["rule"] == "interval" and body["rule_applied"] is True and body["rule_promotes"] is False
        assert body["intervals"]["rows"] == LIMIT and body["intervals"]["unavailable"] is None
        assert_same_intervals(body["intervals"], expected)
        tags = stack.version_tags(worse)
        assert json.loads(tags["promotion_intervals"]) == json.loads(tags[f"{TAG_SHADOW_INTERVALS}{served.version}"])
        assert_same_intervals(json.loads(tags["promotion_intervals"]), expected)
        assert tags["promotion_rule_name"] == "interval" and tags["promotion_override"] == "true"

        # 3. the trained threshold against that worse champion: F1's interval above zero, AUC's not
        # below: the interval rule promotes without an override
        better = stack.shadow(trained)
        realized = stack.replay_and_grade(LIMIT, better)
        assert realized["challenger"]["rows_labelled"] == LIMIT
        expected = offline_intervals(champion_bundle, LIMIT, trained, BAD_THRESHOLD)
        assert expected["f1"]["low"] > 0
        # intervals recorded by another label job than the one whose grades judge are not used
        key = f"{TAG_SHADOW_INTERVALS}{worse}"
        recorded = stack.version_tags(better)[key]
        client = mlflow.MlflowClient(stack.uri)
        client.set_model_version_tag(MODEL_NAME, better, key, json.dumps({**json.loads(recorded), "job_id": "0" * 32}))
        refused = stack.promote()
        assert refused.status_code == 409 and f"intervals are of label job {'0' * 32}" in refused.json()["detail"]
        client.set_model_version_tag(MODEL_NAME, better, key, recorded)
        answer = stack.promote()
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["rule_applied"] is True and body["rule_promotes"] is True and body["override"] is False
        assert_same_intervals(body["intervals"], expected)
        assert_same_intervals(json.loads(stack.version_tags(better)["promotion_intervals"]), expected)


def test_logged_classes_give_the_threshold_s_intervals_and_too_few_rows_are_named():
    """The label job passes each model's logged classes (the champion's threshold is not in the log):
    the same intervals as the threshold that made them. Under MIN_ROWS rows, or MIN_PER_CLASS of a
    class, `too_few` says why; one class only is refused, never looped on."""
    rng = np.random.default_rng(3)
    truth = (rng.random(MIN_ROWS) < 0.3).astype(float)
    challenger, champion = np.clip(truth * 0.5 + rng.random(MIN_ROWS) * 0.5, 0, 1), rng.random(MIN_ROWS)
    by_threshold = paired_intervals(truth, (challenger, 0.4), (champion, 0.6), rounds=50)
    assert paired_intervals(truth, (challenger, challenger >= 0.4), (champion, champion >= 0.6), 50) == by_threshold
    assert too_few(truth) is None
    assert too_few(truth[:-1]) == f"{MIN_ROWS - 1} labelled rows ({int(truth[:-1].sum())} positive): " + (
        f"an interval needs at least {MIN_ROWS}, with {MIN_PER_CLASS} of each class"
    )
    assert too_few(np.r_[np.ones(MIN_PER_CLASS - 1), np.zeros(MIN_ROWS)]) is not None
    with pytest.raises(ValueError, match="both classes"):
        paired_intervals(np.zeros(MIN_ROWS), (challenger, 0.5), (champion, 0.5), rounds=10)
