"""The monitoring dashboard, end to end in a real headless Chromium.

A real uvicorn serves the real champion from the session's real MLflow registry (whose pipeline
run carries its `run_reason` and the version's reference profile); the replay CLI sends 1,200
real accidents of 2021-07..12 through it, the drift job (CLI, .venv-monitoring) compares them with
the reference, then 1,200 night-time accidents and a second drift run; the label job (CLI) joins
their 2021 labels. Chromium then opens /dashboard, signs in through the login form, and every
panel must show what the JSON endpoints hold: both drift runs per feature and their drifted
share, the prediction histogram and volume, realized AUC/F1 per month, the pipeline runs with
their reason, "no challenger" while there is none. A screenshot is kept in
state/test-artifacts/dashboard.png (git-ignored). A second test serves a registry with a shadow
challenger and checks its panel: agreement and positive rates of the replayed traffic.

The endpoints' own contract (roles, validation, the page's security headers) runs in-process.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess

import mlflow
import pytest
import requests

from accidents.config import CHALLENGER_ALIAS, MODEL_NAME
from tests.api.conftest import create_user, login, project_with_champion, register
from tests.support.chromium import headless_page
from tests.support.monitoring import api_on_own_registry, metric, run_cli, wait_for
from tests.support.project import REPO, data_dir

pytestmark = pytest.mark.timeout(600)
ARTIFACTS = REPO / "state" / "test-artifacts"
PERIOD = ("2021-07-01", "2021-12-31")
LIMIT = 1200  # rows per replay (the drift job's min_window_rows is 1,000)
MONITOR = REPO / ".venv-monitoring" / "bin" / "python"
WIDTHS = (1000, 1400, 1920)  # the usual desktop widths the axes must fit
CHARTS = ("drift-share", "prediction-distribution", "realized", "volume")  # the panels with a y axis
SHARE_CHARTS = ("prediction-distribution",)  # share of a version's rows per bin: at most 100 %
PANELS = ("drift-features", "drift-share", "prediction-distribution", "realized", "volume", "retrains", "shadow")


def test_the_page_and_its_endpoints_are_admin_only_and_validated(client):
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"] and 'id="login-form"' in page.text
    assert client.get("/dashboard/dashboard.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/dashboard/secrets.env").status_code == 404
    admin = login(client)
    user = create_user(client, admin, "viewer")
    for path in ("/monitoring/prediction-stats", "/monitoring/retrains"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=user).status_code == 403
    assert client.get("/monitoring/prediction-stats?bins=1", headers=admin).status_code == 422
    assert client.get("/monitoring/prediction-stats?bucket=week", headers=admin).status_code == 422
    assert client.get("/monitoring/prediction-stats?since=170", headers=admin).status_code == 422
    # a valid ISO 8601 moment that leaves datetime's range once in UTC: the first or last moment it
    # holds, never an OverflowError (found by the fuzzer, first as a 500, then as a refused valid value)
    for path in ("/monitoring/prediction-stats", "/monitoring/predictions"):
        for query in ("until=0001-01-01T00:00:00%2B01:00", "since=9999-12-31T23:59:59-23:59"):
            answer = client.get(f"{path}?{query}", headers=admin)
            assert answer.status_code == 200, (path, query, answer.text)
            assert answer.json().get("rows", 0) == 0 and answer.json().get("items", []) == []
    assert client.get("/monitoring/retrains?limit=0", headers=admin).status_code == 422
    # no MLflow behind this app: an empty answer that says so, not an error
    answer = client.get("/monitoring/retrains", headers=admin)
    assert answer.status_code == 200 and answer.json() == {
        "runs": [],
        "available": False,
        "detail": "MLflow unreachable: retry later",
    }
    empty = client.get("/monitoring/prediction-stats", headers=admin).json()
    assert empty["rows"] == 0 and empty["versions"] == [] and empty["volume"] == []


# The y-axis tick labels as the page shows them: the right-anchored texts left of the plot (the
# grid lines' x1), each with its box and whether that box lies inside the SVG's (an SVG clips what
# is outside: "110.0 %" at x < 0 read "10.0 %").
Y_TICKS = """(name => {
  const svg = document.querySelector(`[data-panel="${name}"] svg`);
  const box = svg.getBoundingClientRect();
  const plotLeft = Math.min(...[...svg.querySelectorAll('line')].map(l => Number(l.getAttribute('x1'))));
  return [...svg.querySelectorAll('text[text-anchor="end"]')]
    .filter(t => Number(t.getAttribute('x')) < plotLeft)
    .map(t => { const r = t.getBoundingClientRect();
      return {text: t.textContent, top: r.top, inside: r.left >= box.left && r.right <= box.right
        && r.top >= box.top && r.bottom <= box.bottom}; });
})"""
TICK = re.compile(r"^(0|[1-9]\d{0,2}(,\d{3})*|[1-9]\d*)(\.\d+)?( %)?$")


def set_width(page, width: int) -> None:
    page.send("Emulation.setDeviceMetricsOverride", width=width, height=1000, deviceScaleFactor=1, mobile=False)


def y_ticks(page, panel: str) -> list[str]:
    """The panel's y-axis labels, bottom to top, after checking they are readable, ordered, round."""
    ticks = sorted(page.evaluate(f"{Y_TICKS}({json.dumps(panel)})"), key=lambda tick: -tick["top"])
    texts = [tick["text"] for tick in ticks]
    assert len(ticks) >= 2, (panel, texts)
    assert all(tick["inside"] for tick in ticks), f"{panel}: a label is cut by the chart's edge: {texts}"
    assert all(TICK.match(text) for text in texts), (panel, texts)
    values = [float(text.removesuffix(" %").replace(",", "")) for text in texts]
    steps = {round(b - a, 9) for a, b in itertools.pairwise(values)}
    assert values[0] == 0 and len(steps) == 1, f"{panel}: not evenly spaced from 0 upwards: {texts}"
    (step,) = steps
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert step > 0 and round(mantissa, 6) in (1, 2, 2.5, 5), f"{panel}: not round: {texts}"
    if panel in SHARE_CHARTS:
        assert values[-1] <= 100 and texts[-1].endswith(" %"), (panel, texts)
    return texts


