"""Accounting and reporting for bench/chaos.py: what the server stored, each
receiver's deliveries checked against the accepted posts (lost, duplicated,
out of order, phantom), the load and receiver totals, the node log scan and
the printed table.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from typing import Any
from urllib.parse import quote

from chaos_traffic import Api, Post, Receiver, User


async def server_view(api: Api, users: list[User]) -> dict[str, Any]:
    """Each user's stored notifications (listed), and GET /{id} for every received id the list lacks."""
    stored: dict[int, dict[str, str]] = {}
    phantoms: set[str] = set()
    for user in users:
        await user.fresh(api)
        rows: dict[str, str] = {}
        cursor = None
        for _ in range(10_000):
            path = "/api/v1/notifications?limit=200" + (f"&before={quote(cursor)}" if cursor else "")
            page = (await api.must("GET", path, token=user.token))[1]
            rows.update((n["id"], n.get("title") or "") for n in page["notifications"])
            if not (cursor := page.get("next_cursor")):
                break
        for nid in {nid for r in user.receivers for nid in r.got} - rows.keys():
            if (await api.must("GET", f"/api/v1/notifications/{nid}", token=user.token, ok=(200, 404)))[0] == 404:
                phantoms.add(nid)
        stored[user.idx] = rows
    return {"stored": stored, "phantoms": phantoms}


def account(users: list[User], posts: list[Post], view: dict[str, Any], kill_times: list[float]) -> dict[str, Any]:
    accepted: dict[int, dict[str, Post]] = {}
    for p in posts:
        if p.final == "accepted" and p.nid:
            accepted.setdefault(p.user, {})[p.nid] = p
    r: Counter[str] = Counter()
    lost: dict[str, list[str]] = {}
    for user in users:
        acc, stored = accepted.get(user.idx, {}), view["stored"][user.idx]
        r["accepted_not_stored"] += sum(1 for nid in acc if nid not in stored)
        r["source_key_twice_on_server"] += sum(n - 1 for n in Counter(stored.values()).values())
        for rcv in user.receivers:
            r["expected"] += len(acc)
            for nid in acc:
                outcome = "received" if nid in rcv.got else "missed_told_sync_required" if rcv.sync_required else "lost"
                r[outcome] += 1
                if outcome == "lost":
                    lost.setdefault(nid, []).append(rcv.name)
            r["dup_same_id"] += sum(len(envs) - 1 for envs in rcv.got.values())
            r["dup_same_source_key"] += sum(len(nids) - 1 for nids in rcv.by_key.values())
            r["unexpected_received"] += sum(1 for nid in rcv.got if nid not in acc)
            r["phantom"] += sum(1 for nid in rcv.got if nid in view["phantoms"])
            r["devices_told_sync_required"] += bool(rcv.sync_required)
            r["sync_required_frames"] += len(rcv.sync_required)
            for k in ("out_of_order", "repeats", "epoch_changes", "malformed"):
                r[k] += getattr(rcv, k)
    r["duplicated"] = r["dup_same_id"] + r["dup_same_source_key"]
    r["lost_notifications"] = len(lost)
    by_nid = {p.nid: p for p in posts if p.nid}
    def suspect(p: Post) -> float:  # when the answer went missing: the first dropped or timed-out attempt
        return next((float(a.split("+")[1]) for a in p.attempts if a.startswith(("dropped", "timeout"))), p.t)

    details = [{"id": nid, "source_key": p.key, "posted_at_s": p.t, "attempts": p.attempts,
                "devices_missing": devices, "stored": nid in view["stored"][p.user],
                "nearest_node_kill_s": min(kill_times, key=lambda k: abs(k - suspect(p)), default=None)}
               for nid, devices in lost.items() for p in [by_nid[nid]]]
    return {"counts": dict(r), "lost": sorted(details, key=lambda d: d["posted_at_s"]),
            "phantom_ids": sorted(view["phantoms"])[:50]}


def load_summary(posts: list[Post], users: list[User], max_lag: float, cpu: float) -> dict[str, Any]:
    """What the phones did: a post still pending when the run ended counts as unacked."""
    finals = Counter("unacked" if p.final == "pending" else p.final for p in posts)
    return {"attempted": len(posts), "accepted": finals["accepted"], "unacked": finals["unacked"],
            "rejected": finals["rejected"], "status": dict(Counter(str(p.status) for p in posts if p.status)),
            "accepted_after_failure": sum(1 for p in posts if p.nid and len(p.attempts) > 1),
            "attempt_outcomes": dict(Counter(a.split("@")[0] for p in posts for a in p.attempts)),
            "generator_max_lag_s": round(max_lag, 3), "generator_cpu_pct": round(cpu * 100, 1),
            "token_renewals": sum(u.renewals for u in users),
            "token_renewal_failures": sum(u.renew_failures for u in users),
            "unacked_examples": [[p.key, p.attempts] for p in posts if p.final != "accepted"][:5]}


