"""The OpenAPI document and its viewers (/docs, /redoc), as routes of our own so that the
API token guards them like the endpoints they describe (FastAPI's built-in ones take no
dependencies).

The viewers work without internet: their scripts, styles and favicon come from the
`fastapi-offline` package's static folder, served by this process at ASSETS_URL (FastAPI's
defaults load them from a CDN, which leaves a blank page offline). The assets are open: they
are third-party files with no data, and a browser's <script> cannot send a bearer token.
One address in them would still leave the machine: ReDoc's script loads the logo of its
"API docs by Redocly" link from Redocly's CDN, whatever its options say; it is served with
that address replaced by an inline transparent image (the link and its text stay)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

OPENAPI_URL = "/openapi.json"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
ASSETS_URL = "/static/docs"
# Installed with the service (pyproject.toml), never copied into the repo.
ASSETS_FOLDER = Path(str(files("fastapi_offline") / "static"))

REDOC_SCRIPT = "redoc.standalone.js"
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
TRANSPARENT_PIXEL = (
    b"data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
)

router = APIRouter(include_in_schema=False)


@cache
def _offline_redoc() -> bytes:
    return (ASSETS_FOLDER / REDOC_SCRIPT).read_bytes().replace(REDOC_LOGO, TRANSPARENT_PIXEL)


class _OfflineAssets(StaticFiles):
    """The package's files as they are, but for ReDoc's script (see the module docstring)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if path == REDOC_SCRIPT and response.status_code == 200:
            return Response(_offline_redoc(), media_type=response.media_type)
        return response


def assets() -> StaticFiles:
    """The viewers' scripts, styles and favicon, for the app to mount at ASSETS_URL."""
    return _OfflineAssets(directory=ASSETS_FOLDER, check_dir=True)


def _root(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _asset(request: Request, name: str) -> str:
    return f"{_root(request)}{ASSETS_URL}/{name}"


@router.get(OPENAPI_URL)
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=_root(request) + OPENAPI_URL,
        title=f"{request.app.title} - Swagger UI",
        oauth2_redirect_url=_root(request) + OAUTH2_REDIRECT_URL,
        swagger_js_url=_asset(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset(request, "swagger-ui.css"),
        swagger_favicon_url=_asset(request, "favicon.png"),
    )


@router.get(OAUTH2_REDIRECT_URL)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=_root(request) + OPENAPI_URL,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=_asset(request, REDOC_SCRIPT),
        redoc_favicon_url=_asset(request, "favicon.png"),
        with_google_fonts=False,  # fonts from Google are a request leaving the machine
    )
