"""The document store's part for rules, device preferences and digest schedules.

``DocumentStore`` inherits these; ``sqlite_hub.py`` and ``mongo_hub.py``
implement them, and ``tests/test_store_contract.py`` holds both to one
contract. A rule is ``{id, user_id, name, enabled, position, match, action,
created_at}`` (``match`` and ``action`` are plain dicts, validated above
this floor); preferences are one dict per device; a digest schedule one
dict per user.
"""
from __future__ import annotations

import abc

Record = dict

RULE_FIELDS = ("name", "enabled", "position", "match", "action")


class HubStore(abc.ABC):
    # -- rules ----------------------------------------------------------------
    @abc.abstractmethod
    async def list_rules(self, user_id: str) -> list[Record]:
        """The user's rules ordered by (position, created_at, id)."""

    @abc.abstractmethod
    async def create_rule(self, rule: Record, limit: int) -> Record | None:
        """Insert a rule; ``position`` None means after the last one.

        None (and nothing inserted) if the user already has ``limit`` rules;
        the count and the insert are one atomic step where the store allows.
        """

    @abc.abstractmethod
    async def update_rule(self, user_id: str, rule_id: str, fields: Record) -> Record | None:
        """Set some of RULE_FIELDS; the rule after the change, or None if the user has no such rule."""

    @abc.abstractmethod
    async def delete_rule(self, user_id: str, rule_id: str) -> bool: ...

    # -- device preferences ---------------------------------------------------
    @abc.abstractmethod
    async def get_preferences(self, user_id: str) -> dict[str, Record]:
        """device id -> stored preferences, for every device of the user that has any."""

    @abc.abstractmethod
    async def update_preferences(self, user_id: str, device_id: str, fields: Record) -> Record:
        """Set these top-level fields of the device's stored preferences (inserted if none), atomically:
        concurrent updates of different fields all survive. Returns the stored preferences after it."""

    # -- digest schedules -----------------------------------------------------
    @abc.abstractmethod
    async def get_digest_schedule(self, user_id: str) -> Record | None: ...

    @abc.abstractmethod
    async def set_digest_schedule(self, user_id: str, schedule: Record) -> None:
        """Replace the user's schedule (insert if none)."""

    @abc.abstractmethod
    async def list_digest_schedules(self) -> list[Record]:
        """Every enabled schedule, each with its ``user_id``."""
