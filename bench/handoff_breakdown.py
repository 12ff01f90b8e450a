#!/usr/bin/env python3
"""Where a vipdrain handoff's time goes: the drain process's start-up vs VRRP.

    python bench/handoff_breakdown.py [--repeats 8] [--advert-ints 1,0.1] [--out bench/results]

A 2-VM lab (real keepalived + haproxy, a client at 200 req/s); the master is drained the BOSH
way `repeats` times per advert_int. For each drain: seconds from the call (what the BOSH agent
does) to the drain's first log line (interpreter start, imports, config), to the taker being
chosen (its haproxy probed), to the resign advert being sent (the taker's MAC learned first), to
the observer seeing the VIP on the peer, and to the drain returning. Writes
`<out>/handoff-breakdown.json` and prints medians [min-max]. Needs root.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from run import (
    DEFAULT_OUT,
    RATE,
    bosh_drain_env,
    compile_like_the_package,
    first_peer,
    git_state,
    loadavg,
    machine,
    settle,
)
from strategies import StrategyDirector, monit_stop, peer_priority
from vipdrain.lab.cluster import Lab
from vipdrain.vrrp.timing import handoff_bound, skew

PHASES = ("first_log", "taker_chosen", "resign_sent", "peer_holds", "drain_returned")
#: The log line that ends each phase the drain logs itself (the first line of the drain ends first_log).
PHASE_LINES = {"taker_chosen": "takes over (", "resign_sent": "resign advert (priority 0)"}


def log_time(line: str) -> float | None:
    """Epoch seconds of a vipdrain log line (`2026-01-01 12:00:00,123 INFO ...`), or None."""
    try:
        return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


def measure(advert_int: float, repeats: int) -> list[dict[str, float | None]]:
    """`repeats` BOSH drains of the master of a 2-VM lab; one row of phase times per drain."""
    rows: list[dict[str, float | None]] = []
    with Lab.up(nodes=2, advert_int=advert_int) as lab:
        vip = lab.vips[0]
        with lab.observe() as observer, lab.client(rate=RATE):
            for _ in range(repeats):
                settle(lab)
                master = lab.vm(lab.holders(vip)[0])
                t0 = time.time()
                proc = master.vipdrain("drain", "job_changed", "hash_changed", env=bosh_drain_env(), check=False)
                t1 = time.time()
                seen = first_peer(observer.intervals(vip, t0 - 1.0, time.time()), master.name, t0)
                stamps: dict[str, float] = {}
                for line in proc.stderr.splitlines():
                    t = log_time(line)
                    if t is not None:
                        stamps.setdefault("first_log", t)
                        for phase, text in PHASE_LINES.items():
                            if text in line:
                                stamps.setdefault(phase, t)
                row: dict[str, float | None] = {k: round(v - t0, 4) for k, v in stamps.items()}
                row["peer_holds"] = round(seen[0] - t0, 4) if seen else None
                row["drain_returned"] = round(t1 - t0, 4)
                prio = peer_priority(lab, seen[1]) if seen else None
                row["skew"] = round(skew(prio or 0, advert_int), 4) if seen else None
                # Issue 9's promise, from the drain call: the peer holds within skew + 0.3 s.
                row["target"] = round(handoff_bound(prio or 0, advert_int), 4) if seen else None
                row["loadavg"] = loadavg()
                rows.append(row)
                print(f"  advert_int {advert_int:g} s: " + ", ".join(
                    f"{k} {row.get(k)}" for k in (*PHASES, "skew")), flush=True)
                time.sleep(0.5)
                monit_stop(master, "keepalived-first")
                StrategyDirector(lab.vms).start_instance(master)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--advert-ints", default="1,0.1")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    started = time.monotonic()
    git_start = git_state()
    compile_like_the_package()
    results: dict[str, list[dict[str, float | None]]] = {}
    for advert_int in (float(x) for x in args.advert_ints.split(",") if x.strip()):
        results[f"{advert_int:g}"] = measure(advert_int, args.repeats)
    summary = {}
    for key, rows in results.items():
        summary[key] = {}
        for phase in PHASES:
            vals = [r[phase] for r in rows if r.get(phase) is not None]
            if vals:
                summary[key][phase] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
                print(f"advert_int {key} s, {phase:<15} median {statistics.median(vals):.3f} s "
                      f"[{min(vals):.3f}-{max(vals):.3f}]")
    targets = {}
    for key, rows in results.items():
        within = [r for r in rows if r.get("peer_holds") is not None and r["peer_holds"] <= (r.get("target") or 0)]
        share = len(within) / len(rows) if rows else 0.0
        ordered = sorted(r["peer_holds"] if r.get("peer_holds") is not None else float("inf") for r in rows)
        p95 = ordered[max(0, -(-95 * len(ordered) // 100) - 1)] if ordered else None
        targets[key] = {"target": f"95 % of resign handoffs within skew + 0.3 s at advert_int {key} s",
                        "measured": f"{len(within)} of {len(rows)} ({share:.0%}); p95 {p95} s",
                        "met": share >= 0.95, "p95": p95,
                        "deciles": [ordered[min(len(ordered) - 1, len(ordered) * d // 10)] for d in range(11)]
                        if ordered else []}
        print(f"{targets[key]['target']}: {targets[key]['measured']}: {'met' if share >= 0.95 else 'not met'}")
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"meta": {"command": "python bench/handoff_breakdown.py " + " ".join(sys.argv[1:]),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "runtime_s": round(time.monotonic() - started, 1),
                    "machine": machine(), "repeats": args.repeats, "git_start": git_start, "git_end": git_state()},
           "summary": summary, "targets": targets, "runs": results}
    (args.out / "handoff-breakdown.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
