"""The README pastes: every ```sh block of the sections marked ``<!-- readme-test: run -->``
runs, in order, in one bash with ``set -euo pipefail`` against a fresh server.

A section opts in with that marker on a line of its own under its heading;
``REQUIRED`` lists the sections that must carry it. Inside such a section
only ```sh blocks run; ```text, ```js and the like are shown, not run. Every
``curl`` in the script fails on an HTTP error (``--fail-with-body``) unless
the line prints the status itself (``-w``), and ``-u`` turns any variable
the README forgot to assign into a failure.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import pytest

from tests.harness import ROOT, Node

README = os.path.join(ROOT, "README.md")
MARKER = "<!-- readme-test: run -->"
REQUIRED = ("REST API with curl", "WebSocket protocol", "Web dashboard and command line")
BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)

PRELUDE = r"""
set -euo pipefail
curl() {  # an HTTP error is a failure, unless the command prints the status itself
  case " $* " in
    *" -w "*|*" --write-out "*) command curl "$@" ;;
    *) command curl --fail-with-body "$@" ;;
  esac
}
"""


@dataclass
class Block:
    section: str
    line: int
    text: str


def sections(markdown: str) -> dict[str, tuple[int, str]]:
    """Level-2 sections: title -> (line of the heading, body); fenced blocks are not headings."""
    out: dict[str, tuple[int, str]] = {}
    title, start, body, fenced = None, 0, [], False
    for number, line in enumerate(markdown.splitlines(keepends=True), 1):
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            if title is not None:
                out[title] = (start, "".join(body))
            title, start, body = line[3:].strip(), number, []
        elif title is not None:
            body.append(line)
    if title is not None:
        out[title] = (start, "".join(body))
    return out


def runnable_blocks(markdown: str) -> list[Block]:
    blocks = []
    for title, (start, body) in sections(markdown).items():
        if MARKER not in body:
            continue
        for match in BLOCK.finditer(body):
            if match.group(1) == "sh":
                line = start + body[:match.start()].count("\n") + 1
                blocks.append(Block(title, line, match.group(2)))
    return blocks


def test_required_sections_opt_in_and_hide_nothing() -> None:
    with open(README, encoding="utf-8") as f:
        markdown = f.read()
    found = sections(markdown)
    for title in REQUIRED:
        assert title in found and MARKER in found[title][1], f"README section {title!r} must carry {MARKER}"
    for block in runnable_blocks(markdown):
        # A placeholder (TOKEN=…) or a fixed id cannot run as printed.
        code = "\n".join(line.split(" #")[0] for line in block.text.splitlines() if not line.lstrip().startswith("#"))
        assert "…" not in code, f"README line {block.line}: a placeholder in a block that runs"
        assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-", code), f"README line {block.line}: a fixed id"
    # an unfenced ``` block in these sections must say what it is (```text, ```js): nothing is ambiguous
    for title in REQUIRED:
        for match in BLOCK.finditer(found[title][1]):
            assert match.group(1), f"README section {title!r}: a ``` block without a language"


@pytest.fixture
def server():
    node = Node().start()
    yield node
    node.stop()
    shutil.rmtree(node.data_dir, ignore_errors=True)


def test_every_marked_block_runs_as_printed(server: Node) -> None:
    with open(README, encoding="utf-8") as f:
        blocks = runnable_blocks(f.read())
    assert len(blocks) >= 6
    for tool in ("bash", "curl", "jq", "timeout"):  # .ci/run installs them; no skipping
        assert shutil.which(tool), f"{tool} is needed to run the README"
    script = [PRELUDE]
    for number, block in enumerate(blocks):
        script.append(f'echo "::block {number} ({block.section}, README line {block.line})" >&2\n')
        script.append(block.text)
    script.append('echo "::done" >&2\n')
    work = tempfile.mkdtemp(prefix="ns-readme-")
    bindir = os.path.dirname(sys.executable)  # python3, notisync: the ones this install provides
    env = {**os.environ, "NS": server.base, "PATH": f"{bindir}:{os.environ.get('PATH', '')}",
           "NOTISYNC_CONFIG_DIR": os.path.join(work, "config"), "PYTHONPATH": ROOT, "HOME": work}
    for name in ("NOTISYNC_SERVER", "NOTISYNC_PASSWORD"):
        env.pop(name, None)
    try:
        done = subprocess.run(["bash", "-c", "".join(script)], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600, stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    last = [line for line in done.stderr.splitlines() if line.startswith("::")]
    assert done.returncode == 0 and last and last[-1] == "::done", (
        f"failed in {last[-1] if last else 'the prelude'} with exit code {done.returncode}\n"
        f"--- stdout (end)\n{done.stdout[-3000:]}\n--- stderr (end)\n{done.stderr[-3000:]}")
    out = done.stdout
    # what the examples say happens, happened
    assert '"title":"Ana"' in out.replace(" ", "")  # the laptop got the phone's socket post
    assert re.search(r"(?m)^200$", out) and re.search(r"401$", out, re.M)  # a repeated device id; a logged-out token
    assert re.search(r'\{"id":"[0-9a-f-]{36}","version":1\}', out)  # the retried post changed nothing
    assert "Bo" in out  # the CLI's watch printed the phone's notification
