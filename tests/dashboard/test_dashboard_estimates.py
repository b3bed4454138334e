"""The dashboard's estimated-vs-realized panel in a real headless Chromium, served by a real uvicorn
whose prediction log (SQLite) holds what the estimation job and the label job stored: before any
estimate the panel says so; then it shows each window's estimated AUC/F1 next to the realized
values once graded, and the error, per model version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from accidents.store import estimates
from accidents.store.prediction_log import create_log_engine
from tests.support.chromium import headless_page
from tests.support.project import REPO

pytestmark = pytest.mark.timeout(300)
ARTIFACTS = REPO / "state" / "test-artifacts"
NOW = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)


def estimate(version: str, auc: float, f1: float) -> dict:
    return {"model_version": version, "window_rows": 5000, "roc_auc": auc, "f1": f1, "precision": 0.41,
            "recall": 0.62, "positive_rate": 0.27, "predicted_positive_rate": 0.33, "threshold": 0.31,
            "method": "test", "calibration": {"ece_raw": 0.081, "ece_isotonic": 0.012}}  # fmt: skip


def sign_in(page, url: str) -> None:
    page.navigate(f"{url}/dashboard")
    page.evaluate("""(() => { const f = document.getElementById('login-form');
        f.username.value = 'admin'; f.password.value = 'admin123'; f.requestSubmit(); })()""")
    page.wait_for("document.body.dataset.loaded === 'true'", what="dashboard loaded")


def panel(page) -> tuple[str, str, str]:
    """The panel's state, rows and text."""
    return page.evaluate("""(() => { const p = document.querySelector('[data-panel="estimated"]');
        return [p.dataset.state || 'loading', p.dataset.rows, p.innerText]; })()""")


def test_estimated_next_to_realized_per_version_and_window_in_chromium(api_server, tmp_path):
    state = tmp_path / "state"
    server = api_server(ACCIDENTS_PROJECT_DIR=str(tmp_path / "project"), STATE_DIR=str(state))
    with headless_page(tmp_path / "chromium-profile") as page:
        sign_in(page, server.url)
        status, _, text = panel(page)
        assert status == "empty" and "no estimate yet" in text

        engine = create_log_engine(f"sqlite:///{state / 'predictions.db'}")  # the API's log, migrated at start
        try:
            day = timedelta(days=1)
            first = estimates.store(engine, estimates.row_of(estimate("4", 0.7912, 0.5234), NOW - 3 * day,
                                                             NOW - 2 * day, computed_at=NOW - 2 * day))  # fmt: skip
            (row,) = [e for e in estimates.recent(engine, 5) if e["id"] == first]
            estimates.record_grade(engine, row, 4800, 0.8137, 0.5011)
            estimates.store(engine, estimates.row_of(estimate("3", 0.7501, 0.4802), NOW - 2 * day, NOW - day,
                                                     computed_at=NOW - day))  # fmt: skip
            estimates.store(engine, estimates.row_of(estimate("4", 0.7705, 0.5055), NOW - day, NOW, computed_at=NOW))
        finally:
            engine.dispose()

        sign_in(page, server.url)  # a fresh load reads the stored rows
        status, rows, text = panel(page)
        assert (status, rows) == ("ready", "3"), text
        for shown in ("0.7912", "0.8137", "-0.0225", "0.5234", "0.5011", "+0.0223",  # the graded window
                      "0.7705", "0.5055", "0.7501", "0.4802", "0.081 → 0.012"):  # fmt: skip
            assert shown in text, (shown, text)
        assert "estimated AUC, version 4" in text  # the newest estimate leads
        legend = page.evaluate("document.querySelector('[data-panel=\"estimated\"] .legend').innerText")
        assert all(label in legend for label in ("v4 estimated AUC", "v4 realized AUC", "v3 estimated AUC"))
        # one dot per stored value: 3 estimated AUCs and the one realized AUC
        assert page.evaluate("document.querySelectorAll('[data-panel=\"estimated\"] svg circle').length") == 4
        page.screenshot(ARTIFACTS / "dashboard-estimated.png")
        # the page ran cleanly: no script error, no CSP refusal (no model here: /model answers 503)
        assert [problem for problem in page.problems if "status of 503" not in problem] == []


