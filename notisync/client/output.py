"""What the CLI prints: one result per stdout line, every problem one stderr line,
and notification text (written by other people's apps) made harmless for a terminal."""
from __future__ import annotations

import datetime as dt
import re
import sys
from typing import Any

from notisync.client.config import Json


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
