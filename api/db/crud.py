"""Queries on the users table, and the admin bootstrap at start-up."""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.core.auth_cache import AuthState
from api.core.config import Settings
from api.core.security import hash_password
from api.db.engine import Database
from api.db.models import Role, User

logger = logging.getLogger(__name__)


def find_user(session: Session, username: str) -> User | None:
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
