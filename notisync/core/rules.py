"""Rules, compiled and applied: pure functions, no I/O (the cache is ``rulebook.py``).

No pattern a user writes ever reaches a regular-expression engine: an
``app_name`` glob is split at its ``*``s into literal pieces matched in
order with ``str.find``, which is linear in the text whatever the pattern
(no backtracking to blow up). Substring conditions are ``in`` on
case-folded text.

Rules whose ``app_name`` has no ``*`` are indexed by that name, so a
notification is tested only against the rules for its own app and the
rules without an exact app name: 100 rules cost little more than none.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from notisync.core.categories import category_for

MAX_RULES = 100


def _fold(text: str | None) -> str:
    return (text or "").casefold()


@dataclass(frozen=True, slots=True)
class Glob:
    """A case-insensitive ``*`` pattern: literal pieces that must appear in order."""

    pieces: tuple[str, ...]

    @classmethod
    def compile(cls, pattern: str) -> "Glob":
        return cls(tuple(_fold(pattern).split("*")))

    def matches(self, text: str) -> bool:  # ``text`` is already folded
        pieces = self.pieces
        if len(pieces) == 1:
            return text == pieces[0]
        first, last = pieces[0], pieces[-1]
        if not text.startswith(first) or len(text) < len(first) + len(last) or not text.endswith(last):
            return False
        at, end = len(first), len(text) - len(last)
        for piece in pieces[1:-1]:
            found = text.find(piece, at, end)
            if found < 0:
                return False
            at = found + len(piece)
        return True


def app_test(pattern: str) -> Callable[[str], bool]:
    """The fastest test for a glob: the common shapes ("x", "x*", "*x", "*x*") need no loop."""
    glob = Glob.compile(pattern)
    pieces = glob.pieces
    if len(pieces) == 1:
        return pieces[0].__eq__  # type: ignore[return-value]
    if len(pieces) == 2 and not pieces[1]:
        first = pieces[0]
        return lambda text: text.startswith(first)
    if len(pieces) == 2 and not pieces[0]:
        last = pieces[1]
        return lambda text: text.endswith(last)
    if len(pieces) == 3 and not pieces[0] and not pieces[2]:
        middle = pieces[1]
        return lambda text: middle in text
    return glob.matches


@dataclass(frozen=True, slots=True)
class Compiled:
    id: str
    order: int
    app: Callable[[str], bool] | None
    title: str | None
    body: str | None
    category: str | None
    source: str | None
    action: dict[str, Any]

    def matches(self, app: str, title: str, body: str, category: str, source: str | None) -> bool:
        return (
            (self.app is None or self.app.matches(app))
            and (self.title is None or self.title in title)
            and (self.body is None or self.body in body)
            and (self.category is None or self.category == category)
            and (self.source is None or self.source == source)
        )


@dataclass(frozen=True)
class Decision:
    matched: list[str]
    category: str
    priority: int
    silent: bool
    dropped: bool
    drop_rule: str | None
    route: dict[str, list[str]] | None  # {"types": [...]} and/or {"skip": [ids]}, None: everyone


@dataclass
class RuleSet:
    """A user's enabled rules, compiled, in position order."""

    by_app: dict[str, list[Compiled]] = field(default_factory=dict)
    other: list[Compiled] = field(default_factory=list)
    count: int = 0
    _merged: dict[str, list[Compiled]] = field(default_factory=dict)  # app -> its rules + the others, in order

    @classmethod
    def compile(cls, rules: Iterable[dict[str, Any]]) -> "RuleSet":
        out = cls()
        for order, rule in enumerate(rules):  # the store lists them in position order
            if not rule.get("enabled", True):
                continue
            m = rule.get("match") or {}
            app = m.get("app_name")
            compiled = Compiled(
                rule["id"], order, app_test(app) if app is not None else None,
                _fold(m["title_contains"]) if m.get("title_contains") is not None else None,
                _fold(m["body_contains"]) if m.get("body_contains") is not None else None,
                m.get("category"), m.get("source_device_id"), dict(rule.get("action") or {}),
            )
            out.count += 1
            if app is not None and "*" not in app:
                out.by_app.setdefault(_fold(app), []).append(compiled)
            else:
                out.other.append(compiled)
        return out

    def candidates(self, app: str) -> list[Compiled]:
        exact = self.by_app.get(app)
        if not exact:
            return self.other
        if not self.other:
            return exact
        merged = self._merged.get(app)
        if merged is None:  # at most one per distinct app name with rules of its own
            merged = self._merged[app] = sorted(exact + self.other, key=lambda c: c.order)
        return merged

    def decide(self, data: dict[str, Any], source: str | None) -> Decision:
        """What the rules make of a posted notification (``data`` as validated)."""
        given = data.get("category")
        category = given or category_for(data["app_name"])
        priority = data.get("priority", 0) or 0
        silent = dropped = False
        drop_rule: str | None = None
        types: list[str] | None = None
        skip: list[str] | None = None
        matched: list[str] = []
        if self.count:
            app = _fold(data["app_name"])
            title, body = _fold(data.get("title")), _fold(data.get("body"))
            for rule in self.candidates(app):
                # Compiled.matches, inlined: this loop is the per-notification cost of rules.
                if rule.app is not None and not rule.app(app):
                    continue
                if (rule.title is not None and rule.title not in title) or (
                        rule.body is not None and rule.body not in body):
                    continue
                if (rule.category is not None and rule.category != category) or (
                        rule.source is not None and rule.source != source):
                    continue
                matched.append(rule.id)
                a = rule.action
                if "category" in a:
                    category = a["category"]
                if "priority" in a:
                    priority = a["priority"]
                if "silent" in a:
                    silent = bool(a["silent"])
                if "drop" in a:
                    dropped = bool(a["drop"])
                    drop_rule = rule.id if dropped else None
                if "only_device_types" in a:
                    types = list(a["only_device_types"])
                if "skip_device_ids" in a:
                    skip = list(a["skip_device_ids"])
        route: dict[str, list[str]] = {}
        if types is not None:
            route["types"] = types
        if skip:
            route["skip"] = skip
        return Decision(matched, category, priority, silent, dropped, drop_rule, route or None)


def routed_to(route: dict[str, list[str]] | None, device_id: str, device_type: str | None) -> bool:
    """Whether a notification with this ``route`` may reach the device."""
    if not route:
        return True
    if "types" in route and device_type not in route["types"]:
        return False
    if "only" in route and device_id not in route["only"]:
        return False
    return device_id not in route.get("skip", ())
