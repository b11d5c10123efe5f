"""The rules editor and the device preferences panel in headless Chromium, against a real node
(helpers: tests/dashboard_helpers.py). Screenshots: rules-editor.png and device-preferences.png in
test-output/dashboard/, or in docs/ (the README's pictures) with NOTISYNC_WRITE_DOCS=1."""
from __future__ import annotations

import os

from playwright.async_api import expect

from tests import dashboard_helpers
from tests.dashboard_helpers import auth, docs_png, open_tab, phone_for
from tests.harness import ws_connect

# The fixtures: pytest finds them as attributes of this module.
browser, dash_node = dashboard_helpers.browser, dashboard_helpers.dash_node


async def test_rules_editor_and_preferences_panel(browser, dash_node) -> None:
    tab = await open_tab(browser, dash_node, "rules")
    page = tab.page
    email = f"r{os.urandom(4).hex()}@example.com"
    await auth(tab, email, "Sign up")
    phone, phone_id = await phone_for(dash_node, email)
    laptop = await phone.device("desktop", "Work laptop")
    await tab.reload()  # a device added elsewhere shows up on the next list

    async def add(name: str, app: str, **checks: bool) -> None:
        await page.get_by_label("Name", exact=True).fill(name)
        await page.get_by_label("App name (* = anything)").fill(app)
        for label in checks:
            await page.get_by_label(label, exact=True).check()
        await page.get_by_role("button", name="Add rule").click()
        await expect(page.locator("#rules > li").filter(has_text=name)).to_be_visible()

    await add("Quiet Slack", "Slack*", Silent=True)
    await add("No promos", "*promo*", Drop=True)
    await page.locator("#rule-category").select_option("Work")
    await add("Pager to phones", "PagerDuty", mobile=True)
    rows = page.locator("#rules > li")
    await expect(rows).to_have_count(3)
    await expect(rows.nth(2)).to_contain_text("only to mobile")
    # Reorder: the last goes first; the server agrees.
    await page.get_by_role("button", name="Move up: Pager to phones").click()
    await page.get_by_role("button", name="Move up: Pager to phones").click()
    await expect(rows.nth(0)).to_contain_text("Pager to phones")
    stored = (await phone.call("GET", "/api/v1/rules")).body["rules"]
    assert [r["name"] for r in stored] == ["Pager to phones", "Quiet Slack", "No promos"]
    # Edit, disable, and an invalid rule's message.
    await page.get_by_role("button", name="Edit rule: Quiet Slack").click()
    await page.get_by_label("App name (* = anything)").fill("Slack")
    await page.get_by_role("button", name="Save rule").click()
    await expect(rows.nth(1)).to_contain_text("app is “Slack”")
    await page.get_by_label("Enabled: No promos").uncheck()
    await expect(rows.filter(has_text="No promos")).to_have_attribute("data-enabled", "false")
    await page.get_by_label("App name (* = anything)").fill("x")
    await page.get_by_role("button", name="Add rule").click()
    await expect(page.locator("#rule-form-error")).to_contain_text("action")
    await page.get_by_role("button", name="Clear", exact=True).click()
    # Test against a sample.
    await page.get_by_label("App", exact=True).fill("Slack")
    await page.get_by_label("Title", exact=True).fill("standup")
    await page.get_by_role("button", name="Test", exact=True).click()
    await expect(page.locator("#rule-test-result")).to_contain_text("Quiet Slack")
    await expect(page.locator("#rule-test-result")).to_contain_text("silent")
    await page.locator("section[aria-labelledby=rules-title]").screenshot(path=docs_png("rules-editor.png"))
    stored = {r["name"]: r for r in (await phone.call("GET", "/api/v1/rules")).body["rules"]}
    assert stored["No promos"]["enabled"] is False and stored["Quiet Slack"]["match"] == {"app_name": "Slack"}
    # Delete.
    page.once("dialog", lambda d: d.accept())
    await page.get_by_role("button", name="Delete rule: Pager to phones").click()
    await expect(rows).to_have_count(2)

    # Preferences of the laptop: quiet hours, muted and blocked apps, no dismissal sync.
    await page.locator("#prefs-device").select_option(laptop)
    await page.get_by_label("Quiet hours", exact=True).check()
    await page.get_by_label("From").fill("22:00")
    await page.get_by_label("to", exact=True).fill("07:00")
    await page.get_by_label("Time zone").fill("Europe/Paris")
    await page.get_by_label("Sat").uncheck()
    await page.get_by_label("Sun").uncheck()
    await page.get_by_label("Muted apps (silent)").fill("WhatsApp, Mail")
    await page.get_by_label("Blocked apps (never shown)").fill("Candy*")
    await page.get_by_label("Dismissals made elsewhere also dismiss here").uncheck()
    await page.get_by_role("button", name="Save preferences").click()
    await expect(page.locator("#prefs-status")).to_have_text("Saved.")
    prefs = (await phone.call("GET", f"/api/v1/devices/{laptop}/preferences")).body
    assert prefs == {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Paris",
                                     "days": [0, 1, 2, 3, 4]},
                     "muted_apps": ["WhatsApp", "Mail"], "blocked_apps": ["Candy*"], "sync_dismissals": False}
    await page.locator("aside[aria-labelledby=prefs-title]").screenshot(path=docs_png("device-preferences.png"))
    await page.get_by_label("Time zone").fill("Nowhere/Land")
    await page.get_by_role("button", name="Save preferences").click()
    await expect(page.locator("#prefs-status")).to_contain_text("quiet_hours.timezone")
    # What the laptop then receives: WhatsApp silent, Candy Crush never.
    ws = await ws_connect(dash_node, phone.token, laptop)
    await phone.post("candy", device=phone_id, app_name="Candy Crush")
    await phone.post("hi", device=phone_id, app_name="WhatsApp")
    got = (await ws.recv_type("new_notification"))["data"]
    assert (got["title"], got["silent"]) == ("hi", True)
    ws.close()
    tab.assert_clean()
