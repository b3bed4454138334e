"""SQLAlchemy engines as this project opens them (the API's users database, the prediction log).

SQLite files: the folder is created, WAL mode (readers never block the writer, nor it them), a
busy timeout so a locked database answers an error in bounded time instead of hanging, and
optionally a `synchronous` level. Servers (PostgreSQL): pre-ping, so a restarted server does
not fail the first request after it, and the same timeout as `lock_timeout`: a row or table lock
held by another writer fails the statement after it (LockNotAvailable, an OperationalError) instead
of hanging.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url


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
