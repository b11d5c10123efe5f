"""The web dashboard in headless Chromium, against a real node (helpers: tests/dashboard_helpers.py).

Screenshots of every step land in ``test-output/dashboard/`` (git-ignored).
"""
from __future__ import annotations

import os
import re
import shutil
import time

from playwright.async_api import Browser, expect

from tests.dashboard_helpers import (PASSWORD, PHONE, auth, logged_in, new_email, open_tab, phone_for, signed_up,
                                     wait_until)
from tests.harness import ROOT, Node, call



# -- the scenarios -------------------------------------------------------------

async def test_two_browsers_and_a_phone_stay_in_sync(dash_node: Node, browser: Browser) -> None:
    email = new_email()
    a = await open_tab(browser, dash_node, "A")
    await a.shot("01-login-form")
    await auth(a, email, "Sign up")
    b = await logged_in(browser, dash_node, email)
    phone, phone_device = await phone_for(dash_node, email)

    # B's arrival shows up live in A's devices panel
    b_id = await b.device_id()
    await expect(a.page.locator(f"#devices > li[data-id='{b_id}'] .status")).to_have_text("online")
    await a.shot("02-A-signed-up")

    # Pushed over each tab's socket: neither tab reloads or asks (no wall-clock bound on a shared machine).
    await phone.post("Build green", device=phone_device, category="Work", body="main #512 passed")
    for tab in (a, b):
        await expect(tab.note("Build green")).to_be_visible(timeout=10_000)
    for tab in (a, b):
        await expect(tab.note("Build green")).to_have_attribute("data-unread", "true")
        await expect(tab.note("Build green").get_by_role("img", name="unread")).to_be_visible()
    await a.shot("03-A-new-notification")

    async with a.page.expect_request(lambda r: r.url.endswith("/action")) as sent:
        await a.page.get_by_role("button", name="Mark read: Build green").click()
    assert (await sent.value).post_data_json == {"action": "read", "device_id": await a.device_id()}
    await expect(b.note("Build green")).to_have_attribute("data-unread", "false")
    await expect(b.note("Build green").get_by_role("img", name="unread")).to_have_count(0)
    await b.shot("04-B-read-elsewhere")

    await b.page.get_by_role("button", name="Dismiss: Build green").click()
    await expect(a.note("Build green")).to_have_count(0)
    await expect(b.note("Build green")).to_have_count(0)
    await a.shot("05-A-dismissed-elsewhere")
    listed = await phone.call("GET", "/api/v1/notifications")
    assert [(n["is_read"], n["is_dismissed"]) for n in listed.body["notifications"]] == [(True, True)]
    a.assert_clean()
    b.assert_clean()


async def test_offline_browser_catches_up_from_its_stream(dash_node: Node, browser: Browser) -> None:
    a, email = await signed_up(browser, dash_node)
    phone, device = await phone_for(dash_node, email)
    await phone.post("Before the tunnel", device=device)
    await expect(a.note("Before the tunnel")).to_be_visible()

    await a.context.set_offline(True)
    await expect(a.page.locator("#conn")).to_have_attribute("data-state", "offline")
    await expect(a.page.get_by_role("status")).to_have_text("Offline")
    await a.shot("06-A-offline")
    last_id = await a.page.evaluate(
        "id => localStorage.getItem('notisync.lastId.' + id)", await a.device_id())
    assert last_id and last_id != "0"
    await phone.post("In the tunnel 1", device=device)
    await phone.post("In the tunnel 2", device=device)
    rest_lists = sum("/api/v1/notifications?" in r for r in a.requests)

    await a.context.set_offline(False)
    await a.connected()
    await expect(a.note("In the tunnel 2")).to_be_visible()
    titles = await a.page.locator("#notifications h3").all_text_contents()
    assert titles == ["In the tunnel 2", "In the tunnel 1", "Before the tunnel"]
    # They came over the resumed stream, not from a REST refetch.
    assert a.sockets[-1].url.endswith(f"last_id={last_id.replace(':', '%3A')}")
    assert sum("/api/v1/notifications?" in r for r in a.requests) == rest_lists
    await a.shot("07-A-caught-up")
    a.assert_clean()


