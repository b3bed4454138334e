"""Tables (SQLAlchemy declarative models) and the roles they store."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Boolean, DateTime, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from api.core.config import USERNAME_MAX_LENGTH


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
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.USER.value)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped on password change: tokens carry it (claim "ver"), older ones stop working.
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    password_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class RetrainLock(Base):
    """One row per lock name: its UPDATE, held until the transaction ends, serializes retrain
    triggers across API replicas sharing this database (a row lock on PostgreSQL, the write lock on
    SQLite), so that single flight holds between them, not only within one process."""

    __tablename__ = "retrain_lock"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    taken_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
