"""Every Redis key and channel name, built in one place under one prefix."""
from __future__ import annotations


class Keys:
    def __init__(self, prefix: str = "notisync") -> None:
        self.prefix = prefix

    @property
    def epoch(self) -> str:
        """When this Redis's stream data began (ms); changes if Redis loses it."""
        return f"{self.prefix}:epoch"

    def stream(self, device_id: str) -> str:
        """The device's sync stream: entries {p: previous id, b: envelope}."""
        return f"{self.prefix}:s:{device_id}"

    def last(self, device_id: str) -> str:
        """Id of the newest entry ever added to the device's stream."""
        return f"{self.prefix}:l:{device_id}"

    def cursor(self, device_id: str) -> str:
        """Id of the newest entry written to one of the device's sockets."""
        return f"{self.prefix}:c:{device_id}"

    def fanout(self, notification_id: str) -> str:
        """Set (with a TTL) by the fan-out that appended this notification: later attempts append nothing."""
        return f"{self.prefix}:f:{notification_id}"

    def device_version(self, user_id: str) -> str:
        """Counter bumped whenever the user's set of live devices changes (missing = 0)."""
        return f"{self.prefix}:dv:{user_id}"

    def rules_version(self, user_id: str) -> str:
        """Counter bumped whenever the user's rules change: nodes reload their cached copy."""
        return f"{self.prefix}:rv:{user_id}"

    def presence(self, user_id: str) -> str:
        """Sorted set of live sockets of the user: member device|node|conn, score = expiry ms."""
        return f"{self.prefix}:pr:{user_id}"

    def user_channel(self, user_id: str) -> str:
        return f"{self.prefix}:ch:{user_id}"

    def user_from_channel(self, channel: str) -> str:
        return channel.rsplit(":", 1)[1]

    def session(self, session_id: str) -> str:
        """A live session (sign-in): hash {user, device}, a cache of the store's record; expires with its refresh tokens."""
        return f"{self.prefix}:se:{session_id}"

    def ws_ticket(self, ticket: str) -> str:
        """A single-use /ws ticket (30 s): "user|session|token expiry"."""
        return f"{self.prefix}:tk:{ticket}"

    def login_attempts(self, email: str, client: str) -> str:
        return f"{self.prefix}:rl:login:{email}:{client}"

    def post_rate(self, user_id: str) -> str:
        """The user's post-rate state (GCRA: when the bucket is next empty, ms); expires when idle."""
        return f"{self.prefix}:rl:post:{user_id}"
