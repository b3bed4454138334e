"""Authentication: tokens, every way a token must fail, roles, revocation, throttling, and every
place a username enters; each test runs on both users-DB backends (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
import stat
import time
from pathlib import Path
from urllib.parse import quote

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pwdlib.hashers.bcrypt import BcryptHasher
from sqlalchemy import text

from api.core.security import REQUIRED_CLAIMS
from tests.api.conftest import ADMIN, create_user, login, started_apps

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


@pytest.fixture
def app_factory(tmp_path, database_url):
    """Every test here runs on SQLite and on PostgreSQL (the `database_url` parameter)."""
    yield from started_apps(tmp_path, database_url=database_url)


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
    with client.app.state.services.database.engine.connect() as connection:
        stored = connection.execute(text("select password_hash from users where username='admin'")).scalar_one()
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


# --- every place a username enters is checked before the database (PostgreSQL refuses NUL bytes
# and names over the column's length with an error; SQLite answers "no row")

BAD_NAMES = ["ab\x00cd", "admin\x00", "a" * 65, "admin\n", "ad min", ""]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_login_with_a_name_no_user_can_have_is_the_unknown_user_401(client, name):
    unknown = client.post("/auth/token", data={"username": "nobody-here", "password": "x"})
    response = client.post("/auth/token", data={"username": name, "password": ADMIN[1]})
    if name == "":  # the form itself requires a username
        assert response.status_code == 422
        return
    assert response.status_code == 401 and response.json() == unknown.json()  # says nothing about why


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if n], ids=repr)
@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_username_paths_with_a_name_no_user_can_have_are_404(client, method, name):
    admin = login(client)
    body = {"disabled": True} if method == "PATCH" else None
    response = client.request(method, f"/users/{quote(name, safe='')}", json=body, headers=admin)
    assert response.status_code == 404, response.text
    assert client.get("/users", headers=admin).json()[0]["disabled"] is False  # nothing changed


def test_user_creation_refuses_bad_names_and_stores_any_password(client):
    admin = login(client)
    for name in BAD_NAMES:
        response = client.post("/users", json={"username": name, "password": "long-enough-1"}, headers=admin)
        assert response.status_code == 422, (name, response.text)
    created = client.post("/users", json={"username": "nul", "password": "with\x00nul-byte"}, headers=admin)
    assert created.status_code == 201, created.text  # a password is hashed, never stored as text
    login(client, "nul", "with\x00nul-byte")


def test_password_change_with_nul_bytes_answers_like_any_wrong_or_new_password(client):
    admin = login(client)
    user = create_user(client, admin, "olga")
    wrong = client.post(
        "/users/me/password", json={"current_password": "olga\x00password", "new_password": "new-pass-1"}, headers=user
    )
    assert wrong.status_code == 400, wrong.text
    changed = client.post(
        "/users/me/password", json={"current_password": "olga-password", "new_password": "new\x00pass-1"}, headers=user
    )
    assert changed.status_code == 200, changed.text
    login(client, "olga", "new\x00pass-1")
    reset = client.patch("/users/olga", json={"password": "reset\x00pass-1"}, headers=admin)
    assert reset.status_code == 200, reset.text


def test_token_whose_subject_no_user_can_have_is_401(client, tmp_path):
    token = jwt.encode(claims(sub="ad\x00min"), secret_of(tmp_path), "HS256")
    assert client.get("/users/me", headers=bearer(token)).status_code == 401


def test_concurrent_creations_of_one_user_give_one_201_and_409s_never_a_500(client):
    """Check-then-insert races: the unique index decides, the loser gets the same 409 as a late caller."""
    from concurrent.futures import ThreadPoolExecutor

    admin = login(client)

    def create(_: int) -> int:
        body = {"username": "twin", "password": "long-enough-1"}
        return client.post("/users", json=body, headers=admin).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(create, range(8)))
    assert statuses == [201] + [409] * 7, statuses
