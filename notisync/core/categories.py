"""The built-in category of well-known apps, used when neither the phone nor a rule gives one.

Keys are lower-case app names or Android package names; a notification's
``app_name`` is looked up as given (lower-cased), then by its last dotted
part for package names. Anything unknown is ``Personal``. README lists this
table ("Rules, preferences and digest").
"""
from __future__ import annotations

DEFAULT = "Personal"

_WORK = (
    "slack", "com.slack", "microsoft teams", "teams", "com.microsoft.teams", "outlook",
    "com.microsoft.office.outlook", "zoom", "us.zoom.videomeetings", "jira", "com.atlassian.android.jira.core",
    "confluence", "github", "com.github.android", "gitlab", "google meet", "com.google.android.apps.meetings",
    "google calendar", "calendar", "com.google.android.calendar", "trello", "asana", "linear", "notion",
    "webex", "linkedin", "com.linkedin.android", "pagerduty", "com.pagerduty.android", "jenkins", "sentry",
)
_JUNK = (
    "temu", "com.einnovation.temu", "shein", "com.zzkko", "wish", "aliexpress", "com.alibaba.aliexpresshd",
    "candy crush", "com.king.candycrushsaga", "groupon", "com.groupon", "offers", "promotions", "ads",
)
_PERSONAL = (
    "whatsapp", "com.whatsapp", "signal", "org.thoughtcrime.securesms", "telegram", "org.telegram.messenger",
    "messages", "com.google.android.apps.messaging", "messenger", "com.facebook.orca", "instagram",
    "com.instagram.android", "gmail", "com.google.android.gm", "phone", "sms", "imessage",
)

TABLE: dict[str, str] = {
    **{name: "Work" for name in _WORK},
    **{name: "Junk" for name in _JUNK},
    **{name: "Personal" for name in _PERSONAL},
}


def category_for(app_name: str) -> str:
    key = app_name.strip().lower()
    found = TABLE.get(key)
    if found is None and "." in key:
        found = TABLE.get(key.rsplit(".", 1)[1])
    return found or DEFAULT
