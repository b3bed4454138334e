"""Queries on the users table, the admin bootstrap at start-up, and the cross-replica retrain lock."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.core.auth_cache import AuthState
from api.core.config import Settings, valid_username
from api.core.security import demo_password_of, hash_password
from api.db.engine import Database
from api.db.models import RetrainLock, Role, User

logger = logging.getLogger(__name__)


def find_user(session: Session, username: str) -> User | None:
    """The user named `username`; None, without a query, for a name no user can have. Every
    username a client sends (login form, `{username}` paths, token subjects) comes through here:
    PostgreSQL answers a NUL byte or an over-long name with an error, not with "no row"."""
    if not valid_username(username):
        return None
    return session.scalar(select(User).where(User.username == username))


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def count_other_enabled_admins(session: Session, user: User) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == Role.ADMIN.value, User.disabled.is_(False), User.id != user.id)
        )
        or 0
    )


def auth_state(database: Database, username: str) -> AuthState | None:
    with database.session() as session:
        user = find_user(session, username)
        return None if user is None else AuthState(user.username, user.role, user.disabled, user.token_version)


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


def admins_with_demo_password(database: Database) -> list[str]:
    """Enabled admins whose stored hash verifies a demo password (e.g. created in local mode:
    ADMIN_PASSWORD only creates a missing admin, it never changes a stored one)."""
    with database.session() as session:
        admins = session.scalars(select(User).where(User.role == Role.ADMIN.value, User.disabled.is_(False)))
        return [user.username for user in admins if demo_password_of(user.password_hash) is not None]


RETRAIN_LOCK = "retrain"


@contextmanager
def retrain_lock(session: Session) -> Iterator[None]:
    """Hold the retrain lock for the body (list the active runs, then trigger): another API replica
    on the same database waits (at most its lock/busy timeout, then the request is a 503) and, once
    in, sees the run this one started. Committed (released) at the end, rolled back on error."""
    now = datetime.now(UTC)
    take = update(RetrainLock).where(RetrainLock.name == RETRAIN_LOCK).values(taken_at=now)
    if not session.execute(take).rowcount:  # first use of this database: create the row
        session.add(RetrainLock(name=RETRAIN_LOCK, taken_at=now))
        try:
            session.flush()
        except IntegrityError:  # another replica created it meanwhile: wait for its lock like the others
            session.rollback()
            session.execute(take)
    try:
        yield
    except BaseException:
        session.rollback()
        raise
    session.commit()
