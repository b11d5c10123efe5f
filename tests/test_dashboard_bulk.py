"""The dashboard's unread badge (server-side counts) and its bulk buttons, in headless Chromium."""
from __future__ import annotations

import asyncio

from playwright.async_api import Browser, expect

from tests.harness import Node
from tests.test_dashboard import auth, browser, dash_node, new_email, open_tab, phone_for  # noqa: F401 (fixtures)


async def test_badge_counts_what_the_server_has_and_bulk_buttons(dash_node: Node, browser: Browser) -> None:
    email = new_email()
    a = await open_tab(browser, dash_node, "A")
    await auth(a, email, "Sign up")
    b = await open_tab(browser, dash_node, "B")
    await auth(b, email, "Log in")
    phone, device = await phone_for(dash_node, email)
    for start in range(0, 60, 20):
        await asyncio.gather(*(phone.post(f"note {i}", device=device, app_name="Mail") for i in range(start, start + 20)))
    await expect(a.page.locator("#unread-count")).to_have_text("60 unread")
    # after a reload only one page (50) is loaded: the badge still says what the server has
    await a.page.reload()
    await a.connected()
    await expect(a.page.locator("#notifications > li")).to_have_count(50)
    await expect(a.page.locator("#unread-count")).to_have_text("60 unread")
    await expect(a.page).to_have_title("(60) NotiSync")

    await a.page.get_by_role("button", name="Mark all read").click()
    await expect(a.page.locator("#unread-count")).to_have_text("")
    await expect(b.page.locator("#unread-count")).to_have_text("")  # synced to the other browser
    await expect(b.page.locator("#notifications > li[data-unread=true]")).to_have_count(0)
    listed = await phone.call("GET", "/api/v1/notifications?limit=200&is_read=false")
    assert listed.body["notifications"] == []

    await phone.post("after", device=device, app_name="Chat")
    await expect(a.page.locator("#unread-count")).to_have_text("1 unread")
    a.page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await a.page.get_by_role("button", name="Clear all").click()
    await expect(a.page.locator("#notifications > li")).to_have_count(0)
    await expect(b.page.locator("#notifications > li")).to_have_count(0)
    await expect(a.page.locator("#unread-count")).to_have_text("")
    counts = await phone.call("GET", "/api/v1/notifications/counts")
    assert (counts.body["total"], counts.body["unread"]) == (0, 0)
    await a.shot("30-cleared")
    a.assert_clean()
    b.assert_clean()
