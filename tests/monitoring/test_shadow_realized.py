"""Shadow evidence end to end on real components: a real uvicorn with the shadow on, a real MLflow
registry of its own (champion: the real trained model; challenger: the same model with another
decision threshold), 600 real accidents of 2021-07..12 replayed with their Num_Acc, the label job
grading both models on the same labelled shadow rows, then POST /model/promote judging by that
evidence with the promotion rule of params.yaml."""

from __future__ import annotations

import json
import os
import shutil
from datetime import date

import mlflow
import pytest
import requests
from sklearn.metrics import f1_score, roc_auc_score

from accidents.config import CHALLENGER_ALIAS, MODEL_NAME, load_params
from accidents.data.labelled import load_accidents
from accidents.features import FEATURE_NAMES, TARGET
from accidents.model.promotion import decide
from accidents.monitoring.replay import select_rows
from tests.api.conftest import login, register
from tests.monitoring.test_replay_realized import PERIOD, run_cli
from tests.support.monitoring import api_on_own_registry, wait_for
from tests.support.project import REPO, data_dir

pytestmark = pytest.mark.timeout(600)
LIMIT = 600
CHALLENGER_THRESHOLD = 0.3


def test_label_job_grades_both_on_the_same_shadow_rows_and_promotion_uses_it(api_server, champion_bundle, tmp_path):
    with api_on_own_registry(api_server, champion_bundle, tmp_path, SHADOW_ENABLED="true",
                             SHADOW_SHARE="1") as stack:  # fmt: skip
        server, uri, champion = stack.server, stack.uri, stack.version
        shutil.copy(REPO / "params.yaml", stack.project / "params.yaml")  # the rule's margin, as in a checkout
        challenger = register(uri, champion_bundle, threshold=CHALLENGER_THRESHOLD)
        mlflow.MlflowClient(uri).set_registered_model_alias(MODEL_NAME, CHALLENGER_ALIAS, challenger)
        headers = login(server.url)
        requests.post(f"{server.url}/model/reload", headers=headers, timeout=60).raise_for_status()
        assert requests.get(f"{server.url}/model", headers=headers, timeout=10).json()["challenger"]["version"] == (
            challenger
        )
        env = {**os.environ, "BAAC_DATA_DIR": str(data_dir()), "ACCIDENTS_PROJECT_DIR": str(stack.project)}
        run_cli(
            "accidents.monitoring.replay",
            "--from",
            PERIOD[0],
            "--to",
            PERIOD[1],
            "--limit",
            str(LIMIT),
            "--source",
            "official",
            "--batch-size",
            "50",
            "--concurrency",
            "2",
            "--url",
            server.url,
            "--no-progress",
            "--json",
            env=env,
        )

        def report() -> list[dict]:
            return requests.get(f"{server.url}/monitoring/shadow", headers=headers, timeout=10).json()

        wait_for(lambda: bool(report()) and report()[0]["rows"] == LIMIT, what="every replayed row shadowed")
        job = run_cli(
            "accidents.monitoring.realized",
            "--log-url",
            stack.log_url,
            "--source",
            "official",
            "--tracking-uri",
            uri,
            env=env,
        )
        graded = json.loads(job.stdout.strip().splitlines()[-1])
        assert {(g["model_version"], g["shadow_challenger"]) for g in graded} == {
            (champion, None),
            (champion, challenger),
            (challenger, challenger),
        }

        (entry,) = report()
        realized = entry["realized"]
        assert realized["challenger"]["rows_labelled"] == realized["champion"]["rows_labelled"] == LIMIT

        # the same rows scored offline: both grades are exact
        frame, _ = load_accidents(date.fromisoformat(PERIOD[0]), date.fromisoformat(PERIOD[1]), "official")
        rows = select_rows(frame, None, {}, LIMIT, seed=0)
        probabilities = champion_bundle.predict_proba(rows[list(FEATURE_NAMES)].to_numpy(dtype=float))
        truth = rows[TARGET].to_numpy()
        offline = {
            "champion": {"roc_auc": roc_auc_score(truth, probabilities),
                         "f1": f1_score(truth, probabilities >= champion_bundle.metadata.threshold)},
            "challenger": {"roc_auc": roc_auc_score(truth, probabilities),
                           "f1": f1_score(truth, probabilities >= CHALLENGER_THRESHOLD)},
        }  # fmt: skip
        for role in ("champion", "challenger"):
            for name in ("roc_auc", "f1"):
                assert abs(realized[role][name] - offline[role][name]) < 1e-9, (role, name)

        # the promotion rule of params.yaml on that evidence decides; an override is recorded as such
        margin = load_params(REPO / "params.yaml")["promotion"]["min_improvement"]
        verdict, reason = decide(offline["challenger"], offline["champion"], margin)
        answer = requests.post(f"{server.url}/model/promote", json={}, headers=headers, timeout=60)
        if verdict:
            assert answer.status_code == 200 and answer.json()["rule_applied"] and answer.json()["rule_promotes"]
        else:
            assert answer.status_code == 409 and reason in answer.json()["detail"]
            answer = requests.post(f"{server.url}/model/promote", json={"override": True}, headers=headers, timeout=60)
            assert answer.status_code == 200 and answer.json()["rule_promotes"] is False
        body = answer.json()
        assert body["rule_applied"] is True and body["evidence"]["realized"]["challenger"]["rows_labelled"] == LIMIT
        tags = mlflow.MlflowClient(uri).get_model_version(MODEL_NAME, challenger).tags
        assert tags["promotion_override"] == str(not verdict).lower() and tags["promotion_rule"] == reason