async def test_rename_and_revoke_from_the_devices_panel(dash_node: Node, browser: Browser) -> None:
    a, email = await signed_up(browser, dash_node)
    b = await logged_in(browser, dash_node, email)
    b_id = await b.device_id()
    b_row = a.page.locator(f"#devices > li[data-id='{b_id}']")
    await expect(b_row.locator(".status")).to_have_text("online")
    await expect(b_row).not_to_contain_text("this browser")

    await b_row.get_by_role("button", name="Rename device:").click()
    await a.page.get_by_role("textbox", name="New name for").fill("Office laptop")
    await a.page.get_by_role("button", name="Save name for").click()
    await expect(b_row.locator(".device-name")).to_have_text("Office laptop")
    await a.shot("08-A-renamed-B")

    a.page.once("dialog", lambda d: d.accept())
    b_sockets = len(b.sockets)
    await a.page.get_by_role("button", name="Revoke device: Office laptop").click()
    await expect(b.page.locator("#conn")).to_have_attribute("data-state", "revoked")
    await expect(b.page.get_by_role("status")).to_contain_text("revoked")
    await expect(b.page.locator("#banner")).to_be_visible()
    await expect(b_row).to_have_count(0)
    await b.shot("09-B-revoked")
    # B did not reconnect blindly: one socket tried, no new one opened since.
    await wait_until(lambda: all(s.is_closed() for s in b.sockets))
    await b.page.wait_for_timeout(700)
    assert len(b.sockets) == b_sockets

    # Revoking B's device ended B's session too (SPEC "Sessions": a lost laptop is cut
    # off), so registering again means signing in again, and B gets a new device id.
    await b.page.get_by_role("button", name="Register this browser again").click()
    await expect(b.page.get_by_label("Email")).to_be_visible()
    await auth(b, email, "Log in")
    new_id = await b.device_id()
    assert new_id != b_id
    await expect(a.page.locator(f"#devices > li[data-id='{new_id}'] .status")).to_have_text("online")
    a.assert_clean()
    b.assert_clean()


async def test_notification_text_is_never_html(dash_node: Node, browser: Browser) -> None:
    email = new_email()
    a = await open_tab(browser, dash_node, "A")
    dialogs: list[str] = []
    a.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    await auth(a, email, "Sign up")
    phone, device = await phone_for(dash_node, email)
    evil = "<img src=x onerror=alert(1)>"
    await phone.post(evil, device=device, body="<script>alert(2)</script>", app_name="<b>Evil</b>")

    await expect(a.note(evil)).to_be_visible()
    await expect(a.note(evil).locator(".title")).to_have_text(evil)
    await expect(a.note(evil).locator(".body")).to_have_text("<script>alert(2)</script>")
    await expect(a.page.get_by_role("button", name=f"Mark read: {evil}")).to_be_visible()
    assert await a.page.locator("#notifications img, #notifications script, #notifications b").count() == 0
    await a.page.get_by_role("button", name=f"Mark read: {evil}").click()
    await expect(a.note(evil)).to_have_attribute("data-unread", "false")
    await a.shot("10-A-html-as-text")
    assert dialogs == []
    a.assert_clean()