def test_axis_labels_of_large_values_fit_at_usual_widths_in_chromium(api_server, tmp_path):
    """The issue's values (a bin holding every row of its version, 171,723 predictions in an hour)
    drawn by the page's own chart code into its panels: at 1,000, 1,400 and 1,920 px the labels
    are whole, ordered and round, and the share axis ends at 100 %."""
    server = api_server(ACCIDENTS_PROJECT_DIR=str(tmp_path / "project"), STATE_DIR=str(tmp_path / "state"))
    with headless_page(tmp_path / "chromium-profile") as page:
        page.navigate(f"{server.url}/dashboard")
        page.evaluate("""(() => { showPanels(true);
          const labels = Array.from({ length: 20 }, (_, i) => (i / 20).toFixed(2));
          const share = Array.from({ length: 20 }, (_, i) => (i === 19 ? 1 : 0));
          setPanel("prediction-distribution", "ready",
            barChart({ groups: [{ name: "version 1", color: "#000", values: share }], labels }));
          setPanel("volume", "ready", stackedBars({ buckets: ["12-04 10:00", "12-04 11:00"],
            series: [{ name: "1", color: "#000", values: [128792, 171723] }] }));
        })()""")
        for width in WIDTHS:
            set_width(page, width)
            assert y_ticks(page, "prediction-distribution")[-1] == "100 %"
            assert y_ticks(page, "volume")[-1] == "200,000"


def panel_states(page) -> dict[str, str]:
    return page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('[data-panel]')]"
        ".map(p => [p.dataset.panel, p.dataset.state || 'loading']))"
    )


def panel_text(page, name: str) -> str:
    return page.evaluate(f"document.querySelector('[data-panel=\"{name}\"]').innerText")


