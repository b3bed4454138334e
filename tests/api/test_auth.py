"""Authentication: tokens, every way a token must fail, roles, revocation, throttling."""

from __future__ import annotations

import base64
import json
import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pwdlib.hashers.bcrypt import BcryptHasher
from sqlalchemy import create_engine, text

from api.core.security import REQUIRED_CLAIMS
from tests.api.conftest import ADMIN, create_user, login

PROTECTED = [("GET", "/users/me"), ("POST", "/predict"), ("GET", "/model"), ("POST", "/retrain"), ("GET", "/users")]
ADMIN_ONLY = [
    ("GET", "/users"),
    ("POST", "/users"),
    ("PATCH", "/users/admin"),
    ("DELETE", "/users/admin"),
    ("POST", "/retrain"),
    ("GET", "/retrain/local-20250101T000000-00000000"),
    ("POST", "/model/reload"),
]


def secret_of(tmp_path: Path) -> str:
    return (tmp_path / "project" / "state" / "jwt_secret").read_text().strip()


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    return {"sub": "admin", "role": "admin", "ver": 0, "iat": now, "exp": now + 600, **overrides}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_returns_a_signed_hs256_token(client, tmp_path):
    response = client.post("/auth/token", data={"username": "admin", "password": "admin123"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 30 * 60
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"
    decoded = jwt.decode(body["access_token"], secret_of(tmp_path), algorithms=["HS256"])
    assert set(REQUIRED_CLAIMS) <= set(decoded) and decoded["sub"] == "admin" and decoded["role"] == "admin"
    assert decoded["exp"] - decoded["iat"] == 30 * 60
    assert client.get("/users/me", headers=bearer(body["access_token"])).json()["role"] == "admin"


def test_generated_secret_is_private_and_reused(app_factory, tmp_path):
    first = app_factory()
    headers = login(first)
    path = tmp_path / "project" / "state" / "jwt_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_text().strip()) >= 32
    second = app_factory()  # same project: same secret, the first app's token works
    assert second.get("/users/me", headers=headers).status_code == 200


@pytest.mark.parametrize("password", ["wrong", "", "ADMIN123"])
def test_wrong_password_is_401(client, password):
    response = client.post("/auth/token", data={"username": "admin", "password": password})
    assert response.status_code in (401, 422)
    assert "access_token" not in response.text


def test_unknown_user_is_401(client):
    assert client.post("/auth/token", data={"username": "nobody", "password": "x"}).status_code == 401


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_no_token_is_401(client, method, path):
    response = client.request(method, path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Bearer abc", "Bearer a.b.c", "Bearer ....", "Basic YWRtaW46YWRtaW4xMjM=", "bearer x y"],
)
def test_malformed_token_is_401(client, authorization):
    assert client.get("/users/me", headers={"Authorization": authorization}).status_code == 401


def test_expired_token_is_401(client, tmp_path):
    token = jwt.encode(claims(iat=int(time.time()) - 3600, exp=int(time.time()) - 60), secret_of(tmp_path), "HS256")
    response = client.get("/users/me", headers=bearer(token))
    assert response.status_code == 401 and "expired" in response.json()["detail"]


def test_bad_signature_is_401(client):
    token = jwt.encode(claims(), "another-secret-that-is-long-enough-for-hs256!!", "HS256")
    assert client.get("/users/me", headers=bearer(token)).status_code == 401


def test_alg_none_is_401(client):
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    for alg in ("none", "None", "NONE"):
        token = f"{part({'alg': alg, 'typ': 'JWT'})}.{part(claims())}."
        assert client.get("/users/me", headers=bearer(token)).status_code == 401


def test_hs512_with_the_right_secret_is_401(client, tmp_path):
    token = jwt.encode(claims(), secret_of(tmp_path), "HS512")
    assert client.get("/users/me", headers=bearer(token)).status_code == 401


def test_rs256_substitution_is_401(client):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), key, "RS256")
    assert client.get("/users/me", headers=bearer(token)).status_code == 401


@pytest.mark.parametrize("missing", REQUIRED_CLAIMS)
def test_token_missing_a_claim_is_401(client, tmp_path, missing):
    payload = claims()
    del payload[missing]
    token = jwt.encode(payload, secret_of(tmp_path), "HS256")
    assert client.get("/users/me", headers=bearer(token)).status_code == 401


def test_token_for_unknown_user_is_401(client, tmp_path):
    token = jwt.encode(claims(sub="ghost"), secret_of(tmp_path), "HS256")
    assert client.get("/users/me", headers=bearer(token)).status_code == 401


@pytest.mark.parametrize(("method", "path"), ADMIN_ONLY)
def test_user_on_admin_routes_is_403(client, method, path):
    user = create_user(client, login(client), "alice")
    response = client.request(method, path, headers=user, json={} if method in ("POST", "PATCH") else None)
    assert response.status_code == 403, response.text


def test_role_claim_is_not_trusted_the_database_decides(client):
    admin = login(client)
    bob = create_user(client, admin, "bob", role="admin")
    assert client.get("/users", headers=bob).status_code == 200
    assert client.patch("/users/bob", json={"role": "user"}, headers=admin).status_code == 200
    assert client.get("/users", headers=bob).status_code == 403  # same token, still says role=admin


