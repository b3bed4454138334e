"""Layout rules of the service a newcomer relies on: services read only through `api.deps` (the
lifespan in `api.main` is the one writer of `app.state`), settings import nothing from the app,
routes share nothing with each other. (No import cycle anywhere: tests/test_layout.py.)"""

from __future__ import annotations

from tests.support.imports import PACKAGES, REPO, import_graph

PACKAGE = PACKAGES["api"]


def test_settings_import_nothing_from_the_app():
    imported = import_graph()["api.core.config"]
    assert "accidents.config" in imported  # the graph sees real edges
    assert {name for name in imported if name.split(".")[0] == "api"} <= {"api", "api.core"}


def test_routes_import_no_other_route():
    """What two routes share lives in the package of its concern (api/monitoring, api/serving), not
    in a route file the other one imports."""
    graph = import_graph()
    routes = {name for name in graph if name.startswith("api.routes.")}
    assert "api.deps" in graph["api.routes.predict"]  # the graph sees real edges
    assert {route: graph[route] & routes for route in routes if graph[route] & routes} == {}


def test_app_state_is_touched_only_by_the_lifespan_and_deps():
    users = sorted(
        str(path.relative_to(REPO)) for path in PACKAGE.rglob("*.py") if "app.state" in path.read_text(encoding="utf-8")
    )
    assert users == ["api/deps.py", "api/main.py"]
    main = (PACKAGE / "main.py").read_text(encoding="utf-8")
    assert main.count("app.state") == 1 and "app.state.services = services" in main