async def test_category_filter_and_load_more(dash_node: Node, browser: Browser) -> None:
    email = new_email()
    phone_user = await call(dash_node, "POST", "/api/v1/auth/register", {"email": email, "password": PASSWORD})
    assert phone_user.status == 201
    phone, device = await phone_for(dash_node, email)
    for i in range(52):
        await phone.post(f"Chat {i}", device=device, category="Personal")
    await phone.post("Standup moved", device=device, category="Work")
    await phone.post("Deploy done", device=device, category="Work")
    await phone.post("50% off socks", device=device, category="Junk")

    a = await open_tab(browser, dash_node, "A")
    await auth(a, email, "Log in")
    items = a.page.locator("#notifications > li")
    await expect(items).to_have_count(50)
    await expect(items.first).to_contain_text("50% off socks")
    await a.page.get_by_role("button", name="Load more notifications").click()
    await expect(items).to_have_count(55)
    await expect(items.last).to_contain_text("Chat 0")
    await expect(a.page.get_by_role("button", name="Load more notifications")).to_be_hidden()

    await a.page.get_by_role("button", name="Show Work only").click()
    await expect(a.page.get_by_role("button", name="Show Work only")).to_have_attribute("aria-pressed", "true")
    await expect(items).to_have_count(2)
    assert await a.page.locator("#notifications h3").all_text_contents() == ["Deploy done", "Standup moved"]
    # live frames respect the filter too
    await phone.post("Lunch?", device=device, category="Personal")
    await phone.post("Incident opened", device=device, category="Work")
    await expect(items).to_have_count(3)
    await expect(items.first).to_contain_text("Incident opened")
    await a.shot("11-A-filter-work")

    await a.page.get_by_role("button", name="Show Junk only").click()
    await expect(items).to_have_count(1)
    await expect(items.first).to_contain_text("50% off socks")
    await a.page.get_by_role("button", name="Show all categories").click()
    await expect(items.first).to_contain_text("Incident opened")
    await expect(a.note("Lunch?")).to_be_visible()
    a.assert_clean()


async def test_phone_sized_viewport_has_no_horizontal_scroll(dash_node: Node, browser: Browser) -> None:
    email = new_email()
    a = await open_tab(browser, dash_node, "A", viewport=PHONE)
    await a.shot("12-phone-login")
    await auth(a, email, "Sign up")
    phone, device = await phone_for(dash_node, email)
    await phone.post("x" * 300, device=device, body="https://example.com/" + "a" * 400, app_name="A very long app name " * 5)
    await phone.post("Dinner at 8?", device=device, body="Bring the salad")
    await expect(a.note("Dinner at 8?")).to_be_visible()
    widths = await a.page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1] == 375, widths
    await expect(a.page.get_by_role("button", name="Dismiss: Dinner at 8?")).to_be_in_viewport()
    await a.shot("13-phone-list")
    await a.page.locator("#devices").scroll_into_view_if_needed()
    await a.shot("14-phone-devices")
    a.assert_clean()


async def test_token_refresh_and_logout(dash_node: Node, browser: Browser) -> None:
    a, email = await signed_up(browser, dash_node)
    before = await a.page.evaluate("() => JSON.parse(sessionStorage.getItem('notisync.session'))")
    own = await a.device_id()
    # Pretend the access token is about to expire, then reload the tab.
    await a.page.evaluate("""() => {
        const s = JSON.parse(sessionStorage.getItem('notisync.session'));
        s.expires_at = Date.now() + 2000;
        sessionStorage.setItem('notisync.session', JSON.stringify(s));
    }""")
    async with a.page.expect_response(lambda r: r.url.endswith("/auth/refresh")) as refreshed:
        await a.page.reload()
    assert (await refreshed.value).status == 200
    await a.connected()
    after = await a.page.evaluate("() => JSON.parse(sessionStorage.getItem('notisync.session'))")
    assert after["refresh_token"] != before["refresh_token"]
    assert after["expires_at"] > time.time() * 1000 + 60_000
    # One refresh only: a second one with the rotated-out token would end the session.
    assert sum(r.endswith("/auth/refresh") for r in a.requests) == 1
    phone, device = await phone_for(dash_node, email)
    await phone.post("Still here", device=device)
    await expect(a.note("Still here")).to_be_visible()
    # the reload re-registered the same device (idempotent POST), not a second one
    assert await a.device_id() == own
    devices = (await phone.call("GET", "/api/v1/devices")).body["devices"]
    assert [d["device_type"] for d in devices].count("web") == 1

    await a.page.get_by_role("button", name="Log out").click()
    await expect(a.page.get_by_role("button", name="Log in", exact=True)).to_be_visible()
    await expect(a.page.locator("#app-view")).to_be_hidden()
    stored = await a.page.evaluate(
        "() => [...Object.keys(localStorage), ...Object.keys(sessionStorage)].filter(k => k.startsWith('notisync.'))")
    assert stored == []
    await wait_until(a.sockets[-1].is_closed)  # the socket of the page since the reload
    devices = (await phone.call("GET", "/api/v1/devices")).body["devices"]
    assert own not in {d["id"] for d in devices}
    await a.shot("15-logged-out")
    a.assert_clean()


