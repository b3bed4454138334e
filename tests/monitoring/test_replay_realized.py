"""Real traffic replay then realized performance, end to end on real components: a real uvicorn
serving the real champion from a registry of its own (real MLflow), 2,000 real accidents of
2021-07..12 from the official tables replayed by the CLI with their Num_Acc, the label job (CLI)
joining the 2021 labels: realized AUC equals the offline AUC of the same model on the same rows,
and the results reach the store, /metrics, /monitoring/performance and MLflow."""

from __future__ import annotations

import json
import os
from datetime import date

import mlflow
import numpy as np
import pytest
import requests
from sklearn.metrics import f1_score, roc_auc_score

from accidents.config import MONITORING_EXPERIMENT
from accidents.data.labelled import load_accidents
from accidents.features import FEATURE_NAMES, SEED_EXAMPLE, TARGET
from accidents.monitoring.realized import TAG_MONITORING_RUN
from accidents.monitoring.replay import select_rows
from tests.api.conftest import login
from tests.support.monitoring import api_on_own_registry, metric, run_cli, wait_for
from tests.support.project import data_dir

pytestmark = pytest.mark.timeout(600)
PERIOD = ("2021-07-01", "2021-12-31")
LIMIT = 2000


def test_replay_then_label_join_gives_the_offline_auc(api_server, champion_bundle, tmp_path):
    with api_on_own_registry(api_server, champion_bundle, tmp_path) as stack:
        server, uri, version, log_url = stack.server, stack.uri, stack.version, stack.log_url
        env = {**os.environ, "BAAC_DATA_DIR": str(data_dir()), "ACCIDENTS_PROJECT_DIR": str(stack.project)}

        replay = run_cli("accidents.monitoring.replay", "--from", PERIOD[0], "--to", PERIOD[1], "--limit", str(LIMIT),
                         "--source", "official", "--batch-size", "50", "--concurrency", "4", "--url", server.url,
                         "--no-progress", "--json", env=env)  # fmt: skip
        summary = json.loads(replay.stdout.strip().splitlines()[-1])
        assert summary["sent_rows"] == summary["accepted_rows"] == LIMIT and summary["rejected_rows"] == 0
        assert summary["model_versions"] == {version: LIMIT} and summary["p50_ms"] > 0
        # three predictions of accidents from a year with no published labels: counted as unlabelled
        headers = login(server.url)
        unknown = {"instances": [{"features": list(SEED_EXAMPLE), "accident_id": f"20990000000{i}"} for i in range(3)]}
        assert requests.post(f"{server.url}/predict", json=unknown, headers=headers, timeout=10).status_code == 200
        wait_for(lambda: metric(requests.get(f"{server.url}/metrics", timeout=10).text, "prediction_log_rows_total")
                 == LIMIT + 3, what="every replayed row logged")  # fmt: skip

        job = run_cli(
            "accidents.monitoring.realized",
            "--log-url",
            log_url,
            "--source",
            "official",
            "--tracking-uri",
            uri,
            env=env,
        )
        (overall,) = json.loads(job.stdout.strip().splitlines()[-1])
        assert overall["model_version"] == version
        assert (overall["rows_logged"], overall["rows_labelled"], overall["rows_unlabelled"]) == (LIMIT + 3, LIMIT, 3)

        # the same rows, scored offline by the same model
        frame, _ = load_accidents(date.fromisoformat(PERIOD[0]), date.fromisoformat(PERIOD[1]), "official")
        rows = select_rows(frame, None, {}, LIMIT, seed=0)
        probabilities = champion_bundle.predict_proba(rows[list(FEATURE_NAMES)].to_numpy(dtype=float))
        offline_auc = roc_auc_score(rows[TARGET], probabilities)
        offline_f1 = f1_score(rows[TARGET], probabilities >= champion_bundle.metadata.threshold)
        # Same rows, same model: equal up to float noise. The 0.01 would let a join that
        # mislabels a few rows pass, so the test asks for the exact answer.
        assert abs(overall["roc_auc"] - offline_auc) < 1e-9, (overall["roc_auc"], offline_auc)
        assert abs(overall["f1"] - offline_f1) < 1e-9 and 0.5 < offline_auc < 1

        # the API exports the stored results (read at most every 30 s: wait for the next read); admins
        # read them per month
        def exported() -> str:
            return requests.get(f"{server.url}/metrics", timeout=10).text

        wait_for(lambda: metric(exported(), "model_labelled_rows", model="seed", version=version) > 0, timeout=45,
                 what="realized gauges exported")  # fmt: skip
        exposition = exported()
        realized_auc = metric(exposition, "model_realized_auc", model="seed", version=version)
        assert realized_auc == pytest.approx(overall["roc_auc"])
        assert metric(exposition, "model_labelled_rows", model="seed", version=version) == LIMIT
        assert metric(exposition, "model_unlabelled_rows", model="seed", version=version) == 3
        results = requests.get(f"{server.url}/monitoring/performance", headers=headers, timeout=10).json()
        months = sorted(row["month"] for row in results if row["month"])
        assert months == [f"2021-{month:02d}" for month in range(7, 13)]
        assert sum(row["rows_labelled"] for row in results if row["month"]) == LIMIT
        assert all(np.isfinite(row["ece"]) and row["mlflow_run_id"] for row in results)

        # MLflow: a run in the monitoring experiment, linked to the model version
        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name(MONITORING_EXPERIMENT)
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.data.tags["model_version"] == version
        assert run.data.metrics["realized_roc_auc"] == pytest.approx(overall["roc_auc"])
        assert run.data.metrics["realized_rows_labelled"] == LIMIT
        model_version = client.get_model_version("accidents-severity", version)
        assert model_version.tags[TAG_MONITORING_RUN] == run.info.run_id
