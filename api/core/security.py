"""Passwords (pwdlib: argon2id, bcrypt accepted for seed-style hashes), JWTs (PyJWT, HS256 pinned),
the JWT secret, and the start-up checks: a weak JWT secret is refused in every mode (compose runs
local mode by default, and a guessable secret lets anyone mint an admin token); demo passwords are
refused in production, checked on what is actually used (the hash when one is given, the stored
admin rows, the API's Airflow login). Checking a hash against the demo list costs one argon2 check
per demo password (0.76 s each for the argon2 hash of a login, 1.1 s for a cost-12 bcrypt one,
measured on the loaded 2-core machine), paid once at start-up in production only.

A token's verified claims are kept by token string (`VerifiedTokens`, bounded LRU): PyJWT's
decode (signature, claims) costs 60-200 us per request on the 2-core machine, a repeated token's
look-up about 1 us; the expiry is checked again on every use, and revocation is checked after
this, per request, as before (api.deps.authenticated)."""

from __future__ import annotations

import itertools
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import jwt
from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from api.core.config import DEMO_ADMIN_PASSWORD, DEMO_AIRFLOW_PASSWORD, Settings

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("exp", "iat", "sub", "role", "ver")
MIN_SECRET_BYTES = 32  # JWT secrets: HS256 wants at least its 256-bit output size
# Words of the values people copy from examples: a secret containing one is refused. Six letters or
# more, so a random secret contains one by chance with probability < 1e-7.
PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me", "secret", "example", "password")
MIN_DISTINCT_CHARACTERS = 8  # 32 random hex digits have fewer with probability ~3e-6
GENERATE_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'  # noqa: S105 - a command
# Passwords an admin or Airflow login must not have outside a demo (what examples and defaults use).
DEMO_PASSWORDS = (DEMO_ADMIN_PASSWORD, DEMO_AIRFLOW_PASSWORD, "password", "change-me", "changeme")

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


class VerifiedTokens:
    """Claims of tokens that passed `decode_access_token`, by (secret, token): a token seen again
    skips PyJWT (the same bytes under the same secret verify the same way), never the expiry,
    which is compared with the clock on every use. At most `max_entries`, least recently used
    out first; only verified tokens enter, so invalid ones cannot fill it."""

    MAX_ENTRIES = 4096  # active sessions of one replica; ~1.5 MB when full

    def __init__(self, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._claims: OrderedDict[tuple[str, str], TokenClaims] = OrderedDict()
        self._lock = threading.Lock()  # account routes (plain `def`) resolve tokens on worker threads

    def __len__(self) -> int:
        return len(self._claims)

    def claims(self, token: str, secret: str) -> TokenClaims:
        """The token's claims, verified once; InvalidTokenError as `decode_access_token` raises it."""
        key = (secret, token)
        with self._lock:
            claims = self._claims.get(key)
            if claims is not None:
                self._claims.move_to_end(key)
        if claims is None:
            claims = decode_access_token(token, secret)
            with self._lock:
                self._claims[key] = claims
                while len(self._claims) > self.max_entries:
                    self._claims.popitem(last=False)
        elif claims.expires_at <= self._clock():  # PyJWT's rule: expired once exp <= now
            with self._lock:
                self._claims.pop(key, None)
            raise InvalidTokenError("token expired")
        return claims


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
    if weak_secret_reason(secret) is not None:
        raise StartupRefusedError(
            f"{path} holds no usable JWT secret ({weak_secret_reason(secret)}): delete it to generate a new one"
        )
    return secret


class StartupRefusedError(Exception):
    """A check at start-up that must stop the API: the message says what to change (no traceback)."""


def weak_secret_reason(secret: str) -> str | None:
    """Why `secret` is guessable (None when it is fine): a demo value, too short, or low-entropy."""
    folded = secret.strip().lower()
    if any(word in folded for word in PLACEHOLDER_WORDS):
        return "is a demo or placeholder value"
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return f"is shorter than {MIN_SECRET_BYTES} bytes"
    if len(set(secret)) < MIN_DISTINCT_CHARACTERS:
        return f"is low-entropy (fewer than {MIN_DISTINCT_CHARACTERS} distinct characters)"
    if _is_periodic(secret):
        return "is low-entropy (a repeated pattern)"
    steps = sum(abs(ord(b) - ord(a)) <= 1 for a, b in itertools.pairwise(secret))
    if steps * 2 > len(secret) - 1:  # mostly runs like "abcdef" or "aaaa" (random: ~5 % of pairs)
        return "is low-entropy (a run of consecutive characters)"
    return None


def _is_periodic(text: str) -> bool:
    return any(
        text == (text[:period] * (len(text) // period + 1))[: len(text)] for period in range(1, len(text) // 2 + 1)
    )


def startup_problems(settings: Settings) -> list[str]:
    """Why the API must not start with these settings (empty when fine). Every mode: a weak
    JWT_SECRET, both ADMIN_PASSWORD and ADMIN_PASSWORD_HASH; production: demo credentials."""
    problems = []
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    reason = weak_secret_reason(secret) if secret else None
    if reason is not None:
        problems.append(f"JWT_SECRET {reason} (generate one: {GENERATE_SECRET})")
    elif not secret and settings.production:
        problems.append(f"JWT_SECRET is not set (generate one: {GENERATE_SECRET})")
    problems += _alerts_receiver_problems(settings)
    if settings.admin_password is not None and settings.admin_password_hash is not None:
        problems.append("ADMIN_PASSWORD and ADMIN_PASSWORD_HASH are both set: keep one (the hash was used)")
    if settings.production:
        problems += _production_credential_problems(settings)
    return problems


def _alerts_receiver_problems(settings: Settings) -> list[str]:
    """ALERTS_RECEIVER_TOKEN, when set, is as strong as a JWT secret in every mode (it lets a caller
    write alerts the dashboard shows); unset, the receiver refuses every caller (401), so no default ever works."""
    token = settings.alerts_receiver_token.get_secret_value() if settings.alerts_receiver_token else ""
    reason = weak_secret_reason(token) if token else None
    return [] if reason is None else [f"ALERTS_RECEIVER_TOKEN {reason} (generate one: {GENERATE_SECRET})"]


def _production_credential_problems(settings: Settings) -> list[str]:
    problems = []
    if settings.admin_password_hash is not None:
        if demo_password_of(settings.admin_password_hash.get_secret_value()) is not None:
            problems.append("ADMIN_PASSWORD_HASH is a hash of a demo password")
    elif settings.admin_password is None:
        problems.append("ADMIN_PASSWORD or ADMIN_PASSWORD_HASH must be set (no demo admin in production)")
    elif settings.admin_password.get_secret_value() in DEMO_PASSWORDS:
        problems.append("ADMIN_PASSWORD is a demo password")
    if settings.airflow_api_url is not None and settings.airflow_password.get_secret_value() in DEMO_PASSWORDS:
        problems.append("AIRFLOW_PASSWORD is a demo password (the API's Airflow login; its default is 'admin')")
    return problems


def demo_password_of(password_hash: str, candidates: Iterable[str] = DEMO_PASSWORDS) -> str | None:
    """The demo password `password_hash` verifies, None when it verifies none of them."""
    return next((password for password in candidates if verify_password(password, password_hash)[0]), None)
