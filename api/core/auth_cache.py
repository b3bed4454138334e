"""Who may use a token, so /predict neither queries the users database per request nor stops
when that database does.

The cache: writes to the users table through this process invalidate an entry at once
(SQLAlchemy flush hook in api.db.engine); writes by another replica show up within `ttl` seconds
(AUTH_CACHE_SECONDS, 0: every request asks the database). A fresh hit is one dict read and one
clock read, as before: nothing here adds a lock or a query to that path.

When an entry has expired, the database is asked on a thread of its own (`UsersDatabase`, not the
request thread pool) and the request waits at most AUTH_LOOKUP_TIMEOUT_SECONDS. If the database
fails or does not answer in time, it is marked down: requests then skip it and are served from
the last known state of their user, up to AUTH_MAX_STALE_SECONDS after that state was read
(revocations known before the outage still apply; older or unknown: 503, fail closed). A
background probe marks it up again. A frozen PostgreSQL (SIGSTOP: its kernel still accepts
connections, nothing answers) thus costs the first request after expiry one lookup timeout, the
next ones nothing (tests/security/test_users_db_outage.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.exc import SQLAlchemyError

logger = logging.getLogger("api")


@dataclass(frozen=True)
class AuthState:
    """What token validation needs to know about a user."""

    username: str
    role: str
    disabled: bool
    token_version: int


_ABSENT = object()  # cached "no such user", distinct from a cache miss


class UsersDatabaseUnavailableError(Exception):
    """The users database does not answer and no recent enough state of the user is known."""


class AuthCache:
    MAX_ENTRIES = 10_000

    def __init__(self, ttl_seconds: float, max_stale_seconds: float = 0.0):
        self.ttl = ttl_seconds
        self.max_stale = max_stale_seconds
        # username -> (fresh until, state, usable while the database is down until)
        self._entries: dict[str, tuple[float, object, float]] = {}
        self._lock = threading.Lock()

    def get(self, username: str) -> AuthState | bool | None:
        """The cached state, None for a cached unknown user, False on a miss."""
        entry = self._entries.get(username)
        if entry is None or entry[0] < time.monotonic():
            return False
        return None if entry[1] is _ABSENT else entry[1]  # type: ignore[return-value]

    def last_known(self, username: str) -> AuthState | bool | None:
        """Like `get`, for an entry read at most `max_stale` seconds ago (the database is down)."""
        entry = self._entries.get(username)
        if entry is None or entry[2] < time.monotonic():
            return False
        return None if entry[1] is _ABSENT else entry[1]  # type: ignore[return-value]

    def put(self, username: str, state: AuthState | None) -> None:
        if self.ttl <= 0 and self.max_stale <= 0:
            return
        now = time.monotonic()
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            value = _ABSENT if state is None else state
            self._entries[username] = (now + self.ttl, value, now + max(self.ttl, self.max_stale))

    def invalidate(self, username: str) -> None:
        with self._lock:
            self._entries.pop(username, None)


class UsersDatabaseMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.up = Gauge("users_database_up", "1 while the users database answers (probe or lookup)",
                        registry=registry)  # fmt: skip
        self.failures = Counter(
            "users_database_failures", "Users database probes and lookups that failed, by reason",
            ["operation", "reason"], registry=registry,
        )  # fmt: skip
        self.staleness = Gauge(
            "auth_state_staleness_seconds", "Seconds since the users database last answered (0 while it does)",
            registry=registry,
        )  # fmt: skip
        self.fallbacks = Counter(
            "auth_fallbacks", "Token checks the users database could not answer: served from the last known "
            "state (stale) or refused with 503 (refused)", ["outcome"], registry=registry,
        )  # fmt: skip


class UsersDatabase:
    """The users database as token checks and /ready see it: up or down, asked off the request pool
    with a deadline, probed in the background."""

    WORKERS = 8  # lookups of expired entries (~1 ms each when the database answers) and the probe

    def __init__(
        self,
        cache: AuthCache,
        lookup: Callable[[str], AuthState | None],
        probe: Callable[[], None],
        timeout_seconds: float,
        probe_seconds: float,
        metrics: UsersDatabaseMetrics,
    ):
        self.cache = cache
        self._lookup = lookup
        self._probe = probe
        self.timeout = timeout_seconds
        self.probe_seconds = probe_seconds
        self.metrics = metrics
        self.available = True
        self._last_answer = time.monotonic()
        # Threads of its own: a frozen server holds them until it resumes (the requests behind
        # them time out and fall back), never a thread of the request pool.
        self._executor = ThreadPoolExecutor(max_workers=self.WORKERS, thread_name_prefix="users-db")
        self._stop = threading.Event()
        self._prober = threading.Thread(target=self._probe_loop, name="users-db-probe", daemon=True)
        metrics.up.set(1)
        metrics.staleness.set_function(self.staleness)

    def start(self) -> None:
        self._prober.start()

    def stop(self) -> None:
        self._stop.set()
        if self._prober.is_alive():
            self._prober.join(timeout=self.timeout + 1)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def staleness(self) -> float:
        return 0.0 if self.available else time.monotonic() - self._last_answer

    async def auth_state(self, username: str) -> AuthState | None:
        """The user's state from the database (then cached), or the last known one while it is down."""
        if self.available:
            future = self._executor.submit(self._lookup, username)
            try:
                state = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
            except TimeoutError:
                self._failed("lookup", "timeout", None)
            except SQLAlchemyError as error:
                self._failed("lookup", "error", error)
            else:
                self._answered()
                self.cache.put(username, state)
                return state
        known = self.cache.last_known(username)
        if known is False:
            self.metrics.fallbacks.labels("refused").inc()
            raise UsersDatabaseUnavailableError
        self.metrics.fallbacks.labels("stale").inc()
        return known  # type: ignore[return-value]

    def _probe_loop(self) -> None:
        while not self._stop.wait(self.probe_seconds):
            self.probe_once()

    def probe_once(self) -> None:
        future: Future[None] = self._executor.submit(self._probe)
        try:
            future.result(timeout=self.timeout)
        except FutureTimeout:
            future.cancel()
            self._failed("probe", "timeout", None)
        except Exception as error:  # any failure means "down"; the loop goes on
            self._failed("probe", "error", error)
        else:
            self._answered()

    def _answered(self) -> None:
        self._last_answer = time.monotonic()
        if not self.available:
            logger.warning("users database answers again")
        self.available = True
        self.metrics.up.set(1)

    def _failed(self, operation: str, reason: str, error: BaseException | None) -> None:
        self.metrics.failures.labels(operation, reason).inc()
        if self.available:
            detail = getattr(error, "orig", error) if error is not None else f"no answer in {self.timeout} s"
            logger.error("users database unavailable (%s %s): %s", operation, reason, detail)
        self.available = False
        self.metrics.up.set(0)
