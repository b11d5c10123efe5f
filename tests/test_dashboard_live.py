"""The dashboard people keep open, in headless Chromium against a real node:
a live device list with "last seen", browser names, "Keep me signed in",
dates on older items, dark mode and a phone-sized viewport."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import re

from playwright.async_api import Browser, expect

from tests.harness import Node, new_user
from tests.dashboard_helpers import OUT, PASSWORD, Tab, auth, new_email, open_tab, phone_for

MOBILE = {"width": 390, "height": 844}


async def test_device_list_is_live_with_last_seen(dash_node: Node, browser: Browser) -> None:
    email = new_email()
    a = await open_tab(browser, dash_node, "A")
    # the name field is prefilled with browser and OS, and can be changed before signing in
    name = a.page.get_by_label("Name for this browser")
    assert re.fullmatch(r"(Chrome|Chromium) \d+ on Linux", await name.input_value()), await name.input_value()
    await name.fill("Work laptop")
    await auth(a, email, "Sign up")
    await expect(a.page.locator("#devices > li[data-own=true] .device-name")).to_have_text("Work laptop")

    # a device added over REST by another client appears without a reload
    phone, device = await phone_for(dash_node, email)
    row = a.page.locator(f"#devices > li[data-id='{device}']")
    await expect(row.locator(".device-name")).to_have_text("Pixel")
    await expect(row.locator(".status")).to_have_text("offline")
    await expect(row.locator(".last-seen")).to_be_hidden()  # never seen yet

    # a phone that only posts over REST is "last seen" now, live and after a reload
    await phone.post("Ping", device=device)
    await expect(row.locator(".last-seen")).to_have_text(re.compile(r"^last seen \d"))
    listed = None

    async def seen_on_server() -> bool:
        nonlocal listed
        listed = await phone.call("GET", f"/api/v1/devices/{device}")
        return listed.body["last_seen"] is not None
    for _ in range(100):  # the server writes it off the request path
        if await seen_on_server():
            break
        await asyncio.sleep(0.1)
    assert listed is not None and listed.body["last_seen"] is not None, listed.body
    await a.page.reload()
    await a.connected()
    await expect(row.locator(".last-seen")).to_have_text(re.compile(r"^last seen \d"))

    # renamed elsewhere: the new name shows; revoked elsewhere: the row goes
    r = await phone.call("PUT", f"/api/v1/devices/{device}", {"device_name": "Pixel 9"})
    assert r.status == 200, r.body
    await expect(row.locator(".device-name")).to_have_text("Pixel 9")
    await a.shot("40-devices-live")
    r = await phone.call("DELETE", f"/api/v1/devices/{device}")
    assert r.status == 204, r.body
    await expect(row).to_have_count(0)
    requests_before = len(a.requests)
    await phone.device("desktop", "Desk")  # one more, to see the list refetch once per change
    await expect(a.page.locator("#devices > li").filter(has_text="Desk")).to_have_count(1)
    assert sum("GET" in r and r.endswith("/api/v1/devices") for r in a.requests[requests_before:]) == 1
    a.assert_clean()


async def test_last_seen_write_is_throttled(dash_node: Node) -> None:
    """A device posting over REST with an access token: last_seen is set, then left alone within the minute."""
    user = await new_user(dash_node)
    device = await user.device("mobile", "Phone")
    assert (await user.call("GET", f"/api/v1/devices/{device}")).body["last_seen"] is None
    await user.post("one", device=device)
    first = None
    for _ in range(100):
        first = (await user.call("GET", f"/api/v1/devices/{device}")).body["last_seen"]
        if first:
            break
        await asyncio.sleep(0.1)
    assert first, "last_seen never set by a REST post"
    await user.post("two", device=device)
    await asyncio.sleep(0.5)  # time for a (wrongly) unthrottled write to land; the check below can fail
    assert (await user.call("GET", f"/api/v1/devices/{device}")).body["last_seen"] == first
    # a device that only acts (e.g. a forwarder marking a notification dismissed) is seen too
    other = await user.device("mobile", "Tablet")
    note = await user.post("three", device=device)
    r = await user.call("PUT", f"/api/v1/notifications/{note['id']}/action", {"action": "dismissed", "device_id": other})
    assert r.status == 200, r.body
    for _ in range(100):
        if (await user.call("GET", f"/api/v1/devices/{other}")).body["last_seen"]:
            break
        await asyncio.sleep(0.1)
    assert (await user.call("GET", f"/api/v1/devices/{other}")).body["last_seen"], "acting did not set last_seen"


async def test_keep_me_signed_in_across_tabs(dash_node: Node, browser: Browser) -> None:
    email = new_email()
    a = await open_tab(browser, dash_node, "A")
    await a.page.get_by_label("Keep me signed in").check()
    await auth(a, email, "Sign up")
    stored = await a.page.evaluate("() => [!!localStorage.getItem('notisync.session'), "
                                   "!!sessionStorage.getItem('notisync.session')]")
    assert stored == [True, False]
    # a new tab of the same browser opens signed in, as the same device
    page2 = await a.context.new_page()
    t2 = Tab("A2", a.context, page2)
    page2.on("pageerror", lambda e: t2.errors.append(f"pageerror: {e}"))
    await page2.goto(dash_node.base + "/")
    await t2.connected()
    await expect(page2.locator("#auth-view")).to_be_hidden()
    assert await t2.device_id() == await a.device_id()
    devices = page2.locator("#devices > li")
    await expect(devices).to_have_count(1)  # no second device registered for the second tab

    # both tabs refresh their tokens; rotation must not look like reuse (which ends the session)
    refresh = "() => import('/static/api.js').then((m) => m.refresh()).then(() => 'ok')"
    assert await a.page.evaluate(refresh) == "ok"
    assert await page2.evaluate(refresh) == "ok"
    assert await a.page.evaluate(refresh) == "ok"
    # at the same moment in both tabs: one rotates, the other takes the rotated tokens
    for _ in range(5):
        assert await asyncio.gather(a.page.evaluate(refresh), page2.evaluate(refresh)) == ["ok", "ok"]
    phone, device = await phone_for(dash_node, email)
    await phone.post("Still here", device=device)
    await expect(a.note("Still here")).to_be_visible()
    await expect(t2.note("Still here")).to_be_visible()
    # the two tabs are one device, which the server never tells about its own actions: the tabs tell each other
    await a.page.get_by_role("button", name="Mark read: Still here").click()
    await expect(t2.note("Still here")).to_have_attribute("data-unread", "false")
    await t2.page.get_by_role("button", name="Dismiss: Still here").click()
    await expect(a.note("Still here")).to_have_count(0)

    # a restart: a new context with the stored state opens signed in
    state = await a.context.storage_state()
    restarted = await browser.new_context(storage_state=state)
    page3 = await restarted.new_page()
    await page3.goto(dash_node.base + "/")
    await expect(page3.locator("#conn")).to_have_attribute("data-state", "connected")
    await restarted.close()

    # logout clears it: a new tab shows the login form again
    await a.page.get_by_role("button", name="Log out").click()
    await expect(a.page.locator("#auth-view")).to_be_visible()
    assert await a.page.evaluate("() => localStorage.getItem('notisync.session')") is None
    await expect(page2.locator("#auth-error")).to_have_text("You were signed out in another tab.")
    page4 = await a.context.new_page()
    await page4.goto(dash_node.base + "/")
    await expect(page4.locator("#auth-view")).to_be_visible()
    a.assert_clean()
    t2.assert_clean()


async def test_without_keep_a_new_tab_asks_to_sign_in(dash_node: Node, browser: Browser) -> None:
    a = await open_tab(browser, dash_node, "A")
    await auth(a, new_email(), "Sign up")
    assert await a.page.evaluate("() => localStorage.getItem('notisync.session')") is None
    page2 = await a.context.new_page()
    await page2.goto(dash_node.base + "/")
    await expect(page2.locator("#auth-view")).to_be_visible()
    await a.page.reload()  # the tab itself stays signed in across a reload, as before
    await a.connected()
    a.assert_clean()


async def test_dates_on_older_items(dash_node: Node, browser: Browser) -> None:
    a = await open_tab(browser, dash_node, "A")
    fmt = ("([iso, now]) => import('/static/dates.js').then((m) => m.formatWhen(iso, new Date(now), 'en-US'))")
    today = await a.page.evaluate(fmt, ["2026-11-30T14:03:00", "2026-11-30T20:00:00"])
    assert re.fullmatch(r"0?2:03\s?PM", today), today
    assert await a.page.evaluate(fmt, ["2026-11-28T14:03:00", "2026-11-30T20:00:00"]) == "Nov 28, 2:03 PM"
    assert await a.page.evaluate(fmt, ["2025-11-28T14:03:00", "2026-01-02T20:00:00"]) == "Nov 28, 2025, 2:03 PM"
    assert await a.page.evaluate(fmt, ["nonsense", "2026-01-02T20:00:00"]) == ""

    # in the list: seen from three days later, today's items carry their date
    email = new_email()
    await auth(a, email, "Sign up")
    phone, device = await phone_for(dash_node, email)
    await phone.post("Old news", device=device)
    time_el = a.note("Old news").locator("time")
    await expect(time_el).not_to_have_text(re.compile(r"[A-Z][a-z]{2} \d"))  # today: the time only
    created = dt.datetime.fromisoformat((await time_el.get_attribute("datetime")).replace("Z", "+00:00"))
    later = created + dt.timedelta(days=3)
    await a.page.clock.set_fixed_time(later)
    await phone.post("Newer", device=device)  # any render rewrites every row
    month_day = created.astimezone().strftime("%b ") + str(created.astimezone().day)
    await expect(time_el).to_have_text(re.compile(rf"^{month_day}, "))
    await a.page.clock.set_fixed_time(created + dt.timedelta(days=400))
    await phone.post("Newest", device=device)
    await expect(time_el).to_have_text(re.compile(rf"^{month_day}, {created.astimezone().year}, "))
    a.assert_clean()


async def test_dark_mode_follows_the_system(dash_node: Node, browser: Browser) -> None:
    colors = "() => [getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]"
    light = await open_tab(browser, dash_node, "light")
    dark_ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="dark")
    dark = await dark_ctx.new_page()
    await dark.goto(dash_node.base + "/")
    assert await light.page.evaluate(colors) == ["rgb(244, 246, 251)", "rgb(27, 32, 48)"]
    assert await dark.evaluate(colors) == ["rgb(15, 19, 27)", "rgb(230, 233, 240)"]
    # controls follow too (no white button on a dark page)
    button_bg = "() => getComputedStyle(document.querySelector('#auth-form button:not(.primary)')).backgroundColor"
    assert await dark.evaluate(button_bg) == "rgb(34, 40, 56)"
    # and switching the system setting switches the page, no reload
    await dark.emulate_media(color_scheme="light")
    assert await dark.evaluate(colors) == ["rgb(244, 246, 251)", "rgb(27, 32, 48)"]
    await dark_ctx.close()
    light.assert_clean()


async def test_usable_on_a_phone_viewport(dash_node: Node, browser: Browser) -> None:
    email = new_email()
    a = await open_tab(browser, dash_node, "phone", viewport=MOBILE)
    assert await a.page.evaluate("() => document.scrollingElement.scrollWidth") <= 390
    await auth(a, email, "Sign up")
    phone, device = await phone_for(dash_node, email)
    await phone.post("A rather long title that should wrap and never widen the page at all, "
                     "https://example.com/a/very/long/url/without/any/spaces/in/it/at/all", device=device,
                     body="x" * 300, category="Work")
    await expect(a.page.locator("#notifications > li")).to_have_count(1)
    await expect(a.page.locator(f"#devices > li[data-id='{device}']")).to_have_count(1)
    assert await a.page.evaluate("() => document.scrollingElement.scrollWidth") <= 390
    for control in (a.page.get_by_role("button", name="Log out"),
                    a.page.get_by_role("button", name="Mark all read"),
                    a.page.get_by_role("button", name="Clear all"),
                    a.page.get_by_label("Search notifications"),
                    a.page.locator("#notifications > li").get_by_role("button", name=re.compile("^Dismiss")),
                    a.page.locator(f"#devices > li[data-id='{device}']").get_by_role("button", name=re.compile("^Revoke"))):
        await control.scroll_into_view_if_needed()
        await expect(control).to_be_visible()
        box = await control.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    await a.page.get_by_role("button", name=re.compile("^Dismiss")).click()
    await expect(a.page.locator("#notifications > li")).to_have_count(0)
    await a.page.evaluate("() => window.scrollTo(0, 0)")
    await a.page.screenshot(path=os.path.join(OUT, "41-mobile.png"))
    a.assert_clean()


async def test_screenshots(dash_node: Node, browser: Browser) -> None:
    """Desktop light, desktop dark and phone-sized views of one account, into test-output/dashboard/
    (docs/dashboard*.png are copies of these)."""
    email = new_email()
    a = await open_tab(browser, dash_node, "light")
    await a.page.get_by_label("Name for this browser").fill("Chrome on the work laptop")
    await auth(a, email, "Sign up")
    phone, device = await phone_for(dash_node, email)
    await phone.call("PUT", f"/api/v1/devices/{device}", {"device_name": "Pixel 8"})
    for title, app, category, body in [
        ("Standup moved to 10:30", "Calendar", "Work", "Room 4B, bring the release notes"),
        ("Your parcel is out for delivery", "Post", "Personal", "Expected between 13:00 and 15:00"),
        ("50% off everything this weekend", "ShopMart", "Junk", "Use code WEEKEND at checkout"),
        ("Build #512 passed", "CI", "Work", "main · 4 min 12 s"),
        ("Ana: are we still on for dinner?", "Messages", "Personal", "8 pm at the usual place?"),
    ]:
        await phone.post(title, device=device, app_name=app, category=category, body=body)
    await expect(a.page.locator("#notifications > li")).to_have_count(5)
    await a.page.get_by_role("button", name="Mark read: Build #512 passed").click()
    await expect(a.page.locator("#unread-count")).to_have_text("4 unread")
    await expect(a.page.locator(f"#devices > li[data-id='{device}'] .last-seen")).to_be_visible()
    await a.page.screenshot(path=os.path.join(OUT, "dashboard-light.png"))

    state = await a.context.storage_state()
    for name, options in (("dark", {"viewport": {"width": 1280, "height": 800}, "color_scheme": "dark"}),
                          ("mobile", {"viewport": MOBILE, "device_scale_factor": 2})):
        context = await browser.new_context(storage_state=state, **options)
        page = await context.new_page()
        await page.goto(dash_node.base + "/")
        # storage_state carries localStorage only: this tab signs in from the form like a new one
        await page.get_by_label("Email").fill(email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in", exact=True).click()
        await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
        await expect(page.locator("#notifications > li")).to_have_count(5)
        await expect(page.locator("#unread-count")).to_have_text("4 unread")
        await page.screenshot(path=os.path.join(OUT, f"dashboard-{name}.png"))
        await context.close()
    a.assert_clean()
