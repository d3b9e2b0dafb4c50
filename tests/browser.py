"""Real-browser checks: headless Chromium (Debian's package, installed by
deploy/browser/browser.sh; Playwright's own browser download is never used) driving pages
that `fulfillment run` serves on the real broker and a SQLite store.

A watched page records what a user would see go wrong: console errors, uncaught exceptions
and failed requests. Every request to a host other than this machine is aborted and recorded,
so a page that passes here works offline. The fixtures are in tests/e2e/conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    Request,
    Response,
    Route,
    ViewportSize,
    async_playwright,
)

from services.adapters.settings import Settings
from tests.harness import environment, isolated_settings, until

REPO = Path(__file__).resolve().parent.parent
BROWSER_SCRIPT = REPO / "deploy" / "browser" / "browser.sh"
SCREENSHOTS = REPO / "data" / "artefacts" / "screenshots"  # git-ignored: test artefacts
CLI = str(Path(sys.executable).parent / "fulfillment")
THIS_MACHINE = frozenset({"127.0.0.1", "localhost", "::1"})
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}


def chromium_path() -> str:
    """The Debian binary, as the deploy script knows it; a clear failure when it is missing."""
    found = subprocess.run(
        ["bash", str(BROWSER_SCRIPT), "path"], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        raise RuntimeError(f"{found.stderr.strip()} (or `make browser`)")
    return found.stdout.strip()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless Chromium, closed on exit."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Troubles:
    """What went wrong on a page, as a reader of its console and network panel would see it."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)

    def assert_none(self) -> None:
        """No error, no failed request, and nothing asked of another machine."""
        found = {name: seen for name, seen in vars(self).items() if seen}
        assert not found, f"the page had troubles: {found}"


def leaves_the_machine(url: str) -> bool:
    """An http(s) or ws(s) address on another host (data: and blob: stay in the page)."""
    parts = urlsplit(url)
    return parts.scheme in {"http", "https", "ws", "wss"} and parts.hostname not in THIS_MACHINE


@contextlib.asynccontextmanager
async def watched_page(browser: Browser, troubles: Troubles) -> AsyncIterator[Page]:
    """A page in a fresh context, recording into `troubles`; requests to other hosts are
    aborted (and recorded) before they go out, and no service worker can bypass that."""
    context: BrowserContext = await browser.new_context(viewport=VIEWPORT, service_workers="block")

    async def keep_local(route: Route, request: Request) -> None:
        if leaves_the_machine(request.url):
            troubles.outside_requests.append(f"{request.method} {request.url}")
            await route.abort("blockedbyclient")
        else:
            await route.continue_()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            troubles.console_errors.append(f"{message.text} ({message.location.get('url')})")

    def page_error(error: Error) -> None:
        troubles.page_errors.append(f"{error.name}: {error.message}")

    def request_failed(request: Request) -> None:
        troubles.failed_requests.append(f"{request.method} {request.url}: {request.failure}")

    def response(answer: Response) -> None:
        if answer.status >= 400:
            troubles.failed_requests.append(
                f"{answer.request.method} {answer.url}: HTTP {answer.status}"
            )

    await context.route("**/*", keep_local)
    page = await context.new_page()
    page.on("console", console)
    page.on("pageerror", page_error)
    page.on("requestfailed", request_failed)
    page.on("response", response)
    try:
        yield page
    finally:
        await context.close()


async def screenshot(page: Page, name: str) -> Path:
    """The whole page as data/artefacts/screenshots/<name>.png, for a reader of the run."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=path, full_page=True)
    return path


@dataclass(frozen=True)
class RunningService:
    """`fulfillment run` as a subprocess: its address, and the settings and environment it
    was started with (publish to `settings.topics` to give it a history)."""

    url: str
    settings: Settings
    env: dict[str, str]
    log: Path


def _ready(service: RunningService, process: asyncio.subprocess.Process) -> bool:
    if process.returncode is not None:
        raise AssertionError(
            f"the service exited with {process.returncode} before it was ready:\n"
            + service.log.read_text(errors="replace")[-3000:]
        )
    try:
        return httpx.get(f"{service.url}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False  # not listening yet


@contextlib.asynccontextmanager
async def serving(
    kafka_bootstrap: str, folder: Path, **extra_env: str
) -> AsyncIterator[RunningService]:
    """`fulfillment run` on the real broker (topics of its own) and a SQLite store in
    `folder`, ready (/readyz) when entered; stopped by SIGTERM on exit, and it must exit 0.
    `extra_env` adds settings, e.g. API_TOKEN (none otherwise, whatever this shell has)."""
    settings = isolated_settings(kafka_bootstrap, f"sqlite:///{folder}/fulfillment")
    env = environment(settings)
    env.pop("API_TOKEN", None)
    env.update(extra_env)
    log = folder / "service.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            CLI, "run", env=env, stdout=output, stderr=asyncio.subprocess.STDOUT
        )
    service = RunningService(f"http://127.0.0.1:{settings.http_port}", settings, env, log)
    try:
        await until(lambda: _ready(service, process), what="the service answers /readyz")
        yield service
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(process.wait(), timeout=60)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError("the service did not stop within 60 s of SIGTERM") from None
    assert code == 0, f"the service exited with {code}:\n" + log.read_text(errors="replace")[-3000:]
