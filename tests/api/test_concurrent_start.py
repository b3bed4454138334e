"""Two API replicas starting at once on one fresh PostgreSQL database (issue #23 item 12).

Kubernetes starts `replicas: 2` together (the scale-out compose file orders them instead): both
create the users tables, the admin and the prediction log's schema at the same moment. On a real
PostgreSQL server, with the same functions the API's start runs, several rounds on fresh databases:
no replica may fail, and the result is one admin and the log's schema at head.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text

from accidents.store.prediction_log import SCHEMA_REVISION, create_log_engine, current_revision, ensure_schema, migrate
from api.db.engine import Database
from api.services import _prepare_database
from tests.api.conftest import make_settings

ROUNDS = 4  # fresh databases; the check-then-create race showed in the first round before the lock


def start_databases(url: str, settings, barrier: threading.Barrier) -> None:
    """What an API process does to its databases at start (api.services), from a common instant."""
    database = Database(url, settings.database_busy_timeout_seconds)
    log_engine = create_log_engine(url)
    try:
        barrier.wait()
        _prepare_database(database, settings)
        ensure_schema(log_engine, url)
    finally:
        database.dispose()
        log_engine.dispose()


def test_two_replicas_migrate_one_fresh_database_at_once(postgres, tmp_path):
    settings = make_settings(tmp_path / "project", admin_password="replica-admin-password")
    for _ in range(ROUNDS):
        url = postgres.new_database("replicas")
        barrier = threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            starts = [pool.submit(start_databases, url, settings, barrier) for _ in range(2)]
            errors = [repr(start.exception()) for start in starts if start.exception() is not None]
        assert errors == [], errors
        engine = create_log_engine(url)
        try:
            with engine.connect() as connection:
                assert current_revision(connection) == SCHEMA_REVISION
                assert connection.execute(text("select count(*) from users where role = 'admin'")).scalar() == 1
        finally:
            engine.dispose()


def migrate_at_once(url: str, barrier: threading.Barrier) -> str:
    barrier.wait()
    return migrate(url)


def test_two_prediction_log_migrations_at_once_both_succeed(postgres):
    """`python -m accidents.store.prediction_log migrate` (what ensure_schema runs in a child) twice
    at once on a fresh database: the second waits for the first, then finds nothing to do
    (ensure_schema alone also hides a failed child when the other reached head)."""
    for _ in range(ROUNDS):
        url = postgres.new_database("log")
        barrier = threading.Barrier(2)

        with ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(migrate_at_once, url, barrier) for _ in range(2)]
            revisions = [run.result() for run in runs]
        assert revisions == [SCHEMA_REVISION] * 2
