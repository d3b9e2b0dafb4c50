"""Fixtures for the real-browser tests (helpers in tests/browser.py): one Chromium for the
session, a fresh watched page per test, and one running service per test module."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from tests.browser import RunningService, Troubles, chromium, serving, watched_page


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
def troubles() -> Troubles:
    """What went wrong on this test's `page`; `troubles.assert_none()` states there was nothing."""
    return Troubles()


@pytest.fixture
async def page(browser: Browser, troubles: Troubles) -> AsyncIterator[Page]:
    async with watched_page(browser, troubles) as opened:
        yield opened


@pytest.fixture(scope="module")
async def running_service(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningService]:
    """`fulfillment run` on the real broker and SQLite, shared by a module's tests: publish a
    history to `running_service.settings.topics`, wait for it, then open its pages."""
    async with serving(kafka_bootstrap, tmp_path_factory.mktemp("service")) as service:
        yield service


def pytest_collection_modifyitems(items: list[Any]) -> None:
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
