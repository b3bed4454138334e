"""Users and roles: admins create, list, update (role, disabled, password reset) and delete users;
everyone reads and changes their own account."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Response, status
from sqlalchemy.orm import Session

from api.core.config import Settings
from api.core.security import hash_password, verify_password
from api.db import crud
from api.db.crud import find_user
from api.db.models import Role, User
from api.deps import AdminUser, CurrentUser, SessionDep, SettingsDep
from api.schemas import Message, PasswordChange, UserCreate, UserOut, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])
NO_USER = {"description": "no such user"}
LAST_ADMIN = {"description": "refused: the last enabled admin cannot be demoted, disabled or deleted"}


@router.get("/me", response_model=UserOut)
def read_me(user: CurrentUser) -> User:
    return user


@router.post("/me/password", response_model=Message, responses={400: {"description": "current password is wrong"}})
def change_own_password(body: PasswordChange, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> Message:
    if not verify_password(body.current_password, user.password_hash)[0]:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "current password is wrong")
    _set_password(user, body.new_password, settings, field="new_password")
    session.commit()
    return Message(detail="password changed: every token issued before is revoked, log in again")


@router.get("", response_model=list[UserOut])
def list_users(_: AdminUser, session: SessionDep) -> list[User]:
    return crud.list_users(session)


@router.post(
    "", response_model=UserOut, status_code=status.HTTP_201_CREATED, responses={409: {"description": "user exists"}}
)
def create_user(body: UserCreate, _: AdminUser, session: SessionDep, settings: SettingsDep) -> User:
    if find_user(session, body.username) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"user {body.username!r} already exists")
    _check_password(body.password, settings)
    user = User(username=body.username, password_hash=hash_password(body.password), role=body.role.value)
    session.add(user)
    session.commit()
    return user


@router.patch("/{username}", response_model=UserOut, responses={404: NO_USER, 409: LAST_ADMIN})
def update_user(username: str, body: UserUpdate, _: AdminUser, session: SessionDep, settings: SettingsDep) -> User:
    user = _existing(session, username)
    removes_admin = (body.role is not None and body.role != Role.ADMIN) or body.disabled is True
    if removes_admin:
        _keep_one_admin(session, user)
    if body.role is not None:
        user.role = body.role.value
    if body.disabled is not None:
        user.disabled = body.disabled
    if body.password is not None:
        _set_password(user, body.password, settings)
    session.commit()
    return user


@router.delete("/{username}", status_code=status.HTTP_204_NO_CONTENT, responses={404: NO_USER, 409: LAST_ADMIN})
def delete_user(username: str, _: AdminUser, session: SessionDep) -> Response:
    user = _existing(session, username)
    _keep_one_admin(session, user)
    session.delete(user)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _existing(session: Session, username: str) -> User:
    user = find_user(session, username)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {username!r}")
    return user


def _keep_one_admin(session: Session, user: User) -> None:
    """Refuse to demote, disable or delete the last enabled admin."""
    if user.role != Role.ADMIN or user.disabled:
        return
    if not crud.count_other_enabled_admins(session, user):
        raise HTTPException(status.HTTP_409_CONFLICT, "refused: this is the last enabled admin")


def _check_password(password: str, settings: Settings, field: str = "password") -> None:
    """PASSWORD_MIN_LENGTH, answered as a validation error (same 422 shape as FastAPI's own)."""
    if len(password) < settings.password_min_length:
        message = f"password must have at least {settings.password_min_length} characters"
        problem = {"loc": ["body", field], "msg": message, "type": "string_too_short"}
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [problem])


def _set_password(user: User, password: str, settings: Settings, field: str = "password") -> None:
    """New hash, and a new token version: every token issued before stops working."""
    _check_password(password, settings, field)
    user.password_hash = hash_password(password)
    user.token_version += 1
    user.password_changed_at = datetime.now(UTC)
