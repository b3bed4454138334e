"""Connections: one engine and session factory per app (SQLite pragmas, PostgreSQL lock timeout)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from accidents.store.database import database_engine, migration_lock
from api.db.models import Base, User


class Database:
    def __init__(self, url: str, busy_timeout_seconds: float = 5.0):
        self.engine = _engine(url, busy_timeout_seconds)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_all(self) -> None:
        with self.engine.begin() as connection:  # replicas starting together: one after the other
            migration_lock(connection, "accidents-users-schema")
            Base.metadata.create_all(connection)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

    def on_user_change(self, callback: Callable[[str], None]) -> None:
        """Call `callback(username)` for every user row this process updates or deletes."""

        def _changed(session: Session, _context: object) -> None:
            for row in (*session.dirty, *session.deleted):
                if isinstance(row, User):
                    callback(row.username)

        event.listen(self.sessions, "after_flush", _changed)


def _engine(url: str, busy_timeout_seconds: float) -> Engine:
    return database_engine(url, busy_timeout_seconds)  # SQLite: WAL + busy timeout (accidents.store.database)
