"""Verified-token cache (api.core.security.VerifiedTokens, issue #26): a token's claims are verified
once, but an expired or revoked token is refused even while its claims are cached, and the cache
never holds more than its bound."""

from __future__ import annotations

import secrets
import time

import pytest

import api.deps
from accidents.features import SEED_EXAMPLE
from api.core.security import InvalidTokenError, VerifiedTokens, create_access_token
from tests.api.conftest import create_user, login

SECRET = secrets.token_urlsafe(48)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_cached_claims_are_refused_once_the_token_expires():
    clock = Clock()
    tokens = VerifiedTokens(clock=clock)
    token = create_access_token("alice", "user", 0, SECRET, lifetime_seconds=60)
    assert tokens.claims(token, SECRET).subject == "alice"
    assert tokens.claims(token, SECRET).subject == "alice" and len(tokens) == 1  # served from the cache
    clock.now += 61
    with pytest.raises(InvalidTokenError, match="expired"):
        tokens.claims(token, SECRET)
    assert len(tokens) == 0


def test_a_cached_token_is_not_valid_under_another_secret():
    tokens = VerifiedTokens()
    token = create_access_token("alice", "user", 0, SECRET, lifetime_seconds=60)
    tokens.claims(token, SECRET)
    with pytest.raises(InvalidTokenError):
        tokens.claims(token, secrets.token_urlsafe(48))


def test_the_cache_is_bounded_and_keeps_the_most_recently_used():
    tokens = VerifiedTokens(max_entries=3)
    issued = [create_access_token(f"user{i}", "user", 0, SECRET, lifetime_seconds=60) for i in range(5)]
    for token in issued[:3]:
        tokens.claims(token, SECRET)
    tokens.claims(issued[0], SECRET)  # used again: the least recently used is now user1
    for token in issued[3:]:
        tokens.claims(token, SECRET)
    assert len(tokens) == 3
    assert {key[1] for key in tokens._claims} == {issued[0], issued[3], issued[4]}


def test_invalid_tokens_never_enter_the_cache():
    tokens = VerifiedTokens()
    for _ in range(3):
        with pytest.raises(InvalidTokenError):
            tokens.claims("not.a.token", SECRET)
    assert len(tokens) == 0


def call(client, path: str, headers: dict[str, str]):
    """An authenticated route: /users/me (200), or /predict with the seed row (503: no model)."""
    if path == "/predict":
        return client.post(path, json={"features": list(SEED_EXAMPLE)}, headers=headers)
    return client.get(path, headers=headers)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """The API's verified-token cache, on a clock the test moves."""
    clock = Clock()
    monkeypatch.setattr(api.deps, "verified_tokens", VerifiedTokens(clock=clock))
    return clock


@pytest.mark.parametrize("path", ["/users/me", "/predict"])
def test_a_revoked_token_is_refused_while_its_claims_are_cached(client, clock, path):
    """/predict resolves its caller through api.routes.predict.LeanRoute; without a model it
    answers 503 once the caller is accepted."""
    admin = login(client)
    erin = create_user(client, admin, "erin")
    assert call(client, path, erin).status_code == (503 if path == "/predict" else 200)
    assert len(api.deps.verified_tokens) >= 1  # the claims are cached
    assert client.patch("/users/erin", json={"password": "reset-by-admin"}, headers=admin).status_code == 200
    refused = call(client, path, erin)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


@pytest.mark.parametrize("path", ["/users/me", "/predict"])
def test_an_expired_token_is_refused_while_its_claims_are_cached(client, clock, path):
    headers = login(client)
    assert call(client, path, headers).status_code == (503 if path == "/predict" else 200)
    assert len(api.deps.verified_tokens) == 1
    clock.now += 24 * 3600  # past any token lifetime
    refused = call(client, path, headers)
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]
