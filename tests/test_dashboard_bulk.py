"""The dashboard's unread badge (server-side counts) and its bulk buttons, in headless Chromium."""
from __future__ import annotations

import asyncio
import re

from playwright.async_api import Browser, expect

from tests import dashboard_helpers
from tests.dashboard_helpers import logged_in, phone_for, post_many, signed_up
from tests.harness import Node, call

# The fixtures: pytest finds them as attributes of this module.
browser, dash_node = dashboard_helpers.browser, dashboard_helpers.dash_node


def decode_qr(view_box: str, path: str) -> str:
    """Rasterise the dashboard's QR path (one ``M x y h1v1h-1z`` per dark module) and decode it with zxing."""
    import numpy
    import zxingcpp
    size = int(view_box.split()[2])
    scale = 8
    image = numpy.full((size * scale, size * scale), 255, dtype=numpy.uint8)
    for x, y in re.findall(r"M(\d+) (\d+)h1v1h-1z", path):
        image[int(y) * scale:(int(y) + 1) * scale, int(x) * scale:(int(x) + 1) * scale] = 0
    found = zxingcpp.read_barcodes(image)
    assert found, "no QR code found"
    return found[0].text


async def test_badge_counts_what_the_server_has_and_bulk_buttons(dash_node: Node, browser: Browser) -> None:
    a, email = await signed_up(browser, dash_node)
    b = await logged_in(browser, dash_node, email)
    phone, device = await phone_for(dash_node, email)
    await post_many(phone, device, "note", 60, "Mail")
    await expect(a.page.locator("#unread-count")).to_have_text("60 unread")
    # after a reload only one page (50) is loaded: the badge still says what the server has
    await a.reload()
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


async def test_search_and_history(dash_node: Node, browser: Browser) -> None:
    a, email = await signed_up(browser, dash_node)
    phone, device = await phone_for(dash_node, email)
    await phone.post("Invoice 4512 paid", device=device, app_name="Bank", body="thank you")
    await post_many(phone, device, "chatter", 60, "Chat")  # push it off the first page
    await expect(a.page.locator("#notifications > li")).to_have_count(61)
    await a.reload()
    await expect(a.page.locator("#notifications > li")).to_have_count(50)
    await a.page.get_by_label("Search notifications").fill("invoice")
    await expect(a.page.locator("#notifications > li")).to_have_count(1)  # found by the server, not the page
    await expect(a.note("Invoice 4512 paid")).to_be_visible()
    await phone.post("Unrelated", device=device)
    await phone.post("Another invoice", device=device, app_name="Shop")
    await expect(a.note("Another invoice")).to_be_visible()  # live items are searched too
    await expect(a.page.locator("#notifications > li")).to_have_count(2)
    await a.page.get_by_role("button", name="Dismiss: Invoice 4512 paid").click()
    await expect(a.page.locator("#notifications > li")).to_have_count(1)
    await a.page.get_by_label("Search notifications").fill("")
    await expect(a.page.locator("#notifications > li")).to_have_count(50)

    await a.page.get_by_role("button", name="Show dismissed notifications").click()
    history = a.page.locator("#history > li")
    await expect(history).to_have_count(1)
    await expect(history.first).to_contain_text("Invoice 4512 paid")
    await expect(a.page.locator("#notifications")).to_be_hidden()
    await a.shot("31-history")
    await a.page.get_by_role("button", name="Show dismissed notifications").click()
    await expect(a.page.locator("#history")).to_be_hidden()
    await expect(a.page.locator("#notifications > li")).to_have_count(50)
    a.assert_clean()


async def test_a_devices_api_keys_panel(dash_node: Node, browser: Browser) -> None:
    a, email = await signed_up(browser, dash_node)
    phone, device = await phone_for(dash_node, email)
    await a.reload()
    await a.page.get_by_role("button", name="API keys of device: Pixel").click()
    panel = a.page.locator("#keys-panel")
    await expect(panel).to_be_visible()
    await expect(a.page.locator("#keys-empty")).to_be_visible()
    await a.page.get_by_label("Key name").fill("Tasker")
    await a.page.get_by_role("button", name="Create API key").click()
    shown = a.page.locator("#new-key")
    await expect(shown).to_have_text(re.compile(r"^nsk_"))
    key = await shown.text_content()
    # the QR code beside it, decoded from the drawn modules by an independent reader, is the key
    qr = a.page.get_by_role("img", name="QR code of the new API key")
    await expect(qr).to_be_visible()
    assert decode_qr(await qr.get_attribute("viewBox"), await qr.locator("path").get_attribute("d")) == key
    rows = a.page.locator("#keys-list > li")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("Tasker")
    await expect(rows.first).to_contain_text("never used")
    r = await call(dash_node, "POST", "/api/v1/notifications", {"app_name": "Tasker", "title": "from the key"}, token=key)
    assert r.status == 201 and r.body["source_device_id"] == device, r.body
    await expect(a.note("from the key")).to_be_visible()
    await a.shot("32-api-keys")
    a.page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await a.page.get_by_role("button", name="Revoke key: Tasker").click()
    await expect(rows).to_have_count(0)
    assert (await call(dash_node, "GET", "/api/v1/devices", token=key)).status == 401
    await a.page.get_by_role("button", name="Close API keys").click()
    await expect(panel).to_be_hidden()
    await expect(shown).to_have_text("")  # the key leaves the page with the panel
    await expect(a.page.locator("#new-key-qr svg")).to_have_count(0)
    a.assert_clean()
