"""The API's documentation pages, /docs (Swagger UI) and /redoc, served with no external URL.

FastAPI's own pages load their script and style from a CDN and so are blank offline. These load
them from this app, out of the ``fastapi-offline`` package's copies, and ReDoc without Google
Fonts. The app turns FastAPI's own pages off (``docs_url=None, redoc_url=None``).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
}
ASSET_PATH = "/static/api-docs"
FAVICON = "/static/favicon.svg"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def read_swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI: try the API from the browser."""
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} API",
        swagger_js_url=f"{ASSET_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSET_PATH}/swagger-ui.css",
        swagger_favicon_url=FAVICON,
    )


@router.get("/redoc")
def read_redoc(request: Request) -> HTMLResponse:
    """ReDoc: the API reference as one readable page."""
    return get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} API reference",
        redoc_js_url=f"{ASSET_PATH}/redoc.standalone.js",
        redoc_favicon_url=FAVICON,
        with_google_fonts=False,
    )


@router.get(f"{ASSET_PATH}/{{name}}")
def read_asset(name: str) -> FileResponse:
    """One of the documentation pages' scripts or stylesheets."""
    if name not in ASSET_TYPES:
        raise HTTPException(404, "Not Found")
    headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
    return FileResponse(ASSETS / name, media_type=ASSET_TYPES[name], headers=headers)


def _openapi_url(request: Request) -> str:
    return str(request.app.openapi_url or "/openapi.json")
