"""Login throttling: failed attempts counted per (username, client), per client and per username.

A sliding window in memory (per API process). A client guessing one account is blocked after
LOGIN_MAX_FAILURES; a client spraying many usernames after LOGIN_MAX_FAILURES_PER_CLIENT; a
username attacked from many clients after LOGIN_MAX_FAILURES_PER_USERNAME. Everybody else keeps
logging in. A success clears the (username, client) pair.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque


class LoginThrottle:
    def __init__(self, per_pair: int, per_client: int, per_username: int, window_seconds: float):
        self.window = window_seconds
        self._limits = {"pair": per_pair, "client": per_client, "user": per_username}
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, username: str, client: str) -> int:
        """Seconds until this attempt may be tried (0: allowed now)."""
        now = time.monotonic()
        with self._lock:
            waits = [self._wait(key, limit, now) for key, limit in self._keys(username, client) if limit is not None]
        return max(waits, default=0)

    def failure(self, username: str, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key, _ in self._keys(username, client):
                self._failures.setdefault(key, deque()).append(now)
            self._prune(now)

    def success(self, username: str, client: str) -> None:
        with self._lock:
            self._failures.pop(("pair", f"{username}\0{client}"), None)

    def _keys(self, username: str, client: str) -> list[tuple[tuple[str, str], int]]:
        username = _bounded(username)
        return [
            (("pair", f"{username}\0{client}"), self._limits["pair"]),
            (("client", client), self._limits["client"]),
            (("user", username), self._limits["user"]),
        ]

    def _wait(self, key: tuple[str, str], limit: int, now: float) -> int:
        attempts = self._failures.get(key)
        if not attempts:
            return 0
        while attempts and attempts[0] <= now - self.window:
            attempts.popleft()
        if len(attempts) < limit:
            return 0
        return max(1, math.ceil(attempts[-limit] + self.window - now))

    def _prune(self, now: float) -> None:
        """Bound memory: forget keys whose failures all left the window."""
        if len(self._failures) < 10_000:
            return
        stale = [key for key, attempts in self._failures.items() if not attempts or attempts[-1] <= now - self.window]
        for key in stale:
            del self._failures[key]


MAX_KEY_CHARS = 128


def _bounded(username: str) -> str:
    """Usernames are attacker-chosen (up to the form's 1 MB field limit): keep memory per key small."""
    if len(username) <= MAX_KEY_CHARS:
        return username
    return "sha256:" + hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()
