"""POST /retrain and GET /retrain/{run_id}: roles, 202 at once, single flight (409), states, 503."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from api.db.crud import retrain_lock
from api.db.engine import Database
from api.orchestrators import RetrainRun, promoted_during
from tests.api.conftest import closed_url, create_user, login, make_settings, wait_retrain_done
from tests.support.postgres import users_database


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    """A retraining command that runs until the test opens the gate (touches the file)."""
    return tmp_path / "gate"


def slow_command(tmp_path: Path, gate: Path, exit_code: int = 0) -> str:
    script = tmp_path / "fake_retrain.sh"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'env > "{tmp_path}/retrain.env"\n'
        f'while [ ! -e "{gate}" ]; do sleep 0.1; done\n'
        f"exit {exit_code}\n"
    )
    return f"bash {script}"


def test_default_command_is_the_real_retraining_script(tmp_path):
    settings = make_settings(tmp_path)
    assert settings.retrain_argv == str(tmp_path / "retraining_run.sh")


def test_retrain_roles(app_factory, tmp_path, gate):
    client = app_factory(retrain_command=slow_command(tmp_path, gate))
    assert client.post("/retrain").status_code == 401
    user = create_user(client, login(client), "ursula")
    assert client.post("/retrain", headers=user).status_code == 403
    assert not (tmp_path / "retrain.env").exists()  # nothing started


# What the API process holds and the retraining process must not inherit (api/orchestrators/__init__.py).
API_SECRETS = ("JWT_SECRET", "ADMIN_PASSWORD", "ADMIN_PASSWORD_HASH", "AIRFLOW_PASSWORD", "DATABASE_URL")


def test_single_flight_states_and_restart(app_factory, tmp_path, gate, monkeypatch):
    for name in API_SECRETS:  # in the API's environment, as compose and run_stack.py set them
        monkeypatch.setenv(name, f"api-only-{name.lower()}")
    monkeypatch.setenv("ACCIDENTS_TEST_INHERITED", "yes")  # anything else is inherited
    client = app_factory(retrain_command=slow_command(tmp_path, gate))
    admin = login(client)
    started = time.monotonic()
    first = client.post("/retrain", headers=admin)
    assert first.status_code == 202 and time.monotonic() - started < 5
    run_id = first.json()["run_id"]
    assert first.json()["state"] == "running" and first.headers["location"] == f"/retrain/{run_id}"
    assert first.json()["reason"] == "manual: admin"  # who asked: the pipeline's run_reason

    second = client.post("/retrain", headers=admin)
    assert second.status_code == 409 and second.json()["run_id"] == run_id

    # another API process on the same state (a second worker, or after a restart) sees the same run
    other = app_factory(retrain_command=slow_command(tmp_path, gate))
    assert other.post("/retrain", headers=admin).json() == second.json()
    assert client.get(f"/retrain/{run_id}", headers=admin).json()["state"] == "running"

    gate.touch()
    done = wait_retrain_done(client, admin, run_id)
    assert done["state"] == "success" and done["finished_at"] and done["reason"] == "manual: admin"
    assert done["promoted"] is None  # the registry is unreachable here: unknown, not guessed

    env = (tmp_path / "retrain.env").read_text()
    assert f"ACCIDENTS_PROJECT_DIR={tmp_path / 'project'}" in env
    assert "ACCIDENTS_RUN_REASON=manual: admin\n" in env  # tagged run_reason on the MLflow run
    assert "api-only-" not in env and not any(line.startswith(API_SECRETS) for line in env.splitlines())
    assert "ACCIDENTS_TEST_INHERITED=yes\n" in env and "DVC_NO_ANALYTICS=1\n" in env

    again = client.post("/retrain", headers=admin)  # the lock went with the finished run
    assert again.status_code == 202 and again.json()["run_id"] != run_id
    wait_retrain_done(client, admin, again.json()["run_id"])


def test_failed_run(app_factory, tmp_path, gate):
    gate.touch()
    client = app_factory(retrain_command=slow_command(tmp_path, gate, exit_code=3))
    admin = login(client)
    run_id = client.post("/retrain", headers=admin).json()["run_id"]
    done = wait_retrain_done(client, admin, run_id)
    assert done["state"] == "failed" and "exit code 3" in done["detail"]


def test_unknown_runs_are_404(client):
    admin = login(client)
    for run_id in ("local-20250101T000000-00000000", "nope", "..%2F..%2Fetc%2Fpasswd"):
        assert client.get(f"/retrain/{run_id}", headers=admin).status_code == 404


def test_missing_command_is_503(app_factory):
    client = app_factory(retrain_command="/nonexistent/retraining_run.sh")
    response = client.post("/retrain", headers=login(client))
    assert response.status_code == 503 and "cannot start" in response.json()["detail"]


def test_airflow_unreachable_is_503(app_factory):
    client = app_factory(airflow_api_url=closed_url())
    admin = login(client)
    response = client.post("/retrain", headers=admin)
    assert response.status_code == 503
    assert "orchestrator unavailable" in response.json()["detail"] and "unreachable" in response.json()["detail"]
    assert client.get("/retrain/manual__2025-01-01T00:00:00+00:00", headers=admin).status_code == 503
    assert 'retrain_runs_total{orchestrator="airflow",outcome="unavailable"} 1.0' in client.get("/metrics").text


def test_promotion_is_read_from_the_champion_creation_time():
    run = RetrainRun("r", "success", "local", "2025-01-01T10:00:00+00:00", "2025-01-01T10:30:00+00:00")
    at = lambda iso: int(__import__("datetime").datetime.fromisoformat(iso).timestamp() * 1000)  # noqa: E731
    assert promoted_during(run, ("3", at("2025-01-01T10:20:00+00:00"))) is True
    assert promoted_during(run, ("2", at("2025-01-01T09:00:00+00:00"))) is False
    assert promoted_during(run, ("4", at("2025-01-02T09:00:00+00:00"))) is None  # a later run promoted since
    assert promoted_during(run, None) is None
    running = RetrainRun("r", "running", "local", "2025-01-01T10:00:00+00:00")
    assert promoted_during(running, ("3", at("2025-01-01T10:20:00+00:00"))) is None


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_retrain_lock_serializes_replicas_sharing_a_database(request, tmp_path, backend):
    """Two engines on one users database, as two API replicas have: while one holds the retrain lock
    (listing active runs, then triggering), the other waits, and gets in only after the release."""
    url = users_database(request, backend) or f"sqlite:///{tmp_path / 'users.db'}"
    replicas = [Database(url), Database(url)]
    replicas[0].create_all()
    events: list[str] = []
    first_in = threading.Event()

    def replica(index: int, hold: float) -> None:
        with replicas[index].session() as session, retrain_lock(session):
            events.append(f"in {index}")
            first_in.set()
            time.sleep(hold)
            events.append(f"out {index}")

    try:
        first = threading.Thread(target=replica, args=(0, 0.8))
        first.start()
        assert first_in.wait(10)
        second = threading.Thread(target=replica, args=(1, 0))
        second.start()
        first.join(10)
        second.join(10)
        assert events == ["in 0", "out 0", "in 1", "out 1"], events
        # released on error too: a failing trigger does not keep the lock
        with pytest.raises(RuntimeError), replicas[0].session() as session, retrain_lock(session):
            raise RuntimeError("trigger failed")
        with replicas[1].session() as session, retrain_lock(session):
            pass
    finally:
        for database in replicas:
            database.dispose()
