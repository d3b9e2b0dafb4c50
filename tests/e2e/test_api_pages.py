"""The API's own pages, /docs (Swagger UI) and /redoc (ReDoc), in headless Chromium against
`fulfillment run`: each shows the API's title and every operation of its OpenAPI document,
with no console error, no failed request and no request leaving the machine: they work
offline (their assets come from an installed package, served by the service itself).
Screenshots: data/artefacts/screenshots/docs.png and redoc.png."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from services.entrypoints.http.routers.docs import ASSETS_URL
from tests.browser import RunningService, Troubles, screenshot, serving

pytestmark = pytest.mark.kafka

TOKEN = "api-pages-test-token-81f3"
# What the pages' HTML loads: <script src>, <link href>, the OpenAPI document each viewer reads.
LOADED = re.compile(r"""(?:src|href|spec-url)="([^"]+)"|url: '([^']+)'""")


def operations_of(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation the OpenAPI document states."""
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


async def _document(service: RunningService) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=service.url) as client:
        answer = await client.get("/openapi.json")
    answer.raise_for_status()
    document: dict[str, Any] = answer.json()
    return document


async def test_swagger_ui_shows_the_apis_title_and_every_operation_without_leaving_the_machine(
    running_service: RunningService, page: Page, troubles: Troubles
) -> None:
    document = await _document(running_service)

    await page.goto(f"{running_service.url}/docs", wait_until="networkidle")

    await expect(page).to_have_title(f"{document['info']['title']} - Swagger UI")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text(
        document["info"]["title"]
    )
    sku_position = page.locator(".opblock-get").filter(
        has=page.locator('.opblock-summary-path[data-path="/skus/{sku}"]')
    )
    await expect(sku_position).to_be_visible()
    shown = await page.locator(".opblock").evaluate_all(
        """blocks => blocks.map(block => [
            block.querySelector('.opblock-summary-method').textContent,
            block.querySelector('.opblock-summary-path').dataset.path,
        ])"""
    )
    assert {(method, path) for method, path in shown} == operations_of(document)
    await screenshot(page, "docs")
    troubles.assert_none()


async def test_redoc_shows_the_apis_title_and_every_operation_without_leaving_the_machine(
    running_service: RunningService, page: Page, troubles: Troubles
) -> None:
    document = await _document(running_service)

    await page.goto(f"{running_service.url}/redoc", wait_until="networkidle")

    await expect(page).to_have_title(f"{document['info']['title']} - ReDoc")
    await expect(page.locator("h1").first).to_contain_text(
        f"{document['info']['title']} ({document['info']['version']})"
    )
    sku_position = document["paths"]["/skus/{sku}"]["get"]
    section = f"tag/{sku_position['tags'][0]}/operation/{sku_position['operationId']}"
    await expect(page.locator(f'[id="{section}"]')).to_be_visible()
    # Each operation's endpoint bar: its verb, then its path.
    shown = await page.locator("span.http-verb").evaluate_all(
        "verbs => verbs.map(verb => [verb.textContent, verb.nextElementSibling.textContent])"
    )
    assert {(method.upper(), path) for method, path in shown} == operations_of(document)
    await screenshot(page, "redoc")
    troubles.assert_none()


async def test_the_pages_load_only_the_services_own_addresses(
    running_service: RunningService,
) -> None:
    async with httpx.AsyncClient(base_url=running_service.url) as client:
        for page in ("/docs", "/redoc"):
            html = (await client.get(page)).text
            assert not re.search(r"https?://", html), html
            loaded = [src or url for src, url in LOADED.findall(html)]
            assert loaded, html
            for address in loaded:
                assert address == "/openapi.json" or address.startswith(f"{ASSETS_URL}/"), address
                assert (await client.get(address)).status_code == 200, address


async def test_with_an_api_token_the_pages_need_it_but_their_assets_are_open(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with (
        serving(kafka_bootstrap, tmp_path, API_TOKEN=TOKEN) as service,
        httpx.AsyncClient(base_url=service.url) as client,
    ):
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        for page in ("/docs", "/redoc", "/openapi.json"):
            assert (await client.get(page)).status_code == 401, page
            assert (await client.get(page, headers=bearer)).status_code == 200, page
        html = (await client.get("/docs", headers=bearer)).text
        assets = [src for src, _ in LOADED.findall(html) if src]
        assert len(assets) == 3, html  # script, styles, favicon
        for asset in assets:
            assert (await client.get(asset)).status_code == 200, asset
