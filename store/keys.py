"""Every Redis key and channel name, built in one place under one prefix."""
from __future__ import annotations


class Keys:
    def __init__(self, prefix: str = "notisync") -> None:
        self.prefix = prefix

    # Everything of one user lives under the hash tag {user id}: in a Redis
    # Cluster all of it shares one slot, so every multi-key script (a fan-out
    # touches the user's epoch, device-list version, marker and every device's
    # stream) runs on one shard, and the user's wake-up channel is a shard
    # channel of that same slot. On a single Redis the braces change nothing.
    def _user(self, user_id: str) -> str:
        return f"{self.prefix}:u:{{{user_id}}}"

    def epoch(self, user_id: str) -> str:
        """When the user's stream data began (ms); changes if Redis loses it (a shard, in a cluster)."""
        return f"{self._user(user_id)}:epoch"

    def stream(self, user_id: str, device_id: str) -> str:
        """The device's sync stream: entries {p: previous id, b: envelope}."""
        return f"{self._user(user_id)}:s:{device_id}"

    def last(self, user_id: str, device_id: str) -> str:
        """Id of the newest entry ever added to the device's stream."""
        return f"{self._user(user_id)}:l:{device_id}"

    def cursor(self, user_id: str, device_id: str) -> str:
        """Id of the newest entry the device's client confirmed (where a socket without last_id resumes)."""
        return f"{self._user(user_id)}:c:{device_id}"

    def fanout(self, user_id: str, notification_id: str) -> str:
        """Set (with a TTL) by the fan-out that appended this notification: later attempts append nothing."""
        return f"{self._user(user_id)}:f:{notification_id}"

    def device_version(self, user_id: str) -> str:
        """Counter bumped whenever the user's set of live devices changes (missing = 0)."""
        return f"{self._user(user_id)}:dv"

    def rules_version(self, user_id: str) -> str:
        """Counter bumped whenever the user's rules change: nodes reload their cached copy."""
        return f"{self._user(user_id)}:rv"

    def presence(self, user_id: str) -> str:
        """Sorted set of live sockets of the user: member device|node|conn, score = expiry ms."""
        return f"{self._user(user_id)}:pr"

    def user_channel(self, user_id: str) -> str:
        """The user's wake-up channel (a shard channel in a cluster: SPUBLISH/SSUBSCRIBE)."""
        return f"{self._user(user_id)}:ch"

    def user_from_channel(self, channel: str) -> str:
        return channel[channel.index("{") + 1 : channel.rindex("}")]

    def node_channel(self, node_id: str) -> str:
        """A channel nobody publishes to: keeps a node's bus connection in subscribed mode."""
        return f"{self.prefix}:node:{node_id}"

    def session(self, session_id: str) -> str:
        """A live session (sign-in): hash {user, device}, a cache of the store's record; expires with its refresh tokens."""
        return f"{self.prefix}:se:{session_id}"

    def ws_ticket(self, ticket: str) -> str:
        """A single-use /ws ticket (30 s): "user|session|token expiry"."""
        return f"{self.prefix}:tk:{ticket}"

    def login_attempts(self, email: str, client: str) -> str:
        """Failed logins for one email from one address (GCRA state, see store/ratelimit.py)."""
        return f"{self.prefix}:rl:login:{email}:{client}"

    def login_address(self, client: str) -> str:
        """Failed logins from one address, whatever the email (password spraying)."""
        return f"{self.prefix}:rl:loginip:{client}"

    def register_address(self, client: str) -> str:
        """Registrations from one address."""
        return f"{self.prefix}:rl:register:{client}"

    def post_rate(self, user_id: str) -> str:
        """The user's post-rate state (GCRA: when the bucket is next empty, ms); expires when idle."""
        return f"{self._user(user_id)}:rl:post"

    def api_key(self, key_hash: str) -> str:
        """A device API key's owner, "user|key id|device" (a cache of the store's record)."""
        return f"{self.prefix}:ak:{key_hash}"
