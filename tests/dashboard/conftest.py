"""Fixtures of the dashboard suite: the API test helpers (real uvicorn, the real trained champion)."""

from tests.api.conftest import api_server, app_factory, client  # noqa: F401 - fixtures used by this suite
