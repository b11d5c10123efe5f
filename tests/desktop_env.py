"""A private desktop for tests: Xvfb, a session D-Bus and Debian's dunst, driven with dunstctl.

Nothing is shared with the machine's own session: the display number and
bus address are new per ``Desktop``, and every process is stopped by its
pid at the end. dunst is the real freedesktop notification server the
agent talks to; the test watches it with ``dunstctl count`` and
``dunstctl history`` and acts like a person with ``dunstctl close``
(closed by the user), ``dunstctl action`` (clicked) and ``dunstctl
context`` (the context menu, answered by a stand-in for dmenu that picks
the line naming the button the test chose).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any, Callable

TOOLS = ("Xvfb", "dbus-daemon", "dunst", "dunstctl")

DUNSTRC = """
[global]
    dmenu = {dmenu}
    stack_duplicates = false
    show_indicators = no
    history_length = 100
# The urgency leads the formatted "message" (history has no urgency field of its own).
[urgency_low]
    timeout = 0
    format = "[low] %s\\n%b"
[urgency_normal]
    timeout = 0
    format = "[normal] %s\\n%b"
[urgency_critical]
    timeout = 0
    format = "[critical] %s\\n%b"
"""

# dmenu's contract: the menu on stdin, the chosen line on stdout.
DMENU = """#!/bin/sh
cat > "{dir}/menu.txt"
grep -F -- "$(cat "{dir}/choice")" "{dir}/menu.txt" | head -n 1
"""


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


class Desktop:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="ns-desktop-")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env: dict[str, str] = {}

    def start(self) -> "Desktop":
        display = self._start_x()
        bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.procs.append(bus)
        assert bus.stdout is not None
        address = bus.stdout.readline().decode().strip()
        assert address.startswith("unix:"), address
        self.env = {"DISPLAY": display, "DBUS_SESSION_BUS_ADDRESS": address}
        dmenu = os.path.join(self.dir, "dmenu.sh")
        with open(dmenu, "w") as f:
            f.write(DMENU.format(dir=self.dir))
        os.chmod(dmenu, 0o700)
        rc = os.path.join(self.dir, "dunstrc")
        with open(rc, "w") as f:
            f.write(DUNSTRC.format(dmenu=dmenu))
        log = open(os.path.join(self.dir, "dunst.log"), "wb")
        self.procs.append(subprocess.Popen(["dunst", "-config", rc], env=self.full_env(),
                                           stdout=log, stderr=log))
        log.close()
        wait_until(lambda: self.ctl("count", "displayed", check=False) == "0", 20, "dunst to answer")
        return self

    def _start_x(self) -> str:
        for _ in range(20):
            number = 100 + int.from_bytes(os.urandom(2), "big") % 800
            if os.path.exists(f"/tmp/.X11-unix/X{number}") or os.path.exists(f"/tmp/.X{number}-lock"):
                continue
            x = subprocess.Popen(["Xvfb", f":{number}", "-nolisten", "tcp", "-screen", "0", "1024x768x24"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_until(lambda: os.path.exists(f"/tmp/.X11-unix/X{number}") or x.poll() is not None, 15, "Xvfb")
            except AssertionError:
                x.kill()
                continue
            if x.poll() is None:
                self.procs.append(x)
                return f":{number}"
        raise RuntimeError("could not start Xvfb")

    def full_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- dunstctl ------------------------------------------------------------------
    def ctl(self, *args: str, check: bool = True) -> str:
        r = subprocess.run(["dunstctl", *args], env=self.full_env(), capture_output=True, timeout=30)
        if check:
            assert r.returncode == 0, r.stderr.decode()
        return r.stdout.decode().strip()

    def displayed(self) -> int:
        return int(self.ctl("count", "displayed"))

    def history(self) -> list[dict[str, Any]]:
        """Closed pop-ups, newest first: {summary, body, appname, urgency, id}."""
        data = json.loads(self.ctl("history"))["data"][0]
        return [{k: v["data"] for k, v in entry.items()} for entry in data]

    def close_top(self) -> None:
        """What a person closing the pop-up does: NotificationClosed with reason 2 (dismissed)."""
        self.ctl("close")

    def click_top(self) -> None:
        """The pop-up's default action: ActionInvoked "default" (clicked)."""
        self.ctl("action", "0")

    def press(self, label: str) -> list[str]:
        """Pick the button ``label`` from the top pop-up's context menu; the menu's lines."""
        menu = os.path.join(self.dir, "menu.txt")
        if os.path.exists(menu):
            os.unlink(menu)
        with open(os.path.join(self.dir, "choice"), "w") as f:
            f.write(f"#{label} ")
        self.ctl("context")  # dunst runs the menu in the background: wait for it

        def read() -> list[str]:
            try:
                with open(menu) as f:
                    text = f.read()
            except FileNotFoundError:
                return []
            return text.splitlines()  # dunst ends the menu without a newline

        return wait_until(read, 20, "dunst's context menu")


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
