"""Fixtures of the Prometheus suite: the API test helpers (real uvicorn, the real trained champion)."""

from tests.api.conftest import api_server, champion_bundle  # noqa: F401 - fixtures used by this suite
