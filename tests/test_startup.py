"""Startup failures as an operator meets them: one line on stderr, a non-zero exit,
and no process left behind (the process table is read from /proc)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.harness import ROOT, free_port, short_tmpdir

RUN = os.path.join(ROOT, "run.py")
WAIT = 60  # generous: the machine is shared


def redis_servers_for(data_dir: str) -> list[int]:
    """Live redis-server processes serving ``data_dir`` (zombies have no cmdline and do not count)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if b"redis-server" in cmdline and os.fsencode(data_dir) in cmdline:
            found.append(int(entry))
    return found


def _as_in_a_terminal() -> None:
    # A server started in a terminal's foreground gets Ctrl-C. A test run
    # launched as a background job of a non-interactive shell ignores
    # SIGINT, and the node would inherit that: a signal sent before its own
    # handler exists would then be ignored, not the Ctrl-C modelled here.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str], env: dict[str, str] | None = None, cwd: str = ROOT,
          ) -> subprocess.Popen[str]:
    full_env = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    return subprocess.Popen([sys.executable, RUN, *args], cwd=cwd, env=full_env, preexec_fn=_as_in_a_terminal,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the server did not exit:\n{err}")
    return proc.returncode, err


def assert_one_clear_line(err: str, *needles: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if " ERROR " in line or "error:" in line]
    assert len(errors) == 1, err
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def assert_nothing_left(data_dir: str) -> None:
    # The node waits for its own redis to exit before it does, so this is
    # immediate; the poll only absorbs /proc lag on a loaded machine.
    deadline = time.monotonic() + 10
    while redis_servers_for(data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert redis_servers_for(data_dir) == [], f"redis-server left behind for {data_dir}"


@pytest.fixture
def data_dir():
    path = short_tmpdir()
    yield path
    for pid in redis_servers_for(path):  # never leak one into the rest of the suite
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(path, ignore_errors=True)


def test_port_in_use_is_one_line_and_starts_no_redis(data_dir: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = finish(start(["--port", str(port), "--data-dir", data_dir]))
    assert code == 1
    assert_one_clear_line(err, f"port {port} is already in use", "--port")
    assert_nothing_left(data_dir)


def _read_only_dir(data_dir: str) -> tuple[str, list[str]]:
    """A data dir this process cannot write, and how to undo it."""
    target = os.path.join(data_dir, "ro")
    os.mkdir(target)
    if os.geteuid() != 0:
        os.chmod(target, 0o555)
        return target, []
    # root writes through any mode: a read-only mount, else a read-only kernel fs
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", target],
                             capture_output=True).returncode == 0
    if mounted:
        return target, ["umount", target]
    return "/sys/kernel/notisync-test-data", []


def test_read_only_data_dir_is_one_line(data_dir: str) -> None:
    target, undo = _read_only_dir(data_dir)
    try:
        code, err = finish(start(["--port", str(free_port()), "--data-dir", target], cwd="/"))
    finally:
        if undo:
            subprocess.run(undo, check=True)
    assert code == 1
    line = assert_one_clear_line(err, f"data dir {target} is not usable")
    assert any(reason in line for reason in ("ermission denied", "ead-only file system", "not permitted")), line
    assert_nothing_left(target)


def test_unreachable_and_malformed_redis_url(data_dir: str) -> None:
    code, err = finish(start(["--port", str(free_port()), "--data-dir", data_dir,
                              "--redis-url", f"redis://127.0.0.1:{free_port()}/0"]))
    assert code == 1
    assert_one_clear_line(err, "cannot reach redis at redis://127.0.0.1:")
    code, err = finish(start(["--port", str(free_port()), "--data-dir", data_dir, "--redis-url", "foo"]))
    assert code == 2
    assert_one_clear_line(err, "--redis-url", "NOTISYNC_REDIS_URL", "'foo'")
    assert_nothing_left(data_dir)


def test_unreachable_mongo_fails_fast_and_leaves_no_redis(data_dir: str) -> None:
    # A listener that accepts and never answers: the worst case, a hang rather than a refusal.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"mongodb://127.0.0.1:{silent.getsockname()[1]}/ns?directConnection=true"
        code, err = finish(start(["--port", str(free_port()), "--data-dir", data_dir, "--mongo-url", url]))
    assert code == 1
    assert_one_clear_line(err, "cannot reach MongoDB at mongodb://127.0.0.1:", "within 3s")
    assert_nothing_left(data_dir)


@pytest.mark.parametrize("env, needle", [
    ({"NOTISYNC_PORT": "abc"}, "NOTISYNC_PORT"),
    ({"NOTISYNC_LOG_LEVEL": "verbose"}, "NOTISYNC_LOG_LEVEL"),
    ({"NOTISYNC_SIGNUP": "maybe"}, "NOTISYNC_SIGNUP"),
    ({"NOTISYNC_JWT_SECRET": "abc"}, "at least 32 bytes"),
    ({"NOTISYNC_TRUSTED_PROXIES": "10.0.0.0/33"}, "NOTISYNC_TRUSTED_PROXIES"),
    ({"NOTISYNC_MONGO_URL": "localhost:27017"}, "NOTISYNC_MONGO_URL"),
    ({"NOTISYNC_METRICS": "maybe"}, "NOTISYNC_METRICS"),
])
def test_bad_environment_names_the_variable(env: dict[str, str], needle: str, data_dir: str) -> None:
    code, err = finish(start(["--data-dir", data_dir], env=env))
    assert code == 2
    line = assert_one_clear_line(err, needle)
    assert "--port" not in line  # NOTISYNC_PORT=abc is the environment's fault, not a flag's
    assert os.listdir(data_dir) == []  # nothing was started


def test_bad_flags_are_one_line(data_dir: str) -> None:
    for args, needle in ((["--log-level", "verbose"], "'verbose'"), (["--jwt-secret", "abc"], "--jwt-secret"),
                         (["--port", "abc"], "--port")):
        code, err = finish(start(["--data-dir", data_dir, *args]))
        assert code == 2, err
        assert_one_clear_line(err, needle)


def _interrupt_once(data_dir: str, when: str, delay: float = 0.0) -> tuple[int, str, bool]:
    """SIGINT the node either ``delay`` s after exec or the moment its redis-server exists.

    Returns the exit code, stderr and whether redis had been spawned when the signal went.
    """
    proc = start(["--port", str(free_port()), "--data-dir", data_dir])
    spawned = False
    if when == "redis":
        deadline = time.monotonic() + WAIT
        while not redis_servers_for(data_dir) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        spawned = bool(redis_servers_for(data_dir))
    else:
        time.sleep(delay)
        spawned = bool(redis_servers_for(data_dir))
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc)
    return code, err, spawned


def test_ctrl_c_during_startup_exits_130_and_stops_the_embedded_redis(data_dir: str) -> None:
    hits = 0
    for attempt in range(6):
        path = os.path.join(data_dir, f"d{attempt}")
        code, err, spawned = _interrupt_once(path, "redis")
        assert "Traceback" not in err, err
        assert_nothing_left(path)
        if code == 0:  # the start finished before the signal landed: a clean shutdown, also fine
            assert "stopped" in err
            continue
        assert code == 130, err
        assert_one_clear_line(err, "interrupted while starting")
        hits += spawned
        if hits >= 2:
            break
    assert hits >= 1, "no try landed between the redis spawn and the node listening"


@pytest.mark.parametrize("delay", [0.3, 0.45, 0.6])  # earlier, Python itself is still starting
def test_ctrl_c_at_a_fixed_moment_leaves_nothing(delay: float, data_dir: str) -> None:
    code, err, _ = _interrupt_once(data_dir, "time", delay)
    assert "Traceback" not in err, err
    assert code in (0, 130), err  # 0 only if it was already serving (then it shut down in order)
    if code == 130:
        assert_one_clear_line(err, "interrupted while starting")
    assert_nothing_left(data_dir)


def test_relative_data_dir_is_logged_absolute_and_created(data_dir: str) -> None:
    elsewhere = os.path.join(data_dir, "elsewhere")
    os.mkdir(elsewhere)
    port = free_port()
    proc = start(["--port", str(port), "--data-dir", "./data"], cwd=elsewhere)
    try:
        _wait_listening(proc, port)
    finally:
        proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 0, err
    absolute = os.path.join(elsewhere, "data")
    assert f"data dir {absolute} did not exist: created it" in err, err
    # a second start on the same dir says it is the existing one, still by its absolute path
    proc = start(["--port", str(port), "--data-dir", "./data"], cwd=elsewhere)
    try:
        _wait_listening(proc, port)
    finally:
        proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 0 and f"data dir {absolute}\n" in err and "did not exist" not in err, err
    assert_nothing_left(absolute)


def _wait_listening(proc: subprocess.Popen[str], port: int) -> None:
    """Until /health answers (the port is bound, and queues connections, before the node serves)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail("the node never served")


def test_help_shows_defaults_and_version_names_the_command() -> None:
    out = subprocess.run([sys.executable, RUN, "--help"], capture_output=True, text=True, env={
        **os.environ, "PYTHONPATH": ROOT}, timeout=WAIT).stdout
    assert "[default: 8080; env NOTISYNC_PORT]" in out and "default: ./data" in out
    assert "--trusted-proxies" in out and "--signup" in out and "adduser" in out
    from notisync import __version__

    version = subprocess.run([sys.executable, RUN, "--version"], capture_output=True, text=True, timeout=WAIT,
                             env={**os.environ, "PYTHONPATH": ROOT}).stdout
    assert version.strip() == f"run.py {__version__}"
    bindir = os.path.dirname(sys.executable)
    server = shutil.which("notisync-server", path=bindir)
    client = shutil.which("notisync", path=bindir)
    assert server and client, "pip install -e . installs both commands"
    assert subprocess.run([server, "--version"], capture_output=True, text=True,
                          timeout=WAIT).stdout.strip() == f"notisync-server {__version__}"
    usage = subprocess.run([server, "--port", "x"], capture_output=True, text=True, timeout=WAIT).stderr
    assert usage.startswith("notisync-server: error:"), usage
    assert subprocess.run([client, "--version"], capture_output=True, text=True,
                          timeout=WAIT).stdout.strip() == f"notisync {__version__}"
