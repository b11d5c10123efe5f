"""Randomized chaos run: is anything lost, duplicated, reordered or phantom when
nodes (and optionally the embedded redis) are SIGKILLed under load?

    python bench/chaos.py [--users 20 --rate 200 --duration 60 --kills 20 --redis-kills 0
                           --seed 1 --server-dir DIR --snapshot --json]

Two nodes (``python run.py --port P --data-dir D``, cwd = --server-dir, so any
checkout can be measured) share one data dir: one SQLite file, one embedded
redis. Every restart loads the tree as it is then: the fingerprint of its
edits is taken at each start and a mix is flagged; ``--snapshot`` runs a
copy taken at the start instead, for a tree someone is editing. N users x 4
devices; device 0 is the phone, 1..3 receive. Traffic goes to 127.0.0.1 only.

- Phones post over REST at an aggregate open-loop rate (post i is due at
  i/rate, round-robin over users), each with a unique ``source_key`` (also
  the title, so a receiver can tell a retry that became a second
  notification) and ``X-Device-ID``. Refused, dropped, timed-out, 5xx and
  429 attempts are retried with the SAME source_key on alternating nodes,
  with backoff, at most 40 attempts / 30 s; 201 or 200 = accepted (its
  ``id`` recorded); still failing = "unacked", reported but not lost.
- Receivers hold one socket each to a random node with ``last_id`` = the
  newest envelope id they hold (``0`` at first), drop repeated envelope ids,
  close after 0.5-5 s and reconnect after 0-0.5 s, or with backoff to a
  random node after a failure. ``--bare-reconnects F`` makes that share of
  reconnects omit ``last_id`` (the server's saved position decides).
- Faults: each after a random share of the load time left
  once the kill-restart cycles still to come are set aside (so slow
  restarts do not push faults past the load), on a random node, never
  while the other is down, restarted on its port 0.5-1 s later.
  ``--redis-kills`` SIGKILLs the redis named by <data-dir>/redis.pid
  (never while it is down: a node kill goes first then) and leaves it to
  the nodes to bring it back; the run says which node did, and whether it
  was already running (supervision) or starting up.
- Afterwards: faults stop with every node serving, retries drain, churn
  stops, and each receiver reconnects with ``last_id`` and reads until 2 s
  pass without a stream frame (at most 30 s).

Per receiver, over its user's accepted notifications: lost = never received,
unless the device got ``sync_required`` (then "missed, told sync_required":
the client refetches, so not silent); duplicated = one notification id under
two envelope ids, or two ids for one source_key; out-of-order = an envelope
position (``<epoch>:<ms>-<seq>``, same epoch) not above the previous one, in
receive order after dropping repeats; phantom = a received id the server does
not have (each user's notifications are listed; GET /{id} must answer 404 for
a received id the list lacks: one GET per suspect, not per id).

Exit 0 if lost, duplicated, out-of-order and phantom are 0 and >= 90 % of posts
were accepted (fewer proves little: exit 1 too); 1 on a violation; 2 if the
harness failed. Every process it started (nodes, any redis-server of its data
dir) is stopped on exit, Ctrl-C and SIGTERM included; logs stay in
/tmp/nschaos-*/logs and are scanned for ERROR / Traceback / WARNING.

Why so: aiohttp for HTTP and WebSocket (one pooled session, per-request total
timeouts, a close with a timeout); one asyncio process (uvloop if present)
whose CPU share is printed, so a saturated generator shows. The faults
have their own Random(seed): the same kinds and nodes for a seed, whatever
the timing. Accounting by listing is exact and cheap (60 pages for 12,000).

Modules: this file is the command line, the run's order and the verdict;
chaos_traffic.py the HTTP calls, users, phones and receivers; chaos_faults.py
the node and redis processes and the fault schedule; chaos_report.py the
accounting, the log scan and the printed table.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos_faults as faults  # noqa: E402
import chaos_report as report  # noqa: E402
import chaos_traffic as traffic  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def make_users(api: traffic.Api, count: int, run_id: str) -> list[traffic.User]:
    gate = asyncio.Semaphore(8)  # registration hashes passwords: keep the set-up gentle

    async def one(i: int) -> traffic.User:
        async with gate:
            return await traffic.make_user(api, i, run_id)

    return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), 180)


async def run(args: argparse.Namespace, cluster: faults.Cluster, say: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    fault_rng, rng = random.Random(args.seed), random.Random(args.seed * 7919 + 1)
    run_id = f"{args.seed % 0xffff:04x}{int(time.time()) % 0xffff:04x}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=600)) as session:
        await cluster.start(session)
        api = traffic.Api(session, [n.port for n in cluster.nodes])
        say(f"nodes on ports {api.ports}, data dir {cluster.data_dir}")
        users = await make_users(api, args.users, run_id)
        receivers = [rcv for u in users for rcv in u.receivers]
        stop_churn, load_done = asyncio.Event(), asyncio.Event()
        churners = [asyncio.ensure_future(r.churn(api, rng, stop_churn, args.bare_reconnects)) for r in receivers]
        await asyncio.sleep(1.5)  # every receiver connected once before the first post
        say(f"{len(users)} users, {len(receivers)} receivers; load {args.rate:g}/s for {args.duration:g}s")
        cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), loop.time()
        fault_task = asyncio.ensure_future(faults.run_faults(cluster, session, fault_rng, t0, args.duration,
                                                             args.kills, args.redis_kills, load_done, say))
        posts: list[traffic.Post] = []
        tasks, max_lag = await traffic.generate(api, users, posts, args, rng, t0, run_id)
        load_done.set()
        cpu1, t1 = resource.getrusage(resource.RUSAGE_SELF), loop.time()
        fault_out = await asyncio.wait_for(fault_task, 120)
        say(f"load done; draining {sum(1 for t in tasks if not t.done())} posts still retrying")
        if tasks:
            await asyncio.wait(tasks, timeout=traffic.POST_BUDGET + traffic.ATTEMPT_TIMEOUT + 5)
        stop_churn.set()
        await asyncio.wait(churners, timeout=10)
        for t in (*tasks, *churners):
            t.cancel()
        say("settling: every receiver reconnects with last_id and reads until quiet")
        settled = await asyncio.gather(*(rcv.settle(api, rng) for rcv in receivers))
        view = await asyncio.wait_for(report.server_view(api, users), 120)
    cpu = sum(getattr(cpu1, f) - getattr(cpu0, f) for f in ("ru_utime", "ru_stime")) / max(t1 - t0, 1e-9)
    return {
        "load": report.load_summary(posts, users, max_lag, cpu),
        "faults": fault_out,
        "receivers": report.receiver_summary(receivers, settled),
        "accounting": report.account(users, posts, view,
                                     [e[0] for e in fault_out["log"] if e[1].startswith("node")]),
    }


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--rate", type=float, default=200.0, help="notifications/s over all phones")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--kills", type=int, default=20, help="node SIGKILLs during the load")
    ap.add_argument("--redis-kills", type=int, default=0, help="embedded redis SIGKILLs during the load")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bare-reconnects", type=float, default=0.0, help="share of reconnects without last_id")
    ap.add_argument("--server-dir", default=REPO, help="checkout whose run.py is started (default: this repo)")
    ap.add_argument("--snapshot", action="store_true", help="run a copy of --server-dir taken at the start")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the nodes")
    ap.add_argument("--server-arg", action="append", default=[], help="extra run.py flag (repeatable)")
    ap.add_argument("--json", action="store_true", help="write bench/results/chaos-<time>.json")
    ap.add_argument("--keep-data", action="store_true", help="keep the data dir (logs are always kept)")
    args = ap.parse_args()
    args.server_dir = os.path.abspath(args.server_dir)
    if not os.path.isfile(os.path.join(args.server_dir, "run.py")):
        ap.error(f"no run.py in {args.server_dir}")
    return args


def use_uvloop() -> None:
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass


def server_copy(args: argparse.Namespace, root: str) -> str:
    """The directory the nodes run from: --server-dir itself, or with --snapshot a copy taken now."""
    if not args.snapshot:
        return args.server_dir
    # The tree as it is now, whatever its owner edits (or stashes) during the run.
    run_dir = os.path.join(root, "server")
    shutil.copytree(args.server_dir, run_dir, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv", "data", "bench", "tests", "docs", "__pycache__", "*.egg-info"))
    return run_dir


def stop_cluster(cluster: faults.Cluster, keep_data: bool) -> dict[str, Any]:
    """Graceful stop, then SIGKILL whatever is left, whatever happened; the redis log joins the others."""
    try:
        return cluster.shutdown()
    finally:
        cluster.emergency_kill()
        if os.path.isfile(os.path.join(cluster.data_dir, "redis.log")):
            shutil.copy(os.path.join(cluster.data_dir, "redis.log"), cluster.log_dir)
        if not keep_data:
            shutil.rmtree(cluster.data_dir, ignore_errors=True)


def verdict(res: dict[str, Any]) -> tuple[dict[str, int], float]:
    """The violations found and the share of posts accepted; sets res["verdict"]."""
    c = res["accounting"]["counts"]
    bad = {k: c[k] for k in ("lost", "duplicated", "out_of_order", "phantom") if c.get(k)}
    share = res["load"]["accepted"] / max(res["load"]["attempted"], 1)
    res["verdict"] = ("FAIL: " + ", ".join(f"{k}={v}" for k, v in bad.items()) if bad else
                      f"INCONCLUSIVE: only {share:.0%} of posts accepted" if share < 0.9 else
                      "PASS: nothing lost, duplicated, reordered or phantom")
    return bad, share


def write_json(res: dict[str, Any], say: Any) -> None:
    out = os.path.join(REPO, "bench", "results", f"chaos-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=1, default=str)
    say(f"results in {out}")


def main() -> int:
    args = parse_args()
    use_uvloop()
    started, server = time.time(), faults.checkout(args.server_dir)
    root = tempfile.mkdtemp(prefix="nschaos-", dir="/tmp")  # short: the redis unix socket path is limited
    cluster = faults.Cluster(server_copy(args, root), args.python, root, 2, args.server_arg,
                             track_versions=not args.snapshot)

    def say(msg: str) -> None:
        print(f"{time.time() - started:6.1f}s  {msg}", flush=True)

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)  # type: ignore[union-attr]
        return await asyncio.wait_for(run(args, cluster, say), args.duration + 600)

    res: dict[str, Any] | None = None
    error, stop = "", {}
    try:
        res = asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        error = "interrupted"
    except Exception as exc:  # the harness failed: still stop everything, and say so
        error = f"{type(exc).__name__}: {exc}"
    finally:
        stop = stop_cluster(cluster, args.keep_data)
    logs = report.scan_logs([n.log_path for n in cluster.nodes])
    say(f"nodes stopped: exit codes {stop.get('exit_codes')}; redis left running: {stop.get('redis_left_running')}")
    report.print_logs(logs, say)
    say(f"logs in {cluster.log_dir}")
    if res is None:
        say(f"HARNESS FAILED: {error}")
        return 2
    bad, share = verdict(res)
    server["changed_during_run"] = faults.checkout(args.server_dir)["fingerprint"] != server["fingerprint"]
    server["versions"] = dict(cluster.versions)
    res.update(args=vars(args), server=server, shutdown=stop, logs=logs,
               log_dir=cluster.log_dir, wall_s=round(time.time() - started, 1),
               started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)))
    report.print_report(res)
    if args.json:
        write_json(res, say)
    return 1 if bad or share < 0.9 else 0


if __name__ == "__main__":
    sys.exit(main())
