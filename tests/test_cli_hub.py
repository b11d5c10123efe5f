"""``notisync rules|prefs|digest`` as real subprocesses against a real server (fixtures of tests/test_cli.py)."""
from __future__ import annotations

import json

from tests.cli_helpers import Cli
from tests.harness import User
from tests.test_cli import UUID_RE


async def test_rules_list_add_test_rm(cli: Cli, user: User) -> None:
    rid = (await cli.run("rules", "add", "--name", "quiet slack", "--app", "Slack*", "--silent",
                         "--category", "Work")).ok().out.strip()
    assert UUID_RE.match(rid)
    drop = (await cli.run("rules", "add", "--app", "*promo*", "--drop")).ok().out.strip()
    listed = (await cli.run("rules", "list")).ok().out.splitlines()
    assert len(listed) == 2 and listed[0].startswith(rid) and "quiet slack" in listed[0]
    as_json = [json.loads(line) for line in (await cli.run("rules", "--json")).ok().out.splitlines()]
    assert as_json[0]["match"] == {"app_name": "Slack*"} and as_json[0]["action"] == {"category": "Work", "silent": True}
    result = json.loads((await cli.run("rules", "--json", "test", "--app", "SlackBot")).ok().out)
    assert result["matched"] == [rid] and result["result"]["silent"] is True
    out = (await cli.run("rules", "test", "--app", "BigPromo")).ok().out
    assert drop in out and '"dropped":true' in out
    # A post the rules drop: nothing on stdout, one line on stderr, status 0.
    sent = (await cli.run("send", "--app", "BigPromo", "--title", "sale")).ok()
    assert sent.out == "" and drop in sent.err
    (await cli.run("rules", "rm", rid)).ok()
    assert len((await cli.run("rules")).ok().out.splitlines()) == 1
    err = (await cli.run("rules", "rm", rid)).one_line_error()
    assert "not found" in err
    err = (await cli.run("rules", "add", "--app", "x")).one_line_error()
    assert "action" in err


async def test_prefs_show_set_and_digest(cli: Cli, user: User) -> None:
    laptop = await user.device("desktop")
    shown = json.loads((await cli.run("prefs", "show", laptop)).ok().out)
    assert shown == {"quiet_hours": None, "muted_apps": [], "blocked_apps": [], "sync_dismissals": True}
    out = (await cli.run("prefs", "set", laptop, "--quiet", "22:00-07:00", "--timezone", "Europe/Paris",
                         "--days", "0,1,2,3,4", "--mute", "Slack,Mail", "--sync-dismissals", "off")).ok().out
    prefs = json.loads(out)
    assert prefs["quiet_hours"] == {"start": "22:00", "end": "07:00", "timezone": "Europe/Paris",
                                    "days": [0, 1, 2, 3, 4]}
    assert prefs["muted_apps"] == ["Slack", "Mail"] and prefs["sync_dismissals"] is False
    assert json.loads((await cli.run("prefs", "set", laptop, "--no-quiet", "--mute", "")).ok().out)["quiet_hours"] is None
    err = (await cli.run("prefs", "set", laptop, "--quiet", "22:00-07:00", "--timezone", "Nowhere/Land")).one_line_error()
    assert "timezone" in err
    (await cli.run("send", "--app", "Slack", "--title", "one")).ok()
    out = (await cli.run("digest", "--timezone", "UTC")).ok().out
    assert "1 notifications" in out and "Slack" in out and "Work 1" in out
    d = json.loads((await cli.run("digest", "--date", "2020-01-01", "--json")).ok().out)
    assert d["total"] == 0 and d["date"] == "2020-01-01"
    assert "date" in (await cli.run("digest", "--date", "tomorrow")).one_line_error()
