"""Attack matrix: every hostile request gets its exact expected status, changes nothing, and leaks
no stack trace or internals. Complements tests/api/test_auth.py and test_predict_validation.py
(the simple cases live there); the table here is what they do not cover, plus the roles of every
route of the app: all but an explicit list of public and user routes must answer 401 without a
token and 403 to a user, so a new route, or one that forgot its admin guard, fails here.

In-process app (TestClient, the real trained model from the local copy), once on each users-DB
backend: real SQLite and a real PostgreSQL server (the production backend, where a NUL byte in a
username used to be a 500). Clients with other addresses are 127.0.0.x: the TestClient sends no
traffic, the app only sees the address.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import text

from accidents.features import FEATURE_NAMES, SEED_EXAMPLE
from api.main import create_app
from tests.api.conftest import ADMIN, create_user, login, make_settings, project_with_champion
from tests.security.conftest import assert_no_leak
from tests.support.postgres import BACKENDS, users_database

SEED = list(SEED_EXAMPLE)
MB = 1024 * 1024


@dataclass
class Arena:
    client: TestClient
    state: Path
    secret: str
    admin: dict[str, str]
    user: dict[str, str]  # "mallory", role user
    tokens: dict[str, str] = field(default_factory=dict)  # raw tokens of special users

    def db_snapshot(self) -> list[tuple]:
        """The users table, read through the app's own engine (SQLite or PostgreSQL)."""
        with self.client.app.state.services.database.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT username, password_hash, role, disabled, token_version FROM users ORDER BY username")
            )
            return [tuple(row) for row in rows]

    def retrain_runs(self) -> list[str]:
        folder = self.state / "retrain"
        return sorted(path.name for path in folder.glob("*.json")) if folder.is_dir() else []


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    return {"sub": "mallory", "role": "user", "ver": 0, "iat": now, "exp": now + 600, **overrides}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module", params=BACKENDS)
def arena(request, tmp_path_factory, champion_bundle) -> Iterator[Arena]:
    """One app per backend: every attack must leave it as it was (checked after each)."""
    tmp_path = tmp_path_factory.mktemp("arena")
    project = project_with_champion(tmp_path / "project", champion_bundle)
    settings = make_settings(
        project,
        retrain_command=f"bash -c 'touch {tmp_path}/retrain-ran'",
        database_url=users_database(request, request.param),
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield _prepare(client, project)


def _prepare(client: TestClient, project: Path) -> Arena:
    admin = login(client)
    user = create_user(client, admin, "mallory")
    arena = Arena(client, project / "state", (project / "state" / "jwt_secret").read_text().strip(), admin, user)
    # a user who is then disabled, one who then changes password, one who is then deleted
    dora = create_user(client, admin, "dora")
    assert client.patch("/users/dora", json={"disabled": True}, headers=admin).status_code == 200
    pat = create_user(client, admin, "pat")
    changed = client.post(
        "/users/me/password", json={"current_password": "pat-password", "new_password": "pat-new-password"}, headers=pat
    )
    assert changed.status_code == 200
    gone = create_user(client, admin, "gone")
    assert client.delete("/users/gone", headers=admin).status_code == 204
    arena.tokens.update(dora=dora["Authorization"][7:], pat=pat["Authorization"][7:], gone=gone["Authorization"][7:])
    return arena


def _tampered(arena: Arena) -> str:
    header, payload, signature = arena.user["Authorization"][7:].split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{b64({**data, 'sub': 'admin', 'role': 'admin'})}.{signature}"


def _public_key_as_hmac_secret(key) -> str:
    """The classic RS256 -> HS256 confusion: the server's public key used as an HMAC secret."""
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    import hmac

    header = b64({"alg": "HS256", "typ": "JWT"})
    payload = b64(claims(sub="admin", role="admin"))
    signature = hmac.new(public, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def nested(depth: int) -> str:
    return '{"features": ' + "[" * depth + "]" * depth + "}"


def predict_body(name: str, literal: str) -> str:
    row = [json.dumps(value) for value in SEED]
    row[FEATURE_NAMES.index(name)] = literal
    return '{"features": [' + ", ".join(row) + "]}"


Request = Callable[[Arena, Any], Any]  # (arena, rsa key) -> response

JSON = {"Content-Type": "application/json"}


def get_me(token: Callable[[Arena, Any], str]) -> Request:
    return lambda a, key: a.client.get("/users/me", headers=bearer(token(a, key)))


def post_raw(path: str, body: str | bytes, content_type: str, as_admin: bool = False) -> Request:
    def call(a: Arena, _key):
        headers = {**(a.admin if as_admin else a.user), "Content-Type": content_type}
        return a.client.post(path, content=body, headers=headers)

    return call


def predict_raw(body: str | bytes, content_type: str = "application/json", as_admin: bool = False) -> Request:
    return post_raw("/predict", body, content_type, as_admin)


_LOGIN_CLIENTS = iter(range(100, 250))


def login_as(username: str, password: str) -> Request:
    client_ip = f"127.0.0.{next(_LOGIN_CLIENTS)}"  # one client per row: the rows do not throttle each other

    def call(a: Arena, _key):
        attacker = TestClient(a.client.app, client=(client_ip, 40000), raise_server_exceptions=False)
        return attacker.post("/auth/token", data={"username": username, "password": password})

    return call


SQLISH = [
    "admin' OR '1'='1' --",
    "admin'--",
    "' UNION SELECT username, password_hash FROM users --",
    '"; DROP TABLE users; --',
]

# (name, request, exact expected status)
# fmt: off
MATRIX: list[tuple[str, Request, int]] = [
    # --- tokens
    ("missing token on /predict", lambda a, k: a.client.post("/predict", json={"features": SEED}), 401),
    (
        "expired token",
        get_me(
            lambda a, k: jwt.encode(claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600), a.secret, "HS256")
        ),
        401,
    ),
    (
        "iat in the future",
        get_me(
            lambda a, k: jwt.encode(claims(iat=int(time.time()) + 3600, exp=int(time.time()) + 7200), a.secret, "HS256")
        ),
        401,
    ),
    ("tampered payload (user -> admin)", get_me(lambda a, k: _tampered(a)), 401),
    (
        "alg none, role admin",
        get_me(lambda a, k: f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(sub='admin'))}."),
        401,
    ),
    ("HS512 with the real secret", get_me(lambda a, k: jwt.encode(claims(), a.secret, "HS512")), 401),
    ("RS256 signed with an attacker key", get_me(lambda a, k: jwt.encode(claims(sub="admin"), k, "RS256")), 401),
    ("HS256 keyed with an RSA public key", get_me(lambda a, k: _public_key_as_hmac_secret(k)), 401),
    ("wrong key", get_me(lambda a, k: jwt.encode(claims(), "x" * 64, "HS256")), 401),
    ("ver claim as a string", get_me(lambda a, k: jwt.encode(claims(ver="0"), a.secret, "HS256")), 401),
    ("sub claim not a string", get_me(lambda a, k: jwt.encode(claims(sub=["admin"]), a.secret, "HS256")), 401),
    ("disabled user's valid token", get_me(lambda a, k: a.tokens["dora"]), 401),
    ("token issued before the password change", get_me(lambda a, k: a.tokens["pat"]), 401),
    ("deleted user's token", get_me(lambda a, k: a.tokens["gone"]), 401),
    ("64 KB token", get_me(lambda a, k: "a" * 65536), 401),
    (
        "token in the query string",
        lambda a, k: a.client.get(f"/users/me?access_token={a.admin['Authorization'][7:]}"),
        401,
    ),
    ("disabled user logs in", login_as("dora", "dora-password"), 401),
    ("old password after the change", login_as("pat", "pat-password"), 401),
    # --- usernames
    *[(f"SQL-ish login {i}", login_as(name, "x' OR '1'='1"), 401) for i, name in enumerate(SQLISH)],
    *[
        (
            f"SQL-ish user creation {i}",
            lambda a, k, n=name: a.client.post(
                "/users", json={"username": n, "password": "long-enough-1"}, headers=a.admin
            ),
            422,
        )
        for i, name in enumerate(SQLISH)
    ],
    *[
        (
            f"SQL-ish path {i}",
            lambda a, k, n=name: a.client.patch(f"/users/{n}", json={"disabled": True}, headers=a.admin),
            404,
        )
        for i, name in enumerate(SQLISH)
    ],
    ("NUL byte in username", login_as("admin\x00", ADMIN[1]), 401),
    ("NUL byte inside a username (the issue's curl)", login_as("ab\x00cd", "x"), 401),
    ("NUL byte in a PATCH /users path",
     lambda a, k: a.client.patch("/users/a%00b", json={"disabled": True}, headers=a.admin), 404),
    ("NUL byte in a DELETE /users path", lambda a, k: a.client.delete("/users/a%00b", headers=a.admin), 404),
    ("65-character username path (over the column)",
     lambda a, k: a.client.patch(f"/users/{'u' * 65}", json={"disabled": True}, headers=a.admin), 404),
    ("NUL byte in the current password",
     post_raw("/users/me/password", '{"current_password": "a\\u0000b", "new_password": "long-enough-1"}',
              "application/json"), 400),
    ("unicode look-alike admin", login_as("аdmin", ADMIN[1]), 401),
    ("1 MB username", login_as("a" * (MB - 100), "x"), 401),
    ("username over the form field limit", login_as("a" * (MB + 100), "x"), 400),
    ("1 MB password", login_as("admin", "p" * (MB - 100)), 401),
    (
        "300-character username in a user creation",
        lambda a, k: a.client.post(
            "/users", json={"username": "u" * 300, "password": "long-enough-1"}, headers=a.admin
        ),
        422,
    ),
    # --- bodies
    ("3 MB body on /predict", predict_raw(b'{"features": [' + b"1," * (3 * MB // 2) + b"1]}"), 413),
    (
        "3 MB body on /users",
        lambda a, k: a.client.post(
            "/users", content=b'{"username": "' + b"a" * 3 * MB + b'"}', headers={**a.admin, **JSON}
        ),
        413,
    ),
    (
        "20,000-row batch under the body limit",
        predict_raw(json.dumps({"instances": [SEED] * 20000}).replace(" ", "")),
        422,
    ),
    ("deeply nested JSON on /predict", predict_raw(nested(100_000)), 422),
    (
        "deeply nested JSON on /users",
        lambda a, k: a.client.post("/users", content=nested(100_000), headers={**a.admin, **JSON}),
        400,
    ),
    (
        "deeply nested JSON on PATCH /users",
        lambda a, k: a.client.patch(
            "/users/mallory", content='{"role": ' + "[" * 50_000 + "]" * 50_000 + "}", headers={**a.admin, **JSON}
        ),
        400,
    ),
    ("NaN in features", predict_raw(predict_body("lat", "NaN")), 422),
    ("Infinity in a batch row", predict_raw('{"instances": [' + predict_body("long", "Infinity")[13:-1] + "]}"), 422),
    ("1e308 latitude", predict_raw(predict_body("lat", "1e308")), 422),
    ("1e308 victim age (nullable)", predict_raw(predict_body("victim_age", "1e308")), 422),
    ("-1e308 speed limit", predict_raw(predict_body("vma", "-1e308")), 422),
    ("2**64 commune code", predict_raw(predict_body("com", str(2**64))), 422),
    ("10**400 integer", predict_raw(predict_body("dep", "1" + "0" * 400)), 422),
    ("denormal 5e-324 latitude (valid)", predict_raw(predict_body("lat", "5e-324")), 200),
    ("negative zero longitude (valid)", predict_raw(predict_body("long", "-0.0")), 200),
    ("duplicate keys in a named row", predict_raw('{"features": [1], "features": ' + json.dumps(SEED) + "}"), 200),
    # --- content types
    ("XML on /predict", predict_raw("<features><f>10</f></features>", "application/xml"), 422),
    (
        "multipart on /predict",
        predict_raw(
            b"--x\r\nContent-Disposition: form-data; name=features\r\n\r\n1\r\n--x--\r\n",
            "multipart/form-data; boundary=x",
        ),
        422,
    ),
    ("form-encoded on POST /users",
     post_raw("/users", "username=eve&password=long-enough-1", "application/x-www-form-urlencoded", as_admin=True),
     422),
    ("text/plain on POST /users/me/password",
     post_raw("/users/me/password", '{"current_password": "mallory-password", "new_password": "hijacked-password"}',
              "text/plain"),
     422),
    (
        "JSON on /auth/token",
        lambda a, k: a.client.post("/auth/token", json={"username": "admin", "password": ADMIN[1]}),
        422,
    ),
    ("PUT on /users/me", lambda a, k: a.client.put("/users/me", json={"role": "admin"}, headers=a.user), 405),
]
# fmt: on


@pytest.mark.parametrize(("name", "request_", "expected"), MATRIX, ids=[row[0] for row in MATRIX])
def test_attack_matrix(arena, rsa_key, name, request_, expected):
    before_users, before_runs = arena.db_snapshot(), arena.retrain_runs()
    served = arena.client.app.state.services.models.current.version
    started = time.perf_counter()
    response = request_(arena, rsa_key)
    elapsed = time.perf_counter() - started
    assert response.status_code == expected, f"{name}: {response.status_code} {response.text[:300]}"
    assert_no_leak(response.text)
    assert "access_token" not in response.text
    if expected >= 400:
        assert response.json()["detail"], response.text[:300]
    assert elapsed < 10, f"{name} took {elapsed:.1f} s"
    assert arena.db_snapshot() == before_users, f"{name} changed the users table"
    assert arena.retrain_runs() == before_runs and not (arena.state.parent.parent / "retrain-ran").exists()
    assert arena.client.app.state.services.models.current.version == served
    assert arena.client.get("/users/me", headers=arena.admin).status_code == 200  # the service still answers


# Every route of the app is public, a user's, or an admin's: the first two are listed here by hand,
# every other route the app has is an admin route, so a route that forgot its guard is caught
# (discovering admin routes by their require_admin dependency never found such a route).
PUBLIC_ROUTES = {
    ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc"),
    ("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics"), ("POST", "/auth/token"),
    ("GET", "/dashboard"), ("GET", "/dashboard/{name}"),  # a static page: its data comes from admin routes
}  # fmt: skip
USER_ROUTES = {("GET", "/users/me"), ("POST", "/users/me/password"), ("POST", "/predict"), ("POST", "/v2/predict"),
               ("GET", "/model")}  # fmt: skip
# Alertmanager's: its own bearer secret (ALERTS_RECEIVER_TOKEN), no user's token opens it (tests/api/monitoring)
RECEIVER_ROUTES = {("POST", "/monitoring/alerts")}


def app_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves (HEAD: answered like its GET)."""
    return {
        (method, context.path)
        for context in iter_route_contexts(app.routes)
        for method in context.methods
        if method != "HEAD"
    }


def admin_routes(app) -> list[tuple[str, str]]:
    return sorted(app_routes(app) - PUBLIC_ROUTES - USER_ROUTES - RECEIVER_ROUTES)


def test_every_route_is_public_user_or_admin(arena):
    routes = app_routes(arena.client.app)
    listed = PUBLIC_ROUTES | USER_ROUTES | RECEIVER_ROUTES
    assert routes >= listed, listed - routes  # the lists stay current
    known_admin = {
        ("GET", "/users"), ("POST", "/users"), ("PATCH", "/users/{username}"), ("DELETE", "/users/{username}"),
        ("POST", "/model/reload"), ("POST", "/model/promote"), ("DELETE", "/model/challenger"),
        ("POST", "/retrain"), ("GET", "/retrain/{run_id}"),
        ("GET", "/monitoring/predictions"), ("GET", "/monitoring/performance"), ("GET", "/monitoring/drift"),
        ("GET", "/monitoring/shadow"), ("GET", "/monitoring/prediction-stats"), ("GET", "/monitoring/retrains"),
        ("GET", "/monitoring/estimates"),
        ("GET", "/monitoring/alerts"),
    }  # fmt: skip
    assert set(admin_routes(arena.client.app)) == known_admin


def test_every_non_public_route_is_401_without_a_token(arena):
    params = {"username": "admin", "run_id": "local-20250101T000000-00000000"}
    for method, path in sorted(app_routes(arena.client.app) - PUBLIC_ROUTES):
        response = arena.client.request(method, path.format(**params))
        assert response.status_code == 401, f"{method} {path}: {response.status_code} {response.text[:200]}"


def test_user_role_on_every_admin_route_is_403_without_side_effect(arena):
    """A well-formed, otherwise valid request on every admin route, as a regular user."""
    bodies = {
        ("POST", "/users"): {"username": "eve", "password": "long-enough-1", "role": "admin"},
        ("PATCH", "/users/{username}"): {"role": "user", "disabled": True, "password": "taken-over-1"},
    }
    params = {"username": "admin", "run_id": "local-20250101T000000-00000000"}
    routes = admin_routes(arena.client.app)
    before_users, served = arena.db_snapshot(), arena.client.app.state.services.models.current
    for method, path in routes:
        response = arena.client.request(
            method, path.format(**params), headers=arena.user, json=bodies.get((method, path))
        )
        assert response.status_code == 403, f"{method} {path}: {response.status_code} {response.text}"
        assert response.json() == {"detail": "admin role required"}
    assert arena.db_snapshot() == before_users
    assert arena.retrain_runs() == [] and arena.client.app.state.services.models.current is served
    print(f"\nuser role refused on {len(routes)} admin routes: {routes}")


def test_credential_stuffing_is_throttled_and_legitimate_users_still_log_in(arena):
    """One client replays 200 leaked (username, password) pairs, real usernames among them."""
    attacker = TestClient(arena.client.app, client=("127.0.0.66", 40000), raise_server_exceptions=False)
    leaked = [(f"victim{i}@example.org", f"Summer{i}!") for i in range(190)]
    leaked += [(name, "Password1") for name in ("admin", "mallory", "dora", "pat")] * 2 + [("admin", ADMIN[1])] * 2
    before = arena.db_snapshot()
    statuses = []
    started = time.perf_counter()
    for username, password in leaked:
        response = attacker.post("/auth/token", data={"username": username, "password": password})
        assert "access_token" not in response.text
        statuses.append(response.status_code)
    elapsed = time.perf_counter() - started
    assert statuses.count(401) == 20 and statuses.count(429) == len(leaked) - 20, statuses
    assert set(statuses[20:]) == {429}  # even the right admin password, once blocked
    blocked = attacker.post("/auth/token", data={"username": "admin", "password": ADMIN[1]})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert elapsed < 60, f"{len(leaked)} attempts took {elapsed:.1f} s"
    # legitimate users elsewhere are not affected
    for ip, (username, password) in zip(
        ("127.0.0.7", "127.0.0.8"), (ADMIN, ("mallory", "mallory-password")), strict=True
    ):
        elsewhere = TestClient(arena.client.app, client=(ip, 40000))
        assert elsewhere.post("/auth/token", data={"username": username, "password": password}).status_code == 200
    assert arena.db_snapshot() == before
    print(f"\ncredential stuffing: {len(leaked)} attempts, 20 checked, {statuses.count(429)} refused (429)")
