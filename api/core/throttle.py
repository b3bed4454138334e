"""Login throttling: failed attempts counted per (username, client), per client and per username.

A sliding window in memory (per API process). A client guessing one account is blocked after
LOGIN_MAX_FAILURES; a client spraying many usernames after LOGIN_MAX_FAILURES_PER_CLIENT. A
username attacked from many clients (LOGIN_MAX_FAILURES_PER_USERNAME failures in the window)
blocks only the clients that failed on it recently: a client with no recent failure on that
username (its owner, elsewhere) still logs in, so no one can keep an account locked by failing
from many addresses (once the username is under attack, each address gets one guess per
window). A success clears the (username, client) pair.

Password checks are bounded too: each argon2id check holds 64 MiB (m=65536, t=3, p=4; 0.5 s on
the 2-core test box), and the login route runs in a 40-thread pool, so 32 wrong logins at once
took the process to 1,143 MiB peak RSS (the pod's limit is 512 Mi). At most
LOGIN_MAX_CONCURRENT_CHECKS run at once; a login beyond is refused at once (429, Retry-After)
rather than queued, so a storm costs neither memory nor threads (tests/api/test_login_limits.py).

"client" is the address uvicorn reports: the peer's, or the one a trusted proxy appended to
X-Forwarded-For (FORWARDED_ALLOW_IPS names those proxies; none by default in the image).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class LoginThrottle:
    def __init__(
        self, per_pair: int, per_client: int, per_username: int, window_seconds: float, concurrent_checks: int = 2
    ):
        self.window = window_seconds
        self._limits = {"pair": per_pair, "client": per_client, "user": per_username}
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()
        self._checks = threading.BoundedSemaphore(concurrent_checks)

    @contextmanager
    def check_slot(self) -> Iterator[bool]:
        """One of the password-check slots for the body (True), or False at once when all are taken."""
        taken = self._checks.acquire(blocking=False)
        try:
            yield taken
        finally:
            if taken:
                self._checks.release()

    def retry_after(self, username: str, client: str) -> int:
        """Seconds until this attempt may be tried (0: allowed now)."""
        now = time.monotonic()
        with self._lock:
            pair, per_client, per_username = self._keys(username, client)
            waits = [self._wait(*pair, now), self._wait(*per_client, now)]
            if self._wait(pair[0], 1, now):  # this client failed on this username in the window
                waits.append(self._wait(*per_username, now))
        return max(waits)

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