async def test_security_headers_and_no_inline_code(dash_node: Node) -> None:
    r = await call(dash_node, "GET", "/")
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "connect-src 'self';" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    html = r.body
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    js = (await call(dash_node, "GET", "/static/app.js")).headers
    assert js["Content-Type"].split(";")[0] in ("text/javascript", "application/javascript")
    static = os.path.join(ROOT, "notisync", "static")
    for name in os.listdir(static):
        if name.endswith((".js", ".html")):
            text = open(os.path.join(static, name), encoding="utf-8").read()
            assert "innerHTML" not in text and "insertAdjacentHTML" not in text, name
            assert "style=" not in text and " onclick" not in text.lower(), name


async def test_reconnects_with_backoff_after_a_server_restart(browser: Browser) -> None:
    node = Node().start()
    try:
        a, email = await signed_up(browser, node)
        phone, device = await phone_for(node, email)
        await phone.post("Before the restart", device=device)
        await expect(a.note("Before the restart")).to_be_visible()

        assert node.stop() == 0  # closes sockets with 1001
        await expect(a.page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
        await expect(a.page.get_by_role("status")).to_have_text("Reconnecting…")
        await a.shot("16-A-reconnecting")
        sockets = len(a.sockets)
        node.start()
        await a.connected()
        assert len(a.sockets) > sockets
        await phone.post("After the restart", device=device)
        await expect(a.note("After the restart")).to_be_visible()
        # refused connections while the server was down (the socket's, and the ticket
        # request before each attempt) log console errors; nothing else may
        refused = ("WebSocket connection to", "net::ERR_CONNECTION_REFUSED")
        assert not [e for e in a.errors if not any(r in e for r in refused)], a.errors
    finally:
        node.stop()
        shutil.rmtree(node.data_dir, ignore_errors=True)


async def test_desktop_overview(dash_node: Node, browser: Browser) -> None:
    """The picture in docs/dashboard.png: a typical morning, two browsers and a phone."""
    a, email = await signed_up(browser, dash_node)
    b = await logged_in(browser, dash_node, email)
    phone, device = await phone_for(dash_node, email)
    samples = [
        ("Calendar", "Weekly planning in 15 minutes", "Room 4B · with Dana, Lee", "Work"),
        ("Bank", "Card payment of 12.40 EUR", "Coffee Corner", "Personal"),
        ("Deals", "50% off everything today only", "Tap to see the offers", "Junk"),
        ("Slack", "#deploys: Release 2.4.1 is live", "Rolled out to 100% of nodes", "Work"),
        ("Messages", "Mum", "Don't forget Sunday lunch!", "Personal"),
        ("GitHub", "Build green", "main #512 passed in 4m 12s", "Work"),
    ]
    for app, title, body, category in samples:
        await phone.post(title, device=device, app_name=app, body=body, category=category)
    await expect(a.page.locator("#notifications > li")).to_have_count(len(samples))
    await a.page.get_by_role("button", name="Mark read: Card payment of 12.40 EUR").click()
    await a.page.get_by_role("button", name="Mark read: Weekly planning in 15 minutes").click()
    await expect(a.page.locator("#unread-count")).to_have_text("4 unread")
    await expect(b.page.locator("#unread-count")).to_have_text("4 unread")
    await phone.call("PUT", f"/api/v1/devices/{await b.device_id()}", {"device_name": "Work laptop"})
    await a.reload()
    await expect(a.page.locator("#devices")).to_contain_text("Work laptop")
    await a.shot("17-desktop-overview")
    a.assert_clean()
    b.assert_clean()
