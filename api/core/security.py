"""Passwords (pwdlib: argon2id, bcrypt accepted for seed-style hashes), JWTs (PyJWT, HS256 pinned),
the JWT secret, and the production-mode checks (demo secrets refused)."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from api.core.config import DEMO_ADMIN_PASSWORD, Settings

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("exp", "iat", "sub", "role", "ver")
MIN_SECRET_BYTES = 32  # JWT secrets: HS256 wants at least its 256-bit output size
# Values people copy from examples: never acceptable as a production secret.
DEMO_SECRETS = frozenset({"change-me", "changeme", "secret", "jwt-secret", "change-me-to-a-long-random-string"})

# New hashes are argon2id; bcrypt hashes verify and get upgraded (verify_password's second value).
_hasher = PasswordHash((Argon2Hasher(), BcryptHasher()))
# Verified when a username does not exist, so both paths cost one argon2 check (no user enumeration).
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class InvalidTokenError(Exception):
    """A bearer token that must not authenticate anyone (the message is safe to return)."""


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    role: str
    version: int  # the user's token version when issued: bumping it revokes older tokens
    issued_at: int
    expires_at: int


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    """(valid, new hash to store or None). An unknown or missing hash never verifies."""
    if password_hash is None:
        _hasher.verify(password, _DUMMY_HASH)
        return False, None
    try:
        return _hasher.verify_and_update(password, password_hash)
    except (UnknownHashError, ValueError):
        return False, None


def create_access_token(subject: str, role: str, version: int, secret: str, lifetime_seconds: int) -> str:
    now = int(time.time())
    claims = {"sub": subject, "role": role, "ver": version, "iat": now, "exp": now + lifetime_seconds}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_access_token(token: str, secret: str) -> TokenClaims:
    """The only place tokens are checked: signature with HS256 only, expiry, required claims."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": list(REQUIRED_CLAIMS)})
    except jwt.ExpiredSignatureError as error:
        raise InvalidTokenError("token expired") from error
    except jwt.PyJWTError as error:
        raise InvalidTokenError("invalid token") from error
    if not isinstance(claims["sub"], str) or not isinstance(claims["role"], str) or type(claims["ver"]) is not int:
        raise InvalidTokenError("invalid token")
    return TokenClaims(claims["sub"], claims["role"], claims["ver"], int(claims["iat"]), int(claims["exp"]))


def jwt_secret(settings: Settings) -> str:
    """JWT_SECRET, else (local mode) a strong secret generated once into a 0600 file outside git."""
    if settings.jwt_secret is not None and settings.jwt_secret.get_secret_value():
        return settings.jwt_secret.get_secret_value()
    if settings.production:
        raise RuntimeError("JWT_SECRET is required in production")  # production_problems reports it first
    return _read_or_create_secret(settings.jwt_secret_path)


def _read_or_create_secret(path: Path) -> str:
    """Atomic: the secret is written to a private temp file, then hard-linked into place once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another worker won the race: use its secret
        finally:
            temp.unlink()
    secret = path.read_text(encoding="utf-8").strip()
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise RuntimeError(f"{path} holds no usable JWT secret: delete it to generate a new one")
    return secret


def production_problems(settings: Settings) -> list[str]:
    """Why these settings must not run in production (empty in local mode or when fine)."""
    if not settings.production:
        return []
    problems = []
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    if not secret:
        problems.append(
            "JWT_SECRET is not set (generate one: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    elif secret.strip().lower() in DEMO_SECRETS or len(set(secret)) < 8:
        problems.append("JWT_SECRET is a demo or trivial value")
    elif len(secret.encode()) < MIN_SECRET_BYTES:
        problems.append(f"JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes")
    if settings.admin_password is None and settings.admin_password_hash is None:
        problems.append("ADMIN_PASSWORD or ADMIN_PASSWORD_HASH must be set (no demo admin in production)")
    elif settings.admin_password is not None and settings.admin_password.get_secret_value() == DEMO_ADMIN_PASSWORD:
        problems.append("ADMIN_PASSWORD is the demo password")
    elif settings.admin_password_hash is not None and _hash_is_demo(settings.admin_password_hash.get_secret_value()):
        problems.append("ADMIN_PASSWORD_HASH is a hash of the demo password")
    return problems


def _hash_is_demo(password_hash: str) -> bool:
    return verify_password(DEMO_ADMIN_PASSWORD, password_hash)[0]
