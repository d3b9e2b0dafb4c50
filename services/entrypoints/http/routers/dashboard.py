"""The planners' page, /dashboard: one HTML page whose script reads the public API (the
insights, SKU and order endpoints) and draws what it answers; docs/dashboard.md says what
each part shows and where each figure comes from.

The page and its assets are open even with an API_TOKEN: they hold no data (every figure is
fetched by the page's script, which sends the token the user typed in), and a browser's
<script> or <link> cannot send a bearer token anyway. Nothing is loaded from elsewhere: our
own files come from the `dashboard` folder beside the routers, the chart library from the
installed `plotly` package (pyproject.toml), never copied into the repo nor taken from a CDN.
"""

from __future__ import annotations

import html
from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

PAGE_URL = "/dashboard"
ASSETS_URL = f"{PAGE_URL}/assets"
FOLDER = Path(__file__).resolve().parent.parent / "dashboard"
PLOTLY_SCRIPT = "plotly.min.js"
# Installed with the service (pyproject.toml), never copied into the repo.
PLOTLY_PATH = Path(str(files("plotly") / "package_data" / PLOTLY_SCRIPT))
# The page names its assets and the API through this, for a service behind a path prefix.
ROOT_MARK = "{{root}}"
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Browsers revalidate (ETag, Last-Modified): a new version of the service is seen at once.
REVALIDATE = {"Cache-Control": "no-cache"}
# The page may run our scripts and talk to this service only. Plotly sets inline styles.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


@cache
def _page_template() -> str:
    return (FOLDER / "index.html").read_text(encoding="utf-8")


def _root(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


@router.get(PAGE_URL)
@router.get(f"{PAGE_URL}/")
async def page(request: Request) -> HTMLResponse:
    """The page itself: its routes (overview, SKU, order) are the URL's #fragment."""
    body = _page_template().replace(ROOT_MARK, html.escape(_root(request), quote=True))
    return HTMLResponse(
        body,
        headers={**REVALIDATE, "Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )


@router.get(f"{ASSETS_URL}/{{name}}")
async def asset(name: str) -> FileResponse:
    """One of the page's own files, or the chart library from the plotly package."""
    if name == PLOTLY_SCRIPT:
        return FileResponse(PLOTLY_PATH, media_type=MEDIA_TYPES[".js"], headers=REVALIDATE)
    path = FOLDER / name
    # Only the folder's own files by their plain names: no other path is ever served.
    if name != path.name or path.suffix not in MEDIA_TYPES or not path.is_file():
        raise HTTPException(404, {"error": f"no dashboard asset {name!r}"})
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=REVALIDATE)
