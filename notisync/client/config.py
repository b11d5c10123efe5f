"""The client's state on disk, and its one error type.

One config dir (mode 0700, files 0600: they hold bearer tokens; passwords
are never stored), read and written under a lock so several ``notisync``
processes (a ``watch`` and a ``send``) share it safely.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from typing import Any, Iterator

Json = dict[str, Any]

SESSION, DEVICES, WATCH = "session.json", "devices.json", "watch.json"


class ClientError(Exception):
    """Any failure, as one line a person can act on; ``code`` is the server's."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(" ".join(str(message).split()))
        self.code = code
        self.status = status


def default_config_dir() -> str:
    if os.environ.get("NOTISYNC_CONFIG_DIR"):
        return os.environ["NOTISYNC_CONFIG_DIR"]
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "notisync")


class ConfigDir:
    """Small JSON files, replaced atomically so a reader never sees half a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def read(self, name: str) -> Json:
        path = os.path.join(self.path, name)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ClientError(f"cannot read {path}: {exc}") from None
        return data if isinstance(data, dict) else {}

    def write(self, name: str, data: Json) -> None:
        path = os.path.join(self.path, name)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            self._ensure_dir()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1)
            os.replace(tmp, path)
        except OSError as exc:
            raise ClientError(f"cannot write {path}: {exc}") from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive across processes: a running ``watch`` and a ``send`` share tokens."""
        self._ensure_dir()
        fd = os.open(os.path.join(self.path, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _ensure_dir(self) -> None:
        if not os.path.isdir(self.path):
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            os.chmod(self.path, 0o700)  # makedirs' mode is filtered by the umask


