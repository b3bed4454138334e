"""SQLAlchemy engines as this project opens them (the API's users database, the prediction log).

SQLite files: the folder is created, WAL mode (readers never block the writer, nor it them), a
busy timeout so a locked database answers an error in bounded time instead of hanging, and
optionally a `synchronous` level. Servers (PostgreSQL): pre-ping, so a restarted server does
not fail the first request after it, and the same timeout as `lock_timeout`: a row or table lock
held by another writer fails the statement after it (LockNotAvailable, an OperationalError) instead
of hanging.

Schema changes at start (the users tables, the prediction log's migrations) run inside
`migration_lock`: on PostgreSQL a transaction-scoped advisory lock, so replicas that start together
(Kubernetes starts both at once) change the schema one after the other, the second finding it
done. Without it the second failed on PostgreSQL's catalog (UniqueViolation on
pg_type_typname_nsp_index) in the first of the rounds tests/api/test_concurrent_start.py runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url

# How long a replica waits for another's schema change before failing its start (the log's
# migrations run in a child process with the same bound: accidents.store.prediction_log).
MIGRATION_LOCK_WAIT_SECONDS = 120


def database_engine(url: str, busy_timeout_seconds: float = 5.0, synchronous: str | None = None) -> Engine:
    parsed = make_url(url)
    milliseconds = int(busy_timeout_seconds * 1000)
    if parsed.drivername.startswith("postgresql"):
        return create_engine(url, pool_pre_ping=True, connect_args={"options": f"-c lock_timeout={milliseconds}"})
    if not parsed.drivername.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout_seconds})
    pragmas = ["journal_mode=WAL", f"busy_timeout={milliseconds}"]
    if synchronous is not None:
        pragmas.append(f"synchronous={synchronous}")

    def _sqlite_pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def migration_lock(connection: Connection, name: str) -> None:
    """Take the schema-change lock `name` for the rest of `connection`'s transaction (PostgreSQL:
    an advisory lock, waited for up to MIGRATION_LOCK_WAIT_SECONDS). SQLite: nothing to do, its
    write lock already serializes the DDL of processes sharing the file."""
    if connection.dialect.name != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    connection.execute(text(f"SET LOCAL lock_timeout = '{MIGRATION_LOCK_WAIT_SECONDS}s'"))
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
