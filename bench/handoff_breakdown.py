#!/usr/bin/env python3
"""Where a vipdrain handoff's time goes: the drain process's start-up vs VRRP.

    python bench/handoff_breakdown.py [--repeats 8] [--advert-ints 1,0.1] [--out bench/results]

A 2-VM lab (real keepalived + haproxy, a client at 200 req/s); the master is drained the BOSH
way `repeats` times per advert_int. For each drain: seconds from the call (what the BOSH agent
does) to the drain's first log line (interpreter start, imports, config), to the taker being
chosen (its haproxy probed), to the resign advert being sent (the taker's MAC learned first), to
the observer seeing the VIP on the peer, and to the drain returning. Writes
`<out>/handoff-breakdown.json` and prints medians [min-max]. Needs root.

`--modes warm,cold` alternates the two ways a drain starts: in a child of the VM's drain server
(vipdrain.warm, the default) and in its own process (`VIPDRAIN_WARM=0`, as before the server).
The start-up target (issue 16: under 50 ms from the call to the drain's first log line) and the
tail target are judged on the first mode.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
from vipdrain.waiting import wait_until

PHASES = ("first_log", "taker_chosen", "resign_sent", "peer_holds", "drain_returned")
#: Issue 16: the drain's start-up, from the call to its first log line (what it logs first is
#: what it decided from its first look at the VIPs).
STARTUP_TARGET = 0.050
#: How each mode starts the drain: the environment it adds.
MODES = {"warm": {}, "cold": {"VIPDRAIN_WARM": "0"}}
#: The log line that ends each phase the drain logs itself (the first line of the drain ends first_log).
PHASE_LINES = {"taker_chosen": "takes over (", "resign_sent": "resign advert (priority 0)"}


def log_time(line: str) -> float | None:
    """Epoch seconds of a vipdrain log line (`2026-01-01 12:00:00,123 INFO ...`), or None."""
    try:
        return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


def measure(advert_int: float, repeats: int, modes: Sequence[str]) -> list[dict[str, Any]]:
    """`repeats` BOSH drains per mode (alternating) of the master of a 2-VM lab; one row of phase
    times per drain."""
    rows: list[dict[str, Any]] = []
    with Lab.up(nodes=2, advert_int=advert_int) as lab:
        vip = lab.vips[0]
        with lab.observe() as observer, lab.client(rate=RATE):
            for _, mode in itertools.product(range(repeats), modes):
                settle(lab)
                master = lab.vm(lab.holders(vip)[0])
                if mode == "warm":  # restarted with keepalived after the last drain: listening again?
                    wait_until(master.layout.drain_socket.exists, budget=10, step=0.05)
                t0 = time.time()
                proc = master.vipdrain("drain", "job_changed", "hash_changed", env={**bosh_drain_env(), **MODES[mode]},
                                       check=False)
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
                row: dict[str, Any] = {k: round(v - t0, 4) for k, v in stamps.items()}
                row["mode"] = mode
                # Did it run where it was meant to (a server not yet listening: in-process)?
                row["ran_warm"] = float("drain server child" in proc.stderr)
                row["peer_holds"] = round(seen[0] - t0, 4) if seen else None
                row["drain_returned"] = round(t1 - t0, 4)
                prio = peer_priority(lab, seen[1]) if seen else None
                row["skew"] = round(skew(prio or 0, advert_int), 4) if seen else None
                # Issue 9's promise, from the drain call: the peer holds within skew + 0.3 s.
                row["target"] = round(handoff_bound(prio or 0, advert_int), 4) if seen else None
                row["loadavg"] = loadavg()
                rows.append(row)
                print(f"  advert_int {advert_int:g} s, {mode}: " + ", ".join(
                    f"{k} {row.get(k)}" for k in (*PHASES, "skew", "ran_warm")), flush=True)
                time.sleep(0.5)
                monit_stop(master, "keepalived-first")
                StrategyDirector(lab.vms).start_instance(master)
    return rows


def _p95(values: Sequence[float]) -> float | None:
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)] if ordered else None


def targets_of(key: str, rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, object]]:
    """Issue 16's targets on the rows of one advert_int and one mode: the handoff tail and the
    start-up (judged on the median; the p95 is shown with it)."""
    holds = [float(r["peer_holds"]) if r.get("peer_holds") is not None else float("inf") for r in rows]
    within = sum(1 for r, h in zip(rows, holds, strict=True) if h <= float(r.get("target") or 0))
    share = within / len(rows) if rows else 0.0
    ordered = sorted(holds)
    starts = [float(r["first_log"]) for r in rows if r.get("first_log") is not None]
    start_median = statistics.median(starts) if starts else None
    return {
        "tail": {"target": f"95 % of resign handoffs within skew + 0.3 s at advert_int {key} s",
                 "measured": f"{within} of {len(rows)} ({share:.0%}); p95 {_p95(holds)} s",
                 "met": share >= 0.95, "p95": _p95(holds),
                 "deciles": [ordered[min(len(ordered) - 1, len(ordered) * d // 10)] for d in range(11)]
                 if ordered else []},
        "startup": {"target": f"drain start-up under {STARTUP_TARGET * 1000:.0f} ms (call -> first log line, median)",
                    "measured": f"median {start_median} s, p95 {_p95(starts)} s, max {max(starts, default=None)} s "
                                f"({len(starts)} drains)",
                    "met": start_median is not None and start_median < STARTUP_TARGET,
                    "median": start_median, "p95": _p95(starts)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--advert-ints", default="1,0.1")
    p.add_argument("--modes", default="warm,cold", help="comma-separated, from: " + ", ".join(MODES))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        p.error(f"--modes: {args.modes!r}; allowed: {', '.join(MODES)}")
    started = time.monotonic()
    git_start = git_state()
    compile_like_the_package()
    results: dict[str, list[dict[str, Any]]] = {}
    for advert_int in (float(x) for x in args.advert_ints.split(",") if x.strip()):
        results[f"{advert_int:g}"] = measure(advert_int, args.repeats, modes)
    summary: dict[str, dict[str, dict[str, object]]] = {}
    targets: dict[str, dict[str, object]] = {}
    for key, rows in results.items():
        for mode in modes:
            mine = [r for r in rows if r["mode"] == mode]
            part = summary.setdefault(f"{key} {mode}", {})
            for phase in (*PHASES, "ran_warm"):
                vals = [float(r[phase]) for r in mine if r.get(phase) is not None]
                if vals:
                    part[phase] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
                                   "p95": _p95(vals)}
                    print(f"advert_int {key} s, {mode}, {phase:<15} median {statistics.median(vals):.3f} s "
                          f"[{min(vals):.3f}-{max(vals):.3f}], p95 {_p95(vals):.3f}")
            targets[f"{key} {mode}"] = found = targets_of(key, mine)
            for t in found.values():
                print(f"{mode}: {t['target']}: {t['measured']}: {'met' if t['met'] else 'not met'}")
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"meta": {"command": "python bench/handoff_breakdown.py " + " ".join(sys.argv[1:]),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "runtime_s": round(time.monotonic() - started, 1),
                    "machine": machine(), "repeats": args.repeats, "modes": modes, "judged_on": modes[0],
                    "git_start": git_start, "git_end": git_state()},
           "summary": summary, "targets": targets, "runs": results}
    (args.out / "handoff-breakdown.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
