"""Connections: one engine and session factory per app (SQLite pragmas, PostgreSQL timeouts).

Every wait on the users database is bounded, so an outage is an error in bounded time, never a
request stuck on a thread: SQLite waits `busy_timeout_seconds` for a lock (`timeout`, PRAGMA
busy_timeout); PostgreSQL fails a lock wait after the same time (lock_timeout), a connection
attempt after `timeout_seconds` (connect_timeout: a server whose kernel accepts but that never
answers, e.g. frozen), a statement after `timeout_seconds` (statement_timeout) and unacknowledged
data after it too (tcp_user_timeout: a host gone from the network). A statement already sent to a
frozen server (its kernel acknowledges, it never answers) has no client-side bound in libpq: the
auth lookups therefore run on threads of their own with a deadline (api.core.auth_cache).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from accidents.store.database import database_engine, migration_lock
from api.db.models import Base, User


class Database:
    def __init__(self, url: str, busy_timeout_seconds: float = 5.0, timeout_seconds: float = 5.0):
        self.engine = _engine(url, busy_timeout_seconds, timeout_seconds)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_all(self) -> None:
        with self.engine.begin() as connection:  # replicas starting together: one after the other
            migration_lock(connection, "accidents-users-schema")
            Base.metadata.create_all(connection)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    def ping(self) -> None:
        """One round trip (the readiness probe); raises when the database does not answer."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()

    def on_user_change(self, callback: Callable[[str], None]) -> None:
        """Call `callback(username)` for every user row this process updates or deletes."""

        def _changed(session: Session, _context: object) -> None:
            for row in (*session.dirty, *session.deleted):
                if isinstance(row, User):
                    callback(row.username)

        event.listen(self.sessions, "after_flush", _changed)


def _engine(url: str, busy_timeout_seconds: float, timeout_seconds: float) -> Engine:
    engine = database_engine(url, busy_timeout_seconds)  # SQLite: WAL + busy timeout (accidents.store.database)
    if engine.dialect.name == "postgresql":
        event.listen(engine, "do_connect", _postgresql_timeouts(timeout_seconds))
    return engine


def _postgresql_timeouts(timeout_seconds: float) -> Callable[..., None]:
    milliseconds = int(timeout_seconds * 1000)
    parameters = {
        "connect_timeout": max(2, math.ceil(timeout_seconds)),  # libpq: whole seconds, 2 at least
        "tcp_user_timeout": milliseconds,
    }

    def _add(_dialect: Any, _record: Any, _args: Any, cparams: dict[str, Any]) -> None:
        cparams.update(parameters)
        cparams["options"] = f"{cparams.get('options', '')} -c statement_timeout={milliseconds}".strip()

    return _add
