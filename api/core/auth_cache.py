"""A short-lived cache of who may use a token, so /predict does not query the DB per request.

Writes to the users table through this process invalidate the entry at once (SQLAlchemy
flush hook in api.db.engine); writes by another replica show up within `ttl` seconds
(AUTH_CACHE_SECONDS, 0 disables the cache).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class AuthState:
    """What token validation needs to know about a user."""

    username: str
    role: str
    disabled: bool
    token_version: int


_ABSENT = object()  # cached "no such user", distinct from a cache miss


class AuthCache:
    MAX_ENTRIES = 10_000

    def __init__(self, ttl_seconds: float):
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def get(self, username: str) -> AuthState | bool | None:
        """The cached state, None for a cached unknown user, False on a miss."""
        entry = self._entries.get(username)
        if entry is None or entry[0] < time.monotonic():
            return False
        return None if entry[1] is _ABSENT else entry[1]  # type: ignore[return-value]

    def put(self, username: str, state: AuthState | None) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[username] = (time.monotonic() + self.ttl, _ABSENT if state is None else state)

    def invalidate(self, username: str) -> None:
        with self._lock:
            self._entries.pop(username, None)
