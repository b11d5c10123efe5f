"""File modes of the data dir: private to the server's user, for new and existing installs.

The data dir holds password hashes, notification bodies (one-time codes),
the token signing secret and redis's append-only file. ``os.umask(0o077)``
at start makes everything created from then on private (the embedded
redis-server inherits it); ``secure_data_dir`` fixes what an older version
left readable by other local users.
"""
from __future__ import annotations

import logging
import os
import stat

log = logging.getLogger(__name__)

UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
# What the server keeps in --data-dir (README "What the embedded defaults are").
PRIVATE_FILES = (
    "notisync.sqlite3", "notisync.sqlite3-wal", "notisync.sqlite3-shm",
    "appendonly.aof", "redis.conf", "redis.log", "redis.pid", "redis.lock", "jwt_secret",
)
SECRET_FILE = "jwt_secret"


def restrict_umask() -> None:
    """Everything this process (and its redis-server) creates is private from now on."""
    os.umask(UMASK)


def secure_data_dir(data_dir: str) -> None:
    """Create the data dir (0700) and make it and the server's files in it private.

    A loose ``jwt_secret`` is the one worth a WARNING: anyone who read it
    can mint tokens for every user, so the operator should rotate it.
    """
    os.makedirs(data_dir, mode=DIR_MODE, exist_ok=True)
    _restrict(data_dir, DIR_MODE)
    for name in PRIVATE_FILES:
        path = os.path.join(data_dir, name)
        loose = _restrict(path, FILE_MODE)
        if loose is not None and name == SECRET_FILE:
            log.warning("%s was readable by others (mode %o); fixed to %o. Anyone who read it could sign"
                        " tokens: consider a new secret (delete the file and restart; users log in again)",
                        path, loose, FILE_MODE)


def _restrict(path: str, mode: int) -> int | None:
    """chmod ``path`` to ``mode`` if group or others have any access; the old mode, or None."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
        return None  # a symlink's target is not ours to change; already private
    os.chmod(path, mode)
    return stat.S_IMODE(st.st_mode)
