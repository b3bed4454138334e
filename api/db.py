"""Users and roles in a real database (SQLAlchemy): SQLite file by default, PostgreSQL via DATABASE_URL."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Boolean, DateTime, Integer, String, create_engine, event, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from api.core.auth_cache import AuthState
from api.core.config import Settings
from api.core.security import hash_password

logger = logging.getLogger(__name__)


class Role(StrEnum):
    ADMIN = "admin"  # everything
    USER = "user"  # predict, read model info, change own password


class Base(DeclarativeBase):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.USER.value)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped on password change: tokens carry it (claim "ver"), older ones stop working.
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    password_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Database:
    def __init__(self, url: str, busy_timeout_seconds: float = 5.0):
        self.engine = _engine(url, busy_timeout_seconds)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_all(self) -> None:
        Base.metadata.create_all(self.engine)

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


def auth_state(database: Database, username: str) -> AuthState | None:
    with database.session() as session:
        user = find_user(session, username)
        return None if user is None else AuthState(user.username, user.role, user.disabled, user.token_version)


def _engine(url: str, busy_timeout_seconds: float) -> Engine:
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout_seconds})
    milliseconds = int(busy_timeout_seconds * 1000)

    def _sqlite_pragmas(connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={milliseconds}")
        cursor.close()

    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def bootstrap_admin(database: Database, settings: Settings) -> bool:
    """Create the admin from ADMIN_USERNAME / ADMIN_PASSWORD(_HASH) when missing. True if created."""
    with database.session() as session:
        if find_user(session, settings.admin_username) is not None:
            return False
        if settings.admin_password_hash is not None:
            password_hash = settings.admin_password_hash.get_secret_value()
        else:
            password = settings.admin_password_value()
            if password is None:
                raise RuntimeError("ADMIN_PASSWORD or ADMIN_PASSWORD_HASH must be set")
            password_hash = hash_password(password)
        session.add(User(username=settings.admin_username, password_hash=password_hash, role=Role.ADMIN.value))
        try:
            session.commit()
        except IntegrityError:  # another worker created it first
            return False
    logger.info("created admin user %r", settings.admin_username)
    return True
