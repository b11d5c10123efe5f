"""``run.py adduser EMAIL`` (or ``notisync-server adduser EMAIL``): make an account on the server.

For ``--signup closed``, where ``POST /auth/register`` answers 403. It takes
the same --data-dir / --mongo-url flags and variables as the server and
writes to the same store, so it works while the server runs (SQLite in WAL
mode allows several processes). The password comes from stdin when stdin is
not a terminal (one line), else from a prompt asked twice; never from a flag,
where it would land in the shell history and the process table.
"""
from __future__ import annotations

import asyncio
import getpass
import sys
from typing import Any, Sequence

from notisync import schemas
from notisync.core.accounts import AccountService
from notisync.core.passwords import Passwords
from notisync.errors import ApiError
from notisync.runtime import startup
from notisync.runtime.config import Settings, SettingsParser, parse_settings, prog_name
from notisync.runtime.hygiene import restrict_umask, secure_data_dir
from notisync.runtime.services import make_store


def main(argv: Sequence[str]) -> int:
    prog = f"{prog_name()} adduser"
    parser = SettingsParser(
        prog=prog, add_help=False,
        description="Create an account (for --signup closed). Server flags (--data-dir, --mongo-url, ...)"
                    " select the store, as for the server.")
    parser.add_argument("email")
    if "-h" in argv or "--help" in argv:
        parser.print_help()
        print(f"\nThe password is read from stdin (one line) or asked for twice.\nExample: echo 'correct horse'"
              f" | {prog_name()} adduser ana@example.com --data-dir ./data")
        return 0
    args, rest = parser.parse_known_args(argv)
    settings = parse_settings(rest, prog=prog)
    restrict_umask()
    try:
        password = _read_password()
        data = schemas.load(schemas.REGISTER, {"email": args.email, "password": password})
        user = asyncio.run(_add(settings, data["email"], data["password"]))
    except ApiError as exc:
        detail = "; ".join(f"{k}: {' '.join(v) if isinstance(v, list) else v}" for k, v in (exc.fields or {}).items())
        return _fail(prog, f"{exc.message}{' (' + detail + ')' if detail else ''}")
    except (startup.StartupError, OSError, ValueError) as exc:
        return _fail(prog, startup.describe(exc))
    except (KeyboardInterrupt, EOFError):
        return _fail(prog, "interrupted: no account made", 130)
    where = f"MongoDB {startup.safe_url(settings.mongo_url)}" if settings.mongo_url else settings.data_dir
    print(f"created {user['email']} (id {user['id']}) in {where}")
    return 0


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password (at least 8 characters): ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


async def _add(settings: Settings, email: str, password: str) -> dict[str, Any]:
    if settings.mongo_url:
        await startup.check_dependencies(Settings(mongo_url=settings.mongo_url))
    else:
        if startup.prepare_data_dir(settings.data_dir):
            print(f"note: data dir {settings.data_dir} did not exist; created it", file=sys.stderr)
        secure_data_dir(settings.data_dir)
    store = make_store(settings)
    await store.open()
    try:
        # Registering touches only the store: no sessions, devices or redis are
        # needed, and the operator is not rate-limited per address.
        passwords = Passwords(1)
        accounts = AccountService(store, None, None, _Unlimited(), passwords)  # type: ignore[arg-type]
        try:
            return await accounts.register(email, password, "adduser")
        finally:
            passwords.close()
    finally:
        await store.close()


class _Unlimited:
    """The sign-in limits of ``run.py adduser``: none (it runs on the server, as its operator)."""

    async def register_attempt(self, client: str) -> None:
        return None


def _fail(prog: str, message: str, code: int = 1) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code