def receiver_summary(receivers: list[Receiver], settled: list[bool]) -> dict[str, Any]:
    return {"devices": len(receivers), "settled": sum(settled),
            "connects": sum(r.connects for r in receivers),
            "failed": sum(sum(r.failures.values()) for r in receivers),
            "failures": dict(sum((r.failures for r in receivers), Counter())),
            "server_closes": dict(sum((r.closes for r in receivers), Counter())),
            "sync_required": {r.name: r.sync_required for r in receivers if r.sync_required},
            "out_of_order_examples": {r.name: r.ooo_examples for r in receivers if r.ooo_examples}}


# -- logs -------------------------------------------------------------------------------
_STAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T][\d:,.]+ ")
_NOISE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d+(?:\.\d+)?")


def scan_logs(paths: list[str], limit: int = 6) -> dict[str, Any]:
    """ERROR / Traceback / WARNING lines of each log, grouped by message shape (numbers and ids masked)."""
    report: dict[str, Any] = {}
    for path in paths:
        counts: Counter[str] = Counter()
        shapes: Counter[str] = Counter()
        example: dict[str, str] = {}
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            kind = ("traceback" if line.startswith("Traceback") else "error" if " ERROR " in line
                    or " CRITICAL " in line else "warning" if " WARNING " in line else None)
            if kind is None:
                continue
            counts[kind] += 1
            shape = kind + ": " + _NOISE.sub("#", _STAMP.sub("", line))[:160]
            shapes[shape] += 1
            example.setdefault(shape, line[:300])
        report[os.path.basename(path)] = {
            **{k: counts[k] for k in ("error", "traceback", "warning")},
            "top": [[n, example[s]] for s, n in shapes.most_common(limit)]}
    return report


def print_report(res: dict[str, Any]) -> None:
    c, load, faults, rcv = res["accounting"]["counts"], res["load"], res["faults"], res["receivers"]
    g = c.get
    rows = [
        ("server", f"{res['server']['dir']} @ {res['server']['commit']}"
                   + (f" + {res['server']['changed_files']} changed file(s) [{res['server']['fingerprint']}]"
                      if res["server"]["changed_files"] else "")
                   + (", snapshot taken at the start" if res["args"]["snapshot"] else
                      " (CHANGED DURING THE RUN)" if res["server"].get("changed_during_run") else "")),
        ("  tree fingerprint at node starts", ("MIXED: " if len(res["server"]["versions"]) > 1 else "")
         + (", ".join(f"{fp} at {n}" for fp, n in res["server"]["versions"].items()) or "- (snapshot)")),
        ("posts attempted", load["attempted"]),
        ("accepted (201 / 200)", f"{load['accepted']} ({load['status'].get('201', 0)} / {load['status'].get('200', 0)})"),
        ("  accepted after a failed attempt", load["accepted_after_failure"]),
        ("unacked (gave up) / rejected (4xx)", f"{load['unacked']} / {load['rejected']}"),
        ("node kills done / planned", f"{faults['node_kills']} / {res['args']['kills']}"),
        ("nodes that exited by themselves", len(faults["crashes"])),
        ("redis kills done / planned", f"{faults['redis_kills']} / {res['args']['redis_kills']}"
                                       + (f", not back: {faults['redis_not_back']}" if faults["redis_kills"] else "")),
        ("deliveries expected / received", f"{g('expected', 0)} / {g('received', 0)}"),
        ("LOST deliveries (notifications)", f"{g('lost', 0)} ({g('lost_notifications', 0)})"),
        ("DUPLICATED (same id / same source_key)",
         f"{g('duplicated', 0)} ({g('dup_same_id', 0)} / {g('dup_same_source_key', 0)})"),
        ("OUT OF ORDER", g("out_of_order", 0)),
        ("PHANTOM deliveries", g("phantom", 0)),
        ("sync_required: devices / frames", f"{g('devices_told_sync_required', 0)} / {g('sync_required_frames', 0)}"),
        ("  missed, but told sync_required", g("missed_told_sync_required", 0)),
        ("accepted but not stored", g("accepted_not_stored", 0)),
        ("2nd notification for a source_key (server)", g("source_key_twice_on_server", 0)),
        ("received, not accepted by the phone", g("unexpected_received", 0)),
        ("repeated envelope ids dropped", g("repeats", 0)),
        ("socket connects / failed connects", f"{rcv['connects']} / {rcv['failed']}"),
        ("settle reached quiet", f"{rcv['settled']} / {rcv['devices']}"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n" + "=" * (width + 24))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("=" * (width + 24))
    for d in res["accounting"]["lost"][:10]:
        print(f"lost {d['id']} posted +{d['posted_at_s']}s, attempts {d['attempts']}, stored={d['stored']}, "
              f"missing on {len(d['devices_missing'])} device(s); nearest node kill +{d['nearest_node_kill_s']}s")
    print(f"generator: {load['generator_cpu_pct']}% of a core, max schedule lag {load['generator_max_lag_s']}s; "
          f"wall {res['wall_s']}s\nverdict: {res['verdict']}")


def print_logs(logs: dict[str, Any], say: Any) -> None:
    for name, info in logs.items():
        say(f"{name}: {info['error']} ERROR, {info['traceback']} Traceback, {info['warning']} WARNING lines")
        for n, line in info["top"]:
            print(f"         {n:5d} x {line}")
