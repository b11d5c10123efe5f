"""The ``notisync`` command: a thin argparse layer over ``notisync.client.api``.

Scripts rely on its shape: stdout carries only results (``send`` prints just
the new id), every failure is one line on stderr with a non-zero status, and
``watch`` stops cleanly (status 0) on SIGINT or SIGTERM.
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from typing import Awaitable, Callable, NoReturn, Sequence

from notisync import __version__
from notisync.client import cli_hub
from notisync.client.api import NotiSyncClient
from notisync.client.config import SESSION, ClientError, ConfigDir, Json, default_config_dir
from notisync.client import cli_phone
from notisync.client.output import _local, _one_line, _out, _summary, _warn
from notisync.client.stopping import until_signalled

DEFAULT_SERVER = "http://127.0.0.1:8080"
CATEGORIES = ("Work", "Personal", "Junk")
DEVICE_TYPES = ("mobile", "web", "desktop")

Command = Callable[[NotiSyncClient, argparse.Namespace], Awaitable[int]]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other failure of this command.
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


# -- output helpers (client/output.py) ----------------------------------------------

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
        own, sender = client.session().get("device_id"), client.sender_device_id()
        for d in await client.devices():
            _out(json.dumps(d, ensure_ascii=False) if args.json else
                 f"{d['id']}  {d['device_type']:<7}  {d['status']:<7}  {d['device_name']}"
                 + ("  (this CLI)" if d["id"] == own else "  (what send posts as)" if d["id"] == sender else ""))
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
    _out(f"marked read: {_summary(await client.read(args.id))}")
    return 0


async def cmd_dismiss(client: NotiSyncClient, args: argparse.Namespace) -> int:
    _out(f"dismissed: {_summary(await client.dismiss(args.id))}")
    return 0


async def cmd_logout(client: NotiSyncClient, args: argparse.Namespace) -> int:
    try:
        client.session()
    except ClientError:
        _out("not logged in")
        return 0
    await client.logout()
    _out(f"logged out of {client.server}")
    return 0


async def cmd_whoami(client: NotiSyncClient, args: argparse.Namespace) -> int:
    me = await client.whoami()
    device = me["device"]
    where = f"; this device: {_one_line(device['device_name'])} ({device['id']})" if device else "; no device"
    _out(f"{me['user']['email']} ({me['user']['id']}) on {me['server']}{where}")
    return 0


async def cmd_watch(client: NotiSyncClient, args: argparse.Namespace) -> int:
    names: dict[str, str] = {}
    titles: dict[str, str] = {}  # notification id -> summary, for read/dismiss lines

    async def print_frames() -> None:
        async for frame in client.watch(on_notice=_warn):
            _out(json.dumps(frame, ensure_ascii=False) if args.json else await _describe(client, frame, names, titles))

    return await until_signalled(print_frames())


async def cmd_desktop(client: NotiSyncClient, args: argparse.Namespace) -> int:
    from notisync.client.desktop import run_desktop  # desktop-notifier is an optional extra

    return await until_signalled(run_desktop(client, args.backlog, _warn))


async def _describe(client: NotiSyncClient, frame: Json, names: dict[str, str], titles: dict[str, str]) -> str:
    kind, data = frame.get("type"), frame.get("data") or {}
    if kind == "new_notification":
        _remember(titles, str(data.get("id")), _summary(data))
        return f"{_local(data.get('created_at'))}  {_summary(data)}"
    when = _local(frame.get("timestamp"))
    if kind == "notification_sync":
        nid = str(data.get("notification_id"))
        if nid not in titles:
            try:  # one we did not see arrive: ask the server what it is
                _remember(titles, nid, _summary(await client.get(nid)))
            except ClientError:
                pass
        what = f"{titles[nid]} ({nid})" if nid in titles else nid
        return f"{when}  {'dismissed' if data.get('is_dismissed') else 'read'} {what}"
    if kind == "notification_updated":
        _remember(titles, str(data.get("id")), _summary(data))
        return f"{when}  updated {_summary(data)}"
    if kind == "action_invoked":
        nid = str(data.get("notification_id"))
        what = f"{titles[nid]} ({nid})" if nid in titles else nid
        reply = f": {_one_line(data.get('reply_text'))}" if data.get("reply_text") is not None else ""
        return f"{when}  action {data.get('action_id')} on {what}{reply}"
    if kind == "device_status":
        device_id = str(data.get("device_id"))
        if device_id not in names:
            try:  # a name reads better than a UUID; the id will do if this fails
                names.update({d["id"]: d["device_name"] for d in await client.devices()})
            except ClientError:
                pass
        return f"{when}  device {names.get(device_id, device_id)} {data.get('status')}"
    return f"{when}  history unavailable ({data.get('reason')}); fetching missed notifications"


def _remember(titles: dict[str, str], nid: str, summary: str) -> None:
    titles[nid] = summary
    if len(titles) > 4096:
        del titles[next(iter(titles))]  # the oldest


# -- parser and entry point -------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="notisync", description="NotiSync command line client.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--server", help="server URL [env NOTISYNC_SERVER; default: the server of the "
                                    f"last login, else {DEFAULT_SERVER}]")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # --server also after the subcommand (`notisync list --server URL`); SUPPRESS
    # keeps a subcommand without it from overwriting the one given before.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", default=argparse.SUPPRESS, help="server URL (as before the command)")

    def command(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
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
    actions.add_parser("list", parents=[common], help="list devices (the default)")
    add = actions.add_parser("add", parents=[common], help="register a device; prints its id")
    add.add_argument("name")
    add.add_argument("--type", required=True, choices=DEVICE_TYPES)
    rename = actions.add_parser("rename", parents=[common], help="rename a device")
    rename.add_argument("id")
    rename.add_argument("name")
    actions.add_parser("remove", parents=[common], help="revoke a device for good").add_argument("id")

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
    command("logout", cmd_logout, "end this CLI's session (and send's key) and forget its tokens")
    command("whoami", cmd_whoami, "show the signed-in user, server and this CLI's device")
    cli_phone.add_commands(command, common)
    return p


def _server(flag: str | None, config_dir: str) -> str:
    return (flag or os.environ.get("NOTISYNC_SERVER")
            or ConfigDir(config_dir).read(SESSION).get("server") or DEFAULT_SERVER)


async def _run(args: argparse.Namespace) -> int:
    if getattr(args, "limit", 1) < 1:
        raise ClientError("--limit must be at least 1")
    cli_phone.check(args)
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
