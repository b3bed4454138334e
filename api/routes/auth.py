"""POST /auth/token: OAuth2 password form -> signed JWT (throttled on failures, password checks bounded)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from api.core.security import create_access_token, verify_password
from api.db.crud import find_user
from api.deps import JwtSecretDep, SessionDep, SettingsDep, ThrottleDep, unauthorized
from api.schemas import Token

router = APIRouter(prefix="/auth", tags=["auth"])
CHECKS_BUSY_RETRY_SECONDS = 1  # a password check takes ~0.5 s: a slot is free again by then


@router.post(
    "/token",
    response_model=Token,
    responses={
        401: {"description": "wrong credentials"},
        429: {"description": "too many failed attempts, or too many logins being checked at once (Retry-After)"},
    },
)
def login(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    secret: JwtSecretDep,
) -> Token:
    client = request.client.host if request.client else "unknown"
    wait = throttle.retry_after(form.username, client)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed logins: retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    user = find_user(session, form.username)
    with throttle.check_slot() as checking:
        if not checking:  # every slot busy (64 MiB each): refuse now rather than queue
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"too many logins at once: retry in {CHECKS_BUSY_RETRY_SECONDS} s",
                headers={"Retry-After": str(CHECKS_BUSY_RETRY_SECONDS)},
            )
        valid, new_hash = verify_password(form.password, user.password_hash if user else None)
    if user is None or not valid or user.disabled:
        throttle.failure(form.username, client)
        raise unauthorized("incorrect username or password, or account disabled")
    if new_hash is not None:  # seed-style bcrypt (or outdated argon2 parameters): upgrade now
        user.password_hash = new_hash
        session.commit()
    throttle.success(form.username, client)
    lifetime = settings.access_token_expire_minutes * 60
    token = create_access_token(user.username, user.role, user.token_version, secret, lifetime)
    return Token(access_token=token, expires_in=lifetime)
