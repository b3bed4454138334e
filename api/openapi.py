"""What FastAPI cannot infer for the OpenAPI schema: the errors the shared dependencies answer,
the configured minimum password length, and the JSON bodies of routes with their own response class."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from api.deps import authenticated, get_session, require_admin

NEW_PASSWORD_FIELDS = {"UserCreate": "password", "UserUpdate": "password", "PasswordChange": "new_password"}


def document_errors(router: APIRouter) -> None:
    """Declare in OpenAPI the errors the shared dependencies answer, on exactly the routes using them."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        calls = set(_dependency_calls(route.dependant))
        for dependency, code, description in (
            (authenticated, 401, "not authenticated: token missing, invalid, expired or revoked"),
            (require_admin, 403, "admin role required"),
            (authenticated, 503, "users database unavailable (retry later)"),
            (get_session, 503, "users database unavailable (retry later)"),
        ):
            if dependency in calls:
                route.responses.setdefault(code, {"description": description})
        if route.body_field is not None:  # FastAPI parses the body: bytes that are not JSON/form text at all
            route.responses.setdefault(400, {"description": "request body cannot be parsed (encoding, nesting)"})
            route.responses.setdefault(413, {"description": "request body too large"})


def complete_openapi(app: FastAPI, min_length: int, routers: tuple[APIRouter, ...]) -> None:
    """What FastAPI cannot infer: the configured minimum password length (PASSWORD_MIN_LENGTH) the
    routes enforce, and the JSON body of routes that answer with their own (non-JSONResponse)
    response class, which FastAPI declares as a bare string."""
    own_json = {
        (route.path, method.lower()): route.response_model
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and route.response_model is not None and _own_json_class(route)
        for method in route.methods
    }
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema["components"]["schemas"]
            for model_name, field in NEW_PASSWORD_FIELDS.items():
                spec = components[model_name]["properties"][field]
                for option in (spec, *spec.get("anyOf", ())):
                    if option.get("type") == "string":
                        option["minLength"] = max(min_length, option.get("minLength", 0))
            for operation in (op for item in schema["paths"].values() for op in item.values()):
                # a hand-parsed body declared with a pydantic schema (/v2/predict): its models as components
                body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
                components.update(body.get("schema", {}).pop("$defs", {}))
            for (path, method), response_model in own_json.items():
                for answer in schema["paths"][path][method]["responses"].values():
                    content = answer.get("content", {}).get("application/json")
                    if content is not None and content.get("schema") == {"type": "string"}:
                        model_schema = response_model.model_json_schema(ref_template="#/components/schemas/{model}")
                        components.update(model_schema.pop("$defs", {}))
                        components[response_model.__name__] = model_schema
                        content["schema"] = {"$ref": f"#/components/schemas/{response_model.__name__}"}
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _own_json_class(route: APIRoute) -> bool:
    response_class = getattr(route.response_class, "value", route.response_class)
    return response_class.media_type == "application/json" and not issubclass(response_class, JSONResponse)


def _dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _dependency_calls(dependency)
