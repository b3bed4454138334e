"""The monitoring dashboard: `GET /dashboard`, a static page (login form, plain-JS SVG charts, no
data in it) that reads the admin-only JSON of /monitoring/* (api/routes/monitoring.py) and /model.

Every number is computed by the database or stored by a job; the API only shapes it (no pandas,
no metrics code in this process: api/serving/lean_imports.py).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import Response

router = APIRouter(tags=["monitoring"])
ASSETS = Path(__file__).resolve().parents[1] / "dashboard"
PAGES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
# The page loads only its own script and style and talks only to this API.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _asset(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


@router.get("/dashboard", response_class=Response, include_in_schema=False)
def dashboard_page() -> Response:
    """The dashboard's page (admins log in on it; it holds no data itself)."""
    return Response(_asset("index.html"), media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@router.get("/dashboard/{name}", response_class=Response, include_in_schema=False)
def dashboard_asset(name: str) -> Response:
    if name not in PAGES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such dashboard file")
    return Response(_asset(name), media_type=f"{PAGES[name]}; charset=utf-8", headers=SECURITY_HEADERS)
