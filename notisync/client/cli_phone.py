"""The phone side of the ``notisync`` command: ``api-key`` and ``forward`` (see cli.py for the rest)."""
from __future__ import annotations

import argparse
import os
from typing import Any, Callable

from notisync.client.api import NotiSyncClient
from notisync.client.config import ClientError, ConfigDir, default_config_dir
from notisync.client.forward import FORWARD, IGNORED, LIST_COMMAND, Forwarder, load_key, run
from notisync.client.output import _local, _one_line, _out, _warn
from notisync.client.stopping import until_signalled


async def cmd_api_key(client: NotiSyncClient, args: argparse.Namespace) -> int:
    if args.action == "create":
        device_id = args.device
        if args.new_device:
            device_id = (await client.add_device(args.new_device, "mobile"))["id"]
        created = await client.create_api_key(device_id, args.name)
        _out(created["key"])  # stdout: the key alone, for `> phone.key`
        _warn(f"API key {created['id']} for device {device_id}: store it now, it is not shown again")
    elif args.action == "list":
        devices = await client.devices()
        for device in devices if not args.device else [d for d in devices if d["id"] == args.device] or [
                {"id": args.device, "device_name": args.device}]:
            for k in await client.api_keys(device["id"]):
                used = _local(k["last_used_at"]) if k.get("last_used_at") else "never used"
                _out(f"{k['id']}  {_one_line(device['device_name'])}  {_one_line(k.get('name') or '-')}"
                     f"  created {_local(k['created_at'])}  {used}")
    else:
        device_id = args.device or await client.find_api_key(args.id)
        await client.revoke_api_key(device_id, args.id)
        _out(f"revoked API key {args.id}")
    return 0


async def cmd_forward(client: NotiSyncClient, args: argparse.Namespace) -> int:
    key = load_key(args.key_file)
    config = ConfigDir(os.path.dirname(os.path.abspath(args.state)) if args.state else default_config_dir())
    state_name = os.path.basename(args.state) if args.state else FORWARD
    forwarder = Forwarder(client.server, key, config, state_name, tuple(args.ignore or IGNORED),
                          say=lambda line: _out(_one_line(line)), warn=_warn)
    if args.once:
        return await run(forwarder, args.command, args.interval, True, _warn)
    # Stopped by a signal: the state file already holds every accepted step.
    return await until_signalled(run(forwarder, args.command, args.interval, False, _warn))


def add_commands(command: Callable[[str, Any, str], argparse.ArgumentParser], common: argparse.ArgumentParser
                 ) -> None:
    k = command("api-key", cmd_api_key, "create, list or revoke device API keys (for phones and automation apps)")
    actions = k.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", parents=[common], help="make a key; prints it (shown once)")
    target = create.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", help="the device id the key acts as")
    target.add_argument("--new-device", metavar="NAME", help="register a new mobile device with this name")
    create.add_argument("--name", help="a label, e.g. Tasker")
    listing = actions.add_parser("list", parents=[common], help="list keys (never the keys themselves)")
    listing.add_argument("--device", help="only this device's")
    revoke = actions.add_parser("revoke", parents=[common], help="revoke a key on every server node within 1 s")
    revoke.add_argument("id")
    revoke.add_argument("--device", help="the key's device (found if omitted)")

    f = command("forward", cmd_forward, "Android/Termux: post the phone's notifications (termux-notification-list)"
                " with a device API key; dismiss the ones that go away")
    f.add_argument("--key-file", help="file holding the API key [else env NOTISYNC_API_KEY]")
    f.add_argument("--interval", type=float, default=5.0, help="seconds between polls (default 5)")
    f.add_argument("--once", action="store_true", help="one pass, then exit (non-zero if the server is away)")
    f.add_argument("--state", help=f"state file [default: {FORWARD} in the config dir]")
    f.add_argument("--ignore", action="append", metavar="PACKAGE",
                   help=f"skip this app's notifications (repeatable; default: {' '.join(IGNORED)})")
    f.add_argument("--command", default=LIST_COMMAND, help=f"the list command (default {LIST_COMMAND})")


def check(args: argparse.Namespace) -> None:
    if getattr(args, "interval", 1.0) <= 0:
        raise ClientError("--interval must be above 0")
