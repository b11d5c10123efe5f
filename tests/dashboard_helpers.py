"""Shared by the dashboard tests: headless Chromium against a real node.

Two browser contexts are two browsers (two ``web`` devices) of one user; the
REST client stands in for the phone. ``Tab.shot`` screenshots land in
``test-output/dashboard/`` (git-ignored); pictures meant for docs/ go there
too unless NOTISYNC_WRITE_DOCS=1 (see ``docs_png``). Chromium missing is a
failure, not a skip: CI installs it.

Its ``dash_node`` and ``browser`` fixtures reach every test module as a
pytest plugin (``pytest_plugins`` in tests/conftest.py).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, BrowserContext, Page, WebSocket, async_playwright, expect

from tests.harness import ROOT, Node, User, call

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OUT = os.path.join(ROOT, "test-output", "dashboard")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}
PASSWORD = "correct horse battery"

expect.set_options(timeout=5000)


@pytest.fixture(scope="module")
def dash_node() -> Iterator[Node]:
    n = Node().start()
    yield n
    assert n.stop() == 0, n.log()
    shutil.rmtree(n.data_dir, ignore_errors=True)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium"
    os.makedirs(OUT, exist_ok=True)
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        await b.close()


@dataclass
class Tab:
    """One browser context with one dashboard page, and what it logged."""

    name: str
    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)
    sockets: list[WebSocket] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def note(self, title: str) -> Any:
        return self.page.locator("#notifications > li").filter(
            has=self.page.get_by_role("heading", name=title, exact=True))

    def device_row(self, name: str) -> Any:
        return self.page.locator("#devices > li").filter(has_text=name)

    async def shot(self, name: str) -> None:
        await self.page.screenshot(path=os.path.join(OUT, f"{name}.png"))

    async def reload(self) -> None:
        """Reload the page and wait until its socket is back."""
        await self.page.reload()
        await self.connected()

    async def device_id(self) -> str:
        return await self.page.evaluate(
            "() => Object.entries(localStorage).find(([k]) => k.startsWith('notisync.device.'))[1]")

    async def connected(self) -> None:
        await expect(self.page.locator("#conn")).to_have_attribute("data-state", "connected")

    def assert_clean(self) -> None:
        """No uncaught exception and no console error (a CSP violation logs one)."""
        assert not self.errors, f"{self.name}: {self.errors}"


async def open_tab(browser: Browser, node: Node, name: str, viewport: dict[str, int] = DESKTOP) -> Tab:
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    tab = Tab(name, context, page)
    page.on("pageerror", lambda e: tab.errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: tab.errors.append(f"console: {m.text}") if m.type == "error" and not (
        # a 4xx the app asked for on purpose (e.g. "is my device still there?") is not an error
        m.text.startswith("Failed to load resource: the server responded with a status of 4")) else None)
    page.on("websocket", lambda ws: tab.sockets.append(ws))
    page.on("request", lambda r: tab.requests.append(f"{r.method} {r.url}"))
    await page.goto(node.base + "/")
    return tab


async def auth(tab: Tab, email: str, button: str) -> None:
    page = tab.page
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name=button, exact=True).click()
    await tab.connected()
    own = page.locator("#devices > li[data-own=true]")
    await expect(own).to_contain_text("this browser")
    await expect(own.locator(".status")).to_have_text("online")


async def phone_for(node: Node, email: str) -> tuple[User, str]:
    """The phone: a REST login of the same user with a mobile device of its own."""
    r = await call(node, "POST", "/api/v1/auth/login", {"email": email, "password": PASSWORD})
    assert r.status == 200, r.body
    user = User(node, email, PASSWORD, r.body["user"]["id"], r.body["access_token"], r.body["refresh_token"])
    return user, await user.device("mobile", "Pixel")


async def wait_until(check: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def new_email() -> str:
    return f"dash-{uuid.uuid4().hex[:10]}@example.com"


async def signed_up(browser: Browser, node: Node, name: str = "A", viewport: dict[str, int] = DESKTOP
                    ) -> tuple[Tab, str]:
    """A tab of a brand-new user, signed up and connected; the user's email."""
    email = new_email()
    tab = await open_tab(browser, node, name, viewport)
    await auth(tab, email, "Sign up")
    return tab, email


async def logged_in(browser: Browser, node: Node, email: str, name: str = "B") -> Tab:
    """A second browser of that user, logged in and connected."""
    tab = await open_tab(browser, node, name)
    await auth(tab, email, "Log in")
    return tab


async def post_many(phone: User, device: str, prefix: str, count: int, app_name: str, batch: int = 20) -> None:
    """``count`` notifications titled "{prefix} {i}", ``batch`` in flight at a time."""
    for start in range(0, count, batch):
        await asyncio.gather(*(phone.post(f"{prefix} {i}", device=device, app_name=app_name)
                               for i in range(start, min(start + batch, count))))


def docs_png(name: str) -> str:
    """Where a picture the README shows is written: docs/ only when NOTISYNC_WRITE_DOCS=1,
    so a test run does not rewrite tracked files; test-output/dashboard/ otherwise."""
    folder = os.path.join(ROOT, "docs") if os.environ.get("NOTISYNC_WRITE_DOCS") == "1" else OUT
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, name)