def test_disabled_then_deleted_user_tokens_stop_working(client):
    admin = login(client)
    carol = create_user(client, admin, "carol")
    assert client.get("/users/me", headers=carol).status_code == 200
    assert client.patch("/users/carol", json={"disabled": True}, headers=admin).json()["disabled"] is True
    assert client.get("/users/me", headers=carol).status_code == 401
    assert client.post("/auth/token", data={"username": "carol", "password": "carol-password"}).status_code == 401
    client.patch("/users/carol", json={"disabled": False}, headers=admin)
    carol = login(client, "carol", "carol-password")
    assert client.delete("/users/carol", headers=admin).status_code == 204
    assert client.get("/users/me", headers=carol).status_code == 401


def test_password_change_revokes_older_tokens(client):
    admin = login(client)
    dave = create_user(client, admin, "dave")
    body = {"current_password": "nope", "new_password": "n3w-password"}
    wrong = client.post("/users/me/password", json=body, headers=dave)
    assert wrong.status_code == 400
    changed = client.post(
        "/users/me/password", json={"current_password": "dave-password", "new_password": "n3w-password"}, headers=dave
    )
    assert changed.status_code == 200
    assert client.get("/users/me", headers=dave).status_code == 401
    fresh = login(client, "dave", "n3w-password")
    assert client.get("/users/me", headers=fresh).status_code == 200
    assert client.patch("/users/dave", json={"password": "reset-by-admin"}, headers=admin).status_code == 200
    assert client.get("/users/me", headers=fresh).status_code == 401


def test_admin_manages_users(client):
    admin = login(client)
    create_user(client, admin, "erin")
    assert client.post("/users", json={"username": "erin", "password": "whatever1"}, headers=admin).status_code == 409
    assert client.post("/users", json={"username": "x y", "password": "whatever1"}, headers=admin).status_code == 422
    assert client.post("/users", json={"username": "frank", "password": "short"}, headers=admin).status_code == 422
    names = [user["username"] for user in client.get("/users", headers=admin).json()]
    assert names == ["admin", "erin"]
    assert "argon2" not in client.get("/users", headers=admin).text and "password_hash" not in names
    assert client.patch("/users/erin", json={"role": "admin"}, headers=admin).json()["role"] == "admin"
    assert client.patch("/users/ghost", json={"role": "admin"}, headers=admin).status_code == 404
    assert client.patch("/users/erin", json={"role": "root"}, headers=admin).status_code == 422


def test_last_admin_cannot_be_removed(client):
    admin = login(client)
    assert client.patch("/users/admin", json={"role": "user"}, headers=admin).status_code == 409
    assert client.patch("/users/admin", json={"disabled": True}, headers=admin).status_code == 409
    assert client.delete("/users/admin", headers=admin).status_code == 409
    assert client.get("/users/me", headers=admin).status_code == 200


def test_seed_style_bcrypt_hash_is_accepted_and_upgraded_to_argon2(app_factory, tmp_path):
    bcrypt_hash = BcryptHasher().hash("seed-password")
    assert bcrypt_hash.startswith("$2")
    client = app_factory(admin_password_hash=bcrypt_hash)
    login(client, "admin", "seed-password")
    engine = create_engine(f"sqlite:///{tmp_path / 'project' / 'state' / 'api.db'}")
    with engine.connect() as connection:
        stored = connection.execute(text("select password_hash from users where username='admin'")).scalar_one()
    engine.dispose()
    assert stored.startswith("$argon2id$")
    login(client, "admin", "seed-password")  # the upgraded hash verifies too
    assert client.post("/auth/token", data={"username": "admin", "password": "admin123"}).status_code == 401


def test_throttling_blocks_one_pair_not_everyone(client):
    from fastapi.testclient import TestClient

    def from_ip(ip: str) -> TestClient:
        return TestClient(client.app, client=(ip, 40000))  # same running app, another client address

    attacker = from_ip("10.0.0.66")
    for _ in range(5):
        assert attacker.post("/auth/token", data={"username": "admin", "password": "guess"}).status_code == 401
    blocked = attacker.post("/auth/token", data={"username": "admin", "password": ADMIN[1]})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert "access_token" not in blocked.text
    login(from_ip("10.0.0.7"))  # the real admin elsewhere still logs in


def test_throttling_blocks_a_client_spraying_usernames(client):
    from fastapi.testclient import TestClient

    sprayer = TestClient(client.app, client=("10.0.0.99", 40000))
    for index in range(20):
        sprayer.post("/auth/token", data={"username": f"user{index}", "password": "guess"})
    assert sprayer.post("/auth/token", data={"username": "admin", "password": ADMIN[1]}).status_code == 429
    login(TestClient(client.app, client=("10.0.0.8", 40000)))


def test_another_replicas_changes_apply_within_the_auth_cache_delay(app_factory, tmp_path):
    """Two API processes on one users DB: a user disabled through one is refused by the other
    once AUTH_CACHE_SECONDS have passed (through the same process: at once, tested above)."""
    project = tmp_path / "shared-project"
    first = app_factory(project, auth_cache_seconds=0.5)
    second = app_factory(project, auth_cache_seconds=0.5)
    admin = login(first)
    create_user(first, admin, "erin")
    erin = login(second, "erin", "erin-password")
    assert second.get("/users/me", headers=erin).status_code == 200  # now cached by the second app
    assert first.patch("/users/erin", json={"disabled": True}, headers=admin).status_code == 200
    assert first.get("/users/me", headers=erin).status_code == 401
    time.sleep(0.6)
    assert second.get("/users/me", headers=erin).status_code == 401
