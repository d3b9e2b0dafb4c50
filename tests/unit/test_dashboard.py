"""The planners' page at /dashboard, as the service serves it (no browser here; the page
itself is driven in headless Chromium by tests/e2e/test_dashboard.py): the page and every
file it loads are served with their content types, the chart library is the installed
plotly package's own file, nothing is loaded from another machine, and an API token guards
the data but not the page (which holds none)."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

from projections.runner import ReadModels
from projections.store import ReadStore
from services.adapters.settings import Settings
from services.adapters.store import application_env
from services.allocation.application import Allocation
from services.entrypoints.http import create_app

TOKEN = "dashboard-unit-token-6a1e"
# What the page's HTML loads: <script src>, <link href> (the fragment links are its routes).
LOADED = re.compile(r'(?:src|href)="([^"#][^"]*)"')
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css"}
PLOTLY = Path(str(files("plotly") / "package_data" / "plotly.min.js"))


def _client(tmp_path: Path, **settings: Any) -> TestClient:
    url = f"sqlite:///{tmp_path}/fulfillment"
    allocation = Allocation(env=application_env(url, "allocation"))
    models = ReadModels(ReadStore(url), allocation)
    return TestClient(create_app(models, Settings(database_url=url, **settings)))


def _assets(html: str) -> list[str]:
    return [address for address in LOADED.findall(html) if not address.startswith("data:")]


def test_the_page_is_served_at_dashboard_with_and_without_a_trailing_slash(
    tmp_path: Path,
) -> None:
    client = _client(tmp_path, api_token=None)
    for address in ("/dashboard", "/dashboard/"):
        page = client.get(address)
        assert page.status_code == 200, address
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "<title>" in page.text
        assert 'data-view="overview"' in page.text
        assert 'data-view="sku"' in page.text
        assert 'data-view="order"' in page.text


def test_every_file_the_page_loads_is_served_with_its_content_type(tmp_path: Path) -> None:
    client = _client(tmp_path, api_token=None)
    assets = _assets(client.get("/dashboard").text)
    assert sorted(assets) == [
        "/dashboard/assets/dashboard.css",
        "/dashboard/assets/dashboard.js",
        "/dashboard/assets/plotly.min.js",
    ]
    for address in assets:
        answer = client.get(address)
        assert answer.status_code == 200, address
        media_type = answer.headers["content-type"].split(";")[0]
        assert media_type == CONTENT_TYPES[Path(address).suffix], address
        assert answer.content, address


def test_the_chart_library_is_the_installed_plotly_packages_own_file(tmp_path: Path) -> None:
    client = _client(tmp_path, api_token=None)
    served = client.get("/dashboard/assets/plotly.min.js")
    assert served.status_code == 200
    assert served.content == PLOTLY.read_bytes()
    assert b"plotly.js" in served.content[:200]


def test_the_page_and_its_own_files_name_no_other_machine(tmp_path: Path) -> None:
    client = _client(tmp_path, api_token=None)
    page = client.get("/dashboard")
    for address in (
        "/dashboard",
        "/dashboard/assets/dashboard.js",
        "/dashboard/assets/dashboard.css",
    ):
        text = client.get(address).text
        assert not re.search(r"https?://", text), address
    # And the browser is told so: scripts and requests to this service only.
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy


def test_with_an_api_token_the_page_and_its_files_are_open_but_the_figures_are_not(
    tmp_path: Path,
) -> None:
    client = _client(tmp_path, api_token=SecretStr(TOKEN))
    page = client.get("/dashboard")
    assert page.status_code == 200
    for address in _assets(page.text):
        assert client.get(address).status_code == 200, address
    # What the page's script reads still needs the token.
    assert client.get("/insights/overview").status_code == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/insights/overview", headers=bearer).status_code == 200


def test_only_the_dashboards_own_files_are_served_as_its_assets(tmp_path: Path) -> None:
    client = _client(tmp_path, api_token=None)
    for address in (
        "/dashboard/assets/missing.js",
        "/dashboard/assets/index.html",  # the page is served at /dashboard, filled in
        "/dashboard/assets/..%2F..%2Fapp.py",
        "/dashboard/assets/%2E%2E",
    ):
        assert client.get(address).status_code == 404, address


def test_behind_a_path_prefix_the_page_names_its_files_and_the_api_under_it(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/fulfillment"
    models = ReadModels(ReadStore(url), Allocation(env=application_env(url, "allocation")))
    app = create_app(models, Settings(database_url=url, api_token=None))
    client = TestClient(app, root_path="/fulfillment")
    html = client.get("/dashboard").text
    assert all(address.startswith("/fulfillment/dashboard/assets/") for address in _assets(html))
    assert 'data-api-root="/fulfillment"' in html


def test_the_page_is_not_an_operation_of_the_api(tmp_path: Path) -> None:
    document = _client(tmp_path, api_token=None).get("/openapi.json").json()
    assert not [path for path in document["paths"] if path.startswith("/dashboard")]