def test_dashboard_shows_replayed_traffic_in_chromium(api_server, champion_bundle, trained_project, mlflow_server,
                                                     tmp_path):  # fmt: skip
    project = project_with_champion(tmp_path / "project", champion_bundle)
    log_url = f"sqlite:///{tmp_path / 'state' / 'predictions.db'}"
    server = api_server(ACCIDENTS_PROJECT_DIR=str(project), STATE_DIR=str(tmp_path / "state"),
                        MLFLOW_TRACKING_URI=mlflow_server)  # fmt: skip
    env = {**os.environ, "BAAC_DATA_DIR": str(data_dir()), "ACCIDENTS_PROJECT_DIR": str(project)}
    assert MONITOR.exists(), "the drift job's venv is missing: make setup-monitoring"

    def replay_then_drift(*selection: str, logged: int) -> dict:
        replay = run_cli("accidents.monitoring.replay", "--from", PERIOD[0], "--to", PERIOD[1], "--limit", str(LIMIT),
                         "--source", "official", "--batch-size", "40", "--url", server.url, "--no-progress",
                         "--json", *selection, env=env)  # fmt: skip
        assert json.loads(replay.stdout.strip().splitlines()[-1])["accepted_rows"] == LIMIT
        wait_for(lambda: metric(requests.get(f"{server.url}/metrics", timeout=10).text, "prediction_log_rows_total")
                 == logged, what="every replayed row logged")  # fmt: skip
        drift = subprocess.run(
            [
                str(MONITOR),
                "-m",
                "accidents.monitoring.drift",
                "--log-url",
                log_url,
                "--rows",
                str(LIMIT),
                "--tracking-uri",
                mlflow_server,
                "--params",
                str(REPO / "params.yaml"),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=300,
        )
        assert drift.returncode == 0, drift.stdout + drift.stderr[-3000:]
        return json.loads(drift.stdout.strip().splitlines()[-1])

    replay_then_drift(logged=LIMIT)
    # whether the test slice's small reference flags the night stream is the drift job's concern
    # (tests/monitoring); the dashboard must show whatever the job stored
    replay_then_drift("--night", "--seed", "1", logged=2 * LIMIT)
    run_cli("accidents.monitoring.realized", "--log-url", log_url, "--source", "official", "--no-mlflow", env=env)

    # what the panels must show, from the JSON endpoints
    admin = login(server.url)
    stats = requests.get(f"{server.url}/monitoring/prediction-stats", headers=admin, timeout=10).json()
    (served,) = stats["versions"]
    assert stats["rows"] == served["rows"] == sum(served["histogram"]) == 2 * LIMIT
    assert sum(bucket["rows"] for bucket in stats["volume"]) == 2 * LIMIT
    assert 0 < served["predicted_positive"] < 2 * LIMIT and 0 < served["mean_probability"] < 1
    drift_runs = requests.get(f"{server.url}/monitoring/drift?limit=30", headers=admin, timeout=10).json()
    assert len(drift_runs) == 2 and all(run["feature_scores"] for run in drift_runs)
    retrains = requests.get(f"{server.url}/monitoring/retrains", headers=admin, timeout=10).json()
    assert retrains["available"] is True
    runs = retrains["runs"]  # one per model of pipeline.models, newest first
    assert {run["model"] for run in runs} == {"seed", "report_time"}
    seed_run = next(run for run in runs if run["model"] == "seed")
    assert seed_run["reason"]
    assert seed_run["test_roc_auc"] == pytest.approx(champion_bundle.metadata.metrics["test_roc_auc"])
    performance = requests.get(f"{server.url}/monitoring/performance", headers=admin, timeout=10).json()
    overall = next(row for row in performance if row["month"] is None)

    with headless_page(tmp_path / "chromium-profile") as page:
        page.navigate(f"{server.url}/dashboard")
        assert page.evaluate("document.getElementById('panels').hidden") is True
        # a wrong password: an error, still signed out
        page.evaluate("""(() => { const f = document.getElementById('login-form');
            f.username.value = 'admin'; f.password.value = 'wrong'; f.requestSubmit(); })()""")
        page.wait_for("document.getElementById('login-error').textContent.includes('wrong username')")
        page.evaluate("""(() => { const f = document.getElementById('login-form');
            f.username.value = 'admin'; f.password.value = 'admin123'; f.requestSubmit(); })()""")
        page.wait_for("document.body.dataset.loaded === 'true'", what="dashboard loaded")
        states = panel_states(page)
        assert states["prediction-distribution"] == states["volume"] == states["realized"] == "ready", states
        assert states["retrains"] == "ready" and states["shadow"] == "empty", states
        assert states["drift-features"] == states["drift-share"] == "ready", states

        # drift: one heat-map column per run, one row per compared feature, the latest verdict
        features = set().union(*(run["feature_scores"] for run in drift_runs))
        cells = page.evaluate("document.querySelectorAll('[data-panel=\"drift-features\"] svg rect').length")
        assert cells == 2 * len(features)
        drift_text = panel_text(page, "drift-features")
        assert drift_runs[0]["verdict"] in drift_text
        assert (", ".join(drift_runs[0]["drifted_features"]) or "none") in drift_text
        assert f"{drift_runs[0]['window_rows']:,}" in drift_text
        share = panel_text(page, "drift-share")
        assert f"{100 * drift_runs[0]['drifted_share']:.1f} %" in share
        assert all(run["verdict"] in share for run in drift_runs)  # the table of the latest runs

        distribution = panel_text(page, "prediction-distribution")
        assert f"{2 * LIMIT:,}" in distribution and f"{served['mean_probability']:.3f}" in distribution
        assert page.evaluate("document.querySelectorAll('[data-panel=\"prediction-distribution\"] rect').length") \
            == stats["bins"]  # fmt: skip
        assert f"version {served['model_version']}: {2 * LIMIT:,} rows" in panel_text(page, "volume")
        realized = panel_text(page, "realized")
        assert f"{overall['roc_auc']:.3f}" in realized and f"{overall['f1']:.3f}" in realized
        assert page.evaluate("document.querySelector('[data-panel=\"realized\"]').dataset.rows") == "6"  # months
        assert runs[0]["reason"] in panel_text(page, "retrains")
        assert "no challenger" in panel_text(page, "shadow")
        assert f"serving version {served['model_version']}" in page.evaluate(
            "document.getElementById('model-badge').textContent"
        )
        for width in WIDTHS:  # the axes the replayed traffic gives: readable at every usual width
            set_width(page, width)
            for chart in CHARTS:
                y_ticks(page, chart)
        page.screenshot(ARTIFACTS / "dashboard.png")
        # the page ran cleanly: no script error, no CSP refusal; the only failed loads are the
        # 401 of the wrong password and the 404s of endpoints this API does not have
        unexpected = [problem for problem in page.problems
                      if not ("status of 404" in problem and "/monitoring/" in problem)
                      and not ("status of 401" in problem and "/auth/token" in problem)]  # fmt: skip
        assert unexpected == []


def sign_in(page, url: str) -> None:
    page.navigate(f"{url}/dashboard")
    page.evaluate("""(() => { const f = document.getElementById('login-form');
        f.username.value = 'admin'; f.password.value = 'admin123'; f.requestSubmit(); })()""")
    page.wait_for("document.body.dataset.loaded === 'true'", what="dashboard loaded")


def test_dashboard_shows_the_shadow_challengers_agreement_in_chromium(api_server, champion_bundle, tmp_path):
    """A registry with a champion and a challenger (the same model with another threshold, so that
    the two disagree on some rows), the shadow on every row, 300 real accidents replayed: the panel
    shows the versions, the shadow rows and the agreement / positive rates /monitoring/shadow holds."""
    rows = 300
    with api_on_own_registry(api_server, champion_bundle, tmp_path, SHADOW_ENABLED="true",
                             SHADOW_SHARE="1") as stack:  # fmt: skip
        server = stack.server
        challenger = register(stack.uri, champion_bundle, threshold=0.3)
        mlflow.MlflowClient(stack.uri).set_registered_model_alias(MODEL_NAME, CHALLENGER_ALIAS, challenger)
        admin = login(server.url)
        requests.post(f"{server.url}/model/reload", headers=admin, timeout=60).raise_for_status()
        env = {**os.environ, "BAAC_DATA_DIR": str(data_dir()), "ACCIDENTS_PROJECT_DIR": str(stack.project)}
        run_cli("accidents.monitoring.replay", "--from", PERIOD[0], "--to", PERIOD[1], "--limit", str(rows), "--source",
                "official", "--batch-size", "50", "--url", server.url, "--no-progress", "--json", env=env)  # fmt: skip

        def report() -> list[dict]:
            return requests.get(f"{server.url}/monitoring/shadow", headers=admin, timeout=10).json()

        wait_for(lambda: bool(report()) and report()[0]["rows"] == rows, what="every replayed row shadowed")
        (comparison,) = report()
        assert comparison["challenger_version"] == challenger and comparison["champion_version"] == stack.version
        assert 0 < comparison["agreement_rate"] < 1
        # same probabilities, another threshold: every disagreement goes the same way
        difference = comparison["challenger_positive_rate"] - comparison["champion_positive_rate"]
        assert comparison["agreement_rate"] == pytest.approx(1 - abs(difference))
        assert comparison["positive_rate_difference"] == pytest.approx(difference)

        with headless_page(tmp_path / "chromium-profile") as page:
            sign_in(page, server.url)
            assert panel_states(page)["shadow"] == "ready"
            shadow = panel_text(page, "shadow")
            assert challenger in shadow and stack.version in shadow and str(rows) in shadow
            for rate in ("agreement_rate", "challenger_positive_rate", "champion_positive_rate"):
                assert f"{100 * comparison[rate]:.1f} %" in shadow, (rate, shadow)
            page.screenshot(ARTIFACTS / "dashboard-shadow.png")
