"""The pure matching of notisync/core/rules.py: globs without regular expressions, override order."""
from __future__ import annotations

import time

from notisync.core.rules import Glob, RuleSet, app_test


def test_globs_are_case_insensitive_and_literal_apart_from_the_star() -> None:
    cases = [("Slack", "slack", True), ("slack", "SLACK", True), ("Sl*", "Slackbot", True), ("*bot", "SlackBot", True),
             ("*ack*", "Slack", True), ("S*a*k", "Slack", True), ("S*a*k", "Sak", True), ("S*a*k", "Sk", False), ("a.b", "axb", False),
             ("[a]", "[A]", True), ("(x+)+y", "xxxx", False), ("*", "", True), ("a**b", "ab", True),
             ("ab*ba", "aba", False), ("ÉCOLE", "école", True)]
    for pattern, text, expected in cases:
        assert Glob.compile(pattern).matches(text.casefold()) is expected, (pattern, text)
        assert app_test(pattern)(text.casefold()) is expected, (pattern, text)


def test_a_hostile_pattern_stays_linear() -> None:
    glob = Glob.compile("*a" * 100 + "*b")
    start = time.process_time()
    for _ in range(100):
        assert not glob.matches("a" * 200)
    assert time.process_time() - start < 5  # a backtracking engine would take ages; this is ~ms


def test_every_match_applies_in_order_later_overrides() -> None:
    rules = RuleSet.compile([
        {"id": "1", "match": {"app_name": "Mail"}, "action": {"category": "Work", "drop": True, "silent": True}},
        {"id": "2", "match": {"category": "Work"}, "action": {"drop": False, "priority": 3}},
        {"id": "3", "enabled": False, "match": {}, "action": {"drop": True}},
        {"id": "4", "match": {"title_contains": "URGENT", "source_device_id": "d1"},
         "action": {"only_device_types": ["mobile"], "skip_device_ids": ["d2"]}},
    ])
    d = rules.decide({"app_name": "mail", "title": "urgent!", "priority": 0}, "d1")
    assert d.matched == ["1", "2", "4"] and (d.category, d.priority, d.silent, d.dropped) == ("Work", 3, True, False)
    assert d.route == {"types": ["mobile"], "skip": ["d2"]}
    # A condition on category sees the category set so far (here: rule 1's).
    d = rules.decide({"app_name": "Mail", "title": "hi", "category": "Junk"}, None)
    assert d.matched == ["1", "2"] and not d.dropped and d.category == "Work"
    d = RuleSet.compile([{"id": "9", "match": {"app_name": "*promo*"}, "action": {"drop": True}}]).decide(
        {"app_name": "BigPromo"}, None)
    assert d.dropped and d.drop_rule == "9" and d.category == "Personal"
