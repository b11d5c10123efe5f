"""The ``notisync`` command: a thin argparse layer over ``notisync.client.api``.

Scripts rely on its shape: stdout carries only results (``send`` prints just
the new id), every failure is one line on stderr with a non-zero status, and
``watch`` stops cleanly (status 0) on SIGINT or SIGTERM.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import json
import os
import re
import signal
import sys
from typing import Any, Awaitable, Callable, NoReturn, Sequence

from notisync import __version__
from notisync.client import cli_hub
from notisync.client.api import NotiSyncClient
from notisync.client.config import SESSION, ClientError, ConfigDir, Json, default_config_dir

DEFAULT_SERVER = "http://127.0.0.1:8080"
CATEGORIES = ("Work", "Personal", "Junk")
DEVICE_TYPES = ("mobile", "web", "desktop")

Command = Callable[[NotiSyncClient, argparse.Namespace], Awaitable[int]]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other failure of this command.
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


# -- output helpers -------------------------------------------------------------

def _out(line: str) -> None:
    # Last line of defence: text that reached here unsanitised (a device name, a JSON
    # string: json escapes C0 but not C1) shows its controls as \uXXXX, inert and valid JSON.
    line = _CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", line)
    print(line, flush=True)  # flush: stdout is often a pipe read line by line


def _warn(line: str) -> None:
    print(f"notisync: {line}", file=sys.stderr, flush=True)


def _local(stamp: str | None) -> str:
    """ISO-8601 UTC from the server, shown in local time."""
    try:
        return dt.datetime.fromisoformat(str(stamp)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(stamp)


# Notification text is written by other people's apps: printed raw, an escape
# sequence could retitle the window, write the clipboard (OSC 52) or redraw
# the screen. Whole sequences go first (else their parameters would remain),
# then any other C0/C1 control or DEL.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC, DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]?"  # any other ESC sequence, or a lone ESC
)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    """``text`` without terminal escape sequences; other control characters become spaces."""
    return _CONTROLS.sub(" ", _ESCAPES.sub("", text))


def _one_line(text: Any) -> str:
    return " ".join(_printable(str(text or "")).split())


def _summary(n: Json) -> str:
    text = f"{_one_line(n.get('app_name'))}: {_one_line(n.get('title'))}"
    body = _one_line(n.get("body"))
    return f"{text} — {body}" if body else text


def _state(n: Json) -> str:
    return "dismissed" if n.get("is_dismissed") else "read" if n.get("is_read") else "unread"


def _print_notifications(items: list[Json], as_json: bool) -> None:
    for n in items:
        _out(json.dumps(n, ensure_ascii=False) if as_json
             else f"{n['id']}  {_local(n.get('created_at'))}  {_state(n):<9}  {_summary(n)}")


# -- commands -------------------------------------------------------------------

def _password(args: argparse.Namespace) -> str:
    if args.password:
        return str(args.password)
    if os.environ.get("NOTISYNC_PASSWORD"):
        return os.environ["NOTISYNC_PASSWORD"]
    try:
        if sys.stdin.isatty():
            value = getpass.getpass("Password: ")
        else:  # piped in: `echo "$PW" | notisync login --email …`
            value = sys.stdin.readline().rstrip("\n")
    except EOFError:
        value = ""
    if not value:
        raise ClientError("no password given (use --password, NOTISYNC_PASSWORD or a terminal)")
    return value


async def cmd_register(client: NotiSyncClient, args: argparse.Namespace) -> int:
    user = await client.register(args.email, _password(args))
    _out(f"registered {user['email']} ({user['id']})")
    return 0


async def cmd_login(client: NotiSyncClient, args: argparse.Namespace) -> int:
    result = await client.login(args.email, _password(args))
    _out(f"logged in as {result['user']['email']}; this device: {result['device']['id']}")
    return 0


async def cmd_devices(client: NotiSyncClient, args: argparse.Namespace) -> int:
    if args.action == "add":
        _out((await client.add_device(args.name, args.type))["id"])
    elif args.action == "rename":
        await client.rename_device(args.id, args.name)
    elif args.action == "remove":
        await client.remove_device(args.id)
    else:
        own = client.session().get("device_id")
        for d in await client.devices():
            _out(json.dumps(d, ensure_ascii=False) if args.json else
                 f"{d['id']}  {d['device_type']:<7}  {d['status']:<7}  {d['device_name']}"
                 + ("  (this CLI)" if d["id"] == own else ""))
    return 0


async def cmd_send(client: NotiSyncClient, args: argparse.Namespace) -> int:
    n = await client.send(args.app, args.title, args.body or "", args.category, args.priority)
    if n.get("dropped"):  # 202: one of the user's rules dropped it; nothing stored or sent
        _warn(f"dropped by rule {n.get('rule_id')}")
        return 0
    _out(n["id"])
    return 0


async def cmd_list(client: NotiSyncClient, args: argparse.Namespace) -> int:
    unread = "false" if args.unread else None
    items = await client.list(args.limit, app_name=args.app, category=args.category, is_read=unread,
                              q=getattr(args, "query", None))
    _print_notifications(items, args.json)
    return 0


async def cmd_read(client: NotiSyncClient, args: argparse.Namespace) -> int:
    await client.read(args.id)
    return 0


async def cmd_dismiss(client: NotiSyncClient, args: argparse.Namespace) -> int:
    await client.dismiss(args.id)
    return 0


async def cmd_watch(client: NotiSyncClient, args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    names: dict[str, str] = {}
    try:
        async for frame in client.watch(on_notice=_warn):
            _out(json.dumps(frame, ensure_ascii=False) if args.json else await _describe(client, frame, names))
    except asyncio.CancelledError:
        return 0  # interrupted: the normal way to stop watching
    return 0


async def cmd_desktop(client: NotiSyncClient, args: argparse.Namespace) -> int:
    from notisync.client.desktop import run_desktop  # desktop-notifier is an optional extra

    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await run_desktop(client, args.backlog, _warn)
    except asyncio.CancelledError:
        return 0  # stopped (logout, systemctl stop): the normal way out
    return 0


async def _describe(client: NotiSyncClient, frame: Json, names: dict[str, str]) -> str:
    kind, data = frame.get("type"), frame.get("data") or {}
    if kind == "new_notification":
        return f"{_local(data.get('created_at'))}  {_summary(data)}"
    when = _local(frame.get("timestamp"))
    if kind == "notification_sync":
        return f"{when}  {'dismissed' if data.get('is_dismissed') else 'read'} {data.get('notification_id')}"
    if kind == "notification_updated":
        return f"{when}  updated {_summary(data)}"
    if kind == "action_invoked":
        reply = f": {_one_line(data.get('reply_text'))}" if data.get("reply_text") is not None else ""
        return f"{when}  action {data.get('action_id')} on {data.get('notification_id')}{reply}"
    if kind == "device_status":
        device_id = str(data.get("device_id"))
        if device_id not in names:
            try:  # a name reads better than a UUID; the id will do if this fails
                names.update({d["id"]: d["device_name"] for d in await client.devices()})
            except ClientError:
                pass
        return f"{when}  device {names.get(device_id, device_id)} {data.get('status')}"
    return f"{when}  history unavailable ({data.get('reason')}); fetching missed notifications"


# -- parser and entry point -------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="notisync", description="NotiSync command line client.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--server", help="server URL [env NOTISYNC_SERVER; default: the server of the "
                                    f"last login, else {DEFAULT_SERVER}]")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text, description=help_text)
        parser.set_defaults(func=func)
        return parser

    for name, func, text in (("register", cmd_register, "create an account"),
                             ("login", cmd_login, "log in and register this computer as a desktop device")):
        c = command(name, func, text)
        c.add_argument("--email", required=True)
        c.add_argument("--password", help="else NOTISYNC_PASSWORD, else prompt")

    d = command("devices", cmd_devices, "list devices, or add, rename or remove one")
    d.add_argument("--json", action="store_true", help="one JSON object per line")
    actions = d.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="list devices (the default)")
    add = actions.add_parser("add", help="register a device; prints its id")
    add.add_argument("name")
    add.add_argument("--type", required=True, choices=DEVICE_TYPES)
    rename = actions.add_parser("rename", help="rename a device")
    rename.add_argument("id")
    rename.add_argument("name")
    actions.add_parser("remove", help="revoke a device for good").add_argument("id")

    s = command("send", cmd_send, "post a notification; prints its id")
    s.add_argument("--app", required=True)
    s.add_argument("--title", required=True)
    s.add_argument("--body")
    s.add_argument("--category", choices=CATEGORIES)
    s.add_argument("--priority", type=int)

    for name, text in (("list", "list notifications, newest first"), ("search", "full-text search")):
        c = command(name, cmd_list, text)
        if name == "search":
            c.add_argument("query")
        c.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
        c.add_argument("--app")
        c.add_argument("--category", choices=CATEGORIES)
        c.add_argument("--unread", action="store_true", help="only unread ones")
        c.add_argument("--json", action="store_true", help="one JSON object per line")

    command("read", cmd_read, "mark a notification read").add_argument("id")
    command("dismiss", cmd_dismiss, "dismiss a notification").add_argument("id")
    w = command("watch", cmd_watch, "print notifications as they arrive until interrupted")
    w.add_argument("--json", action="store_true", help="print each frame as one JSON line")

    def hub_command(name: str, func: Callable[..., Awaitable[int]], text: str) -> argparse.ArgumentParser:
        return command(name, lambda client, args: func(client, args, _out), text)

    cli_hub.add_commands(hub_command)
    dk = command("desktop", cmd_desktop, "show notifications as desktop pop-ups until interrupted (README: Desktop pop-ups)")
    dk.add_argument("--backlog", type=int, default=5, help="more missed than this on start: one summary pop-up")
    return p


def _server(flag: str | None, config_dir: str) -> str:
    return (flag or os.environ.get("NOTISYNC_SERVER")
            or ConfigDir(config_dir).read(SESSION).get("server") or DEFAULT_SERVER)


async def _run(args: argparse.Namespace) -> int:
    if getattr(args, "limit", 1) < 1:
        raise ClientError("--limit must be at least 1")
    config_dir = default_config_dir()
    client = NotiSyncClient(_server(args.server, config_dir), config_dir)
    return await args.func(client, args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except ClientError as exc:
        _warn(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `notisync list | head -1`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except Exception as exc:  # a bug: still one line, never a traceback (NOTISYNC_DEBUG=1 shows it)
        if os.environ.get("NOTISYNC_DEBUG"):
            raise
        _warn(f"unexpected error: {exc!r}")
    return 1
