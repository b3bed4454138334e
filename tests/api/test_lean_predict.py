"""/predict's LeanRoute (api.routes.predict) resolves the caller and the query itself: every answer
must be the one FastAPI's own dependency resolution gives, errors included (issue #26)."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from accidents.features import SEED_EXAMPLE
from api.routes import predict
from tests.api.conftest import login

SEED = list(SEED_EXAMPLE)
CASES = {
    "no token": ("", None, {"features": SEED}),
    "not a bearer": ("", "Basic YWRtaW46YWRtaW4xMjM=", {"features": SEED}),
    "bad token": ("", "Bearer not.a.token", {"features": SEED}),
    "bad token and bad query": ("?explain=maybe", "Bearer not.a.token", {"features": SEED}),
    "bad query": ("?explain=maybe", "admin", {"features": SEED}),
    "repeated query": ("?explain=maybe&explain=true", "admin", {"features": SEED}),
    "empty query value": ("?explain=", "admin", {"features": SEED}),
    "other query": ("?other=1", "admin", {"features": SEED}),
    "explain": ("?explain=true", "admin", {"features": SEED}),
    "explain off": ("?explain=0", "admin", {"features": SEED}),
    "bad body": ("", "admin", {"features": SEED[:3]}),
    "bad body and bad query": ("?explain=maybe", "admin", {"features": SEED[:3]}),
    "valid": ("", "admin", {"features": SEED}),
}
VARYING_HEADERS = {"x-request-id", "date"}


def answers(client) -> dict[str, tuple[int, object, dict[str, str]]]:
    admin = login(client)["Authorization"]
    seen = {}
    for name, (query, authorization, body) in CASES.items():
        sent = admin if authorization == "admin" else authorization
        headers = {} if sent is None else {"Authorization": sent}
        response = client.post(f"/predict{query}", json=body, headers=headers)
        kept = {key: value for key, value in response.headers.items() if key not in VARYING_HEADERS}
        seen[name] = (response.status_code, response.json(), kept)
    return seen


def test_lean_route_answers_as_fastapi_resolution_does(app_factory, tmp_path, monkeypatch):
    lean = answers(app_factory(tmp_path / "lean"))
    monkeypatch.setattr(predict.LeanRoute, "get_route_handler", APIRoute.get_route_handler)
    resolved = answers(app_factory(tmp_path / "resolved"))
    assert {status for status, _, _ in lean.values()} >= {401, 422, 503}
    for name in CASES:
        assert lean[name] == resolved[name], name


def test_lean_route_refuses_an_endpoint_it_cannot_resolve():
    async def endpoint(request, caller, services, session) -> None: ...

    with pytest.raises(TypeError, match="cannot resolve"):
        predict.LeanRoute("/x", endpoint, methods=["POST"]).get_route_handler()