def panel_of(page, name: str) -> tuple[str, str, str]:
    return page.evaluate(f"""(() => {{ const p = document.querySelector('[data-panel="{name}"]');
        return [p.dataset.state || 'loading', p.dataset.rows, p.innerText]; }})()""")


def test_each_models_drift_and_estimates_have_panels_of_their_own_in_chromium(api_server, tmp_path):
    """Issue #25: the report-time model's drift runs and estimates (its version 1, as the seed's)
    are drawn on its own panels, the seed's on theirs, never mixed."""
    from accidents.store import drift_results

    state = tmp_path / "state"
    server = api_server(ACCIDENTS_PROJECT_DIR=str(tmp_path / "project"), STATE_DIR=str(state))
    with headless_page(tmp_path / "chromium-profile") as page:
        sign_in(page, server.url)
        status, _, text = panel_of(page, "report-time-drift-features")
        assert status == "empty" and "--model report_time" in text
        assert panel_of(page, "report-time-estimated")[0] == "empty"

        engine = create_log_engine(f"sqlite:///{state / 'predictions.db'}")
        try:
            drift = {"window_start": NOW - timedelta(days=1), "window_end": NOW, "window_rows": 4321,
                     "model_version": "1", "reference_rows": 30000, "prediction_drift": 0.02, "report_run_id": None,
                     "method": "test"}  # fmt: skip
            drift_results.store(
                engine,
                {
                    **drift,
                    "computed_at": NOW,
                    "feature_scores": {"hour": 0.01, "lum": 0.02},
                    "drifted_features": [],
                    "drifted_share": 0.0,
                    "verdict": "no_drift",
                },
            )
            drift_results.store(engine, {**drift, "computed_at": NOW, "window_rows": 2345, "verdict": "drift",
                                         "feature_scores": {"n_pedestrians": 0.31, "belt_share": 0.02, "hour": 0.05},
                                         "drifted_features": ["n_pedestrians"], "drifted_share": 1 / 3,
                                         "model": "report_time"})  # fmt: skip
            start = NOW - timedelta(days=1)
            estimates.store(engine, estimates.row_of(estimate("1", 0.7123, 0.5), start, NOW, computed_at=NOW))
            estimates.store(engine, estimates.row_of(estimate("1", 0.8456, 0.6), start, NOW, computed_at=NOW,
                                                     model="report_time"))  # fmt: skip
        finally:
            engine.dispose()

        sign_in(page, server.url)
        status, rows, text = panel_of(page, "report-time-drift-features")
        assert (status, rows) == ("ready", "1"), text
        assert "n_pedestrians" in text and "2,345" in text and "4,321" not in text
        status, rows, text = panel_of(page, "drift-features")
        assert (status, rows) == ("ready", "1") and "4,321" in text and "n_pedestrians" not in text
        # one heat-map cell per compared feature of each model's one run
        cells = "document.querySelectorAll('[data-panel=\"{}\"] svg rect').length"
        assert page.evaluate(cells.format("report-time-drift-features")) == 3
        assert page.evaluate(cells.format("drift-features")) == 2
        assert "33.3 %" in panel_of(page, "report-time-drift-share")[2]
        status, rows, text = panel_of(page, "report-time-estimated")
        assert (status, rows) == ("ready", "1") and "0.8456" in text and "0.7123" not in text
        status, rows, text = panel_of(page, "estimated")
        assert (status, rows) == ("ready", "1") and "0.7123" in text and "0.8456" not in text
        page.screenshot(ARTIFACTS / "dashboard-report-time.png")
        assert [problem for problem in page.problems if "status of 503" not in problem] == []
