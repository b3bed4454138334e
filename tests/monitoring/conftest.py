"""Fixtures of the monitoring suite: the API test helpers (real uvicorn, the real trained champion)."""

from tests.api.conftest import api_server  # noqa: F401 - a fixture used by this suite
