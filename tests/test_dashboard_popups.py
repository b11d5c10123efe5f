"""The dashboard's browser pop-ups (Notification API), action buttons and reply
box, in headless Chromium with the notifications permission granted.

The page's own ``Notification`` is wrapped (not replaced: every pop-up is
still made by Chromium's) so the test can list the pop-ups, click one and
see which were closed; the tab is made "hidden" through
``document.visibilityState``, as when the user switched to another tab.
"""
from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, expect

from tests.harness import Node, ws_connect
from tests.dashboard_helpers import DESKTOP, Tab, auth, new_email, phone_for

SPY = """
(() => {
  const Real = window.Notification;
  window.__popups = [];
  class Spy extends Real {
    constructor(title, options) {
      super(title, options);
      this.__closed = false;
      window.__popups.push({ title, body: options && options.body, tag: options && options.tag, n: this });
    }
    close() { this.__closed = true; super.close(); }
  }
  Object.defineProperty(Spy, 'permission', { get: () => Real.permission });
  Spy.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Spy;
  let hidden = false;
  Object.defineProperty(Document.prototype, 'visibilityState', { get: () => (hidden ? 'hidden' : 'visible'), configurable: true });
  window.__setHidden = (value) => { hidden = value; document.dispatchEvent(new Event('visibilitychange')); };
})();
"""

POPUPS = "() => window.__popups.map(p => ({title: p.title, body: p.body, tag: p.tag, closed: p.n.__closed}))"


async def granted_tab(browser: Browser, node: Node) -> Tab:
    context = await browser.new_context(viewport=DESKTOP)
    await context.grant_permissions(["notifications"], origin=node.base)
    await context.add_init_script(SPY)
    page = await context.new_page()
    tab = Tab("popups", context, page)
    page.on("pageerror", lambda e: tab.errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: tab.errors.append(f"console: {m.text}") if m.type == "error" else None)
    await page.goto(node.base + "/")
    return tab


async def popups(tab: Tab) -> list[dict[str, Any]]:
    return await tab.page.evaluate(POPUPS)


async def test_browser_popups_while_hidden(dash_node: Node, browser: Browser) -> None:
    email = new_email()
    tab = await granted_tab(browser, dash_node)
    await auth(tab, email, "Sign up")
    phone, device = await phone_for(dash_node, email)
    await expect(tab.page.locator("#enable-popups")).to_be_hidden()  # already granted: nothing to ask

    # visible tab: the list shows it, no pop-up
    await phone.post("Seen in the list", device=device)
    await expect(tab.note("Seen in the list")).to_be_visible()
    assert await popups(tab) == []

    # hidden tab: a pop-up, titled "app: title"; the tab title counts unread
    await tab.page.evaluate("() => window.__setHidden(true)")
    chat = {"source_key": "chat-1", "app_name": "Signal"}
    first = await phone.post("Ann", device=device, body="lunch?", **chat)
    await expect(tab.note("Ann")).to_be_visible()
    await expect(tab.page).to_have_title("(2) NotiSync")
    assert await popups(tab) == [{"title": "Signal: Ann", "body": "lunch?", "tag": first["id"], "closed": False}]

    # updated in place: the pop-up is replaced, the card changes, still one card
    await phone.post("Ann", device=device, body="lunch? at 1", **chat)
    await expect(tab.note("Ann").locator(".body")).to_have_text("lunch? at 1")
    await expect(tab.note("Ann")).to_have_count(1)
    shown = await popups(tab)
    assert [(p["body"], p["closed"]) for p in shown] == [("lunch?", True), ("lunch? at 1", False)]

    # dismissed on the phone: withdrawn
    other = await phone.post("Bob", device=device, app_name="Mail")
    await expect(tab.note("Bob")).to_be_visible()
    r = await phone.call("PUT", f"/api/v1/notifications/{other['id']}/action", {"action": "dismissed", "device_id": device})
    assert r.status == 200
    await expect(tab.note("Bob")).to_have_count(0)
    assert (await popups(tab))[-1] == {"title": "Mail: Bob", "body": "", "tag": other["id"], "closed": True}

    # clicking the pop-up focuses the tab and sends clicked (read everywhere)
    async with tab.page.expect_request(lambda r: r.url.endswith("/action")) as sent:
        await tab.page.evaluate("() => window.__popups[1].n.dispatchEvent(new Event('click'))")
    assert (await sent.value).post_data_json == {"action": "clicked", "device_id": await tab.device_id()}
    await expect(tab.note("Ann")).to_have_attribute("data-unread", "false")
    assert (await popups(tab))[1]["closed"] is True
    listed = await phone.call("GET", f"/api/v1/notifications/{first['id']}")
    assert listed.body["is_read"] is True
    tab.assert_clean()


async def test_action_buttons_and_reply_box_reach_the_phone(dash_node: Node, browser: Browser) -> None:
    email = new_email()
    tab = await granted_tab(browser, dash_node)
    await auth(tab, email, "Sign up")
    phone, device = await phone_for(dash_node, email)
    phone_ws = await ws_connect(dash_node, phone.token, device)
    actions = [{"id": "ok", "label": "Sounds good", "type": "button"}, {"id": "reply", "label": "Reply", "type": "reply"}]
    n = await phone.post("Lunch?", device=device, app_name="Signal", actions=actions)
    card = tab.note("Lunch?")
    await expect(card).to_be_visible()
    me = await tab.device_id()

    await card.get_by_role("button", name="Sounds good: Lunch?").click()
    frame = await phone_ws.recv_type("action_invoked", timeout=10)
    assert frame["data"] == {"notification_id": n["id"], "action_id": "ok", "device_id": me}

    await card.get_by_role("textbox", name="Reply: Lunch?").fill("on my way <b>now</b>")
    await card.get_by_role("button", name="Send Reply: Lunch?").click()
    frame = await phone_ws.recv_type("action_invoked", timeout=10)
    assert frame["data"] == {"notification_id": n["id"], "action_id": "reply", "device_id": me,
                             "reply_text": "on my way <b>now</b>"}
    await expect(card.get_by_role("textbox", name="Reply: Lunch?")).to_have_value("")

    # dismissed on the phone: the card goes, its actions with it
    r = await phone.call("PUT", f"/api/v1/notifications/{n['id']}/action", {"action": "dismissed", "device_id": device})
    assert r.status == 200
    await expect(card).to_have_count(0)
    phone_ws.close()
    tab.assert_clean()
