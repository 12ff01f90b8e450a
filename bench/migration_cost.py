#!/usr/bin/env python3
"""What a deploy costs on haproxy-boshrelease's keepalived job, and what the migration to vipdrain costs.

    python bench/migration_cost.py [--nodes 2] [--repeats 3] [--out bench/results]

A lab of `nodes` VMs on the old job (vipdrain.lab.oldjob: its template, advert_int 1 s, VRRPv2,
VRID 1) with a client at 200 requests a second. Per round:
- `old-job deploy`: a new release of the old job, VM by VM as BOSH does it (no drain: monit
  stop = keepalived SIGTERM and haproxy SIGTERM, the new release, monit start, then the
  director's 1 s minimum watch time before the next VM);
- `migration`: the deploy to vipdrain with the ops file's settings (VRRPv2, VRID 1), through
  the deploy simulator.
Each row: failed requests, seconds without a holder, seconds with two holders, VIP moves. Writes
`<out>/migration-cost.json` and prints medians [min-max]. Needs root.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from run import DEFAULT_OUT, RATE, git_state, loadavg, machine
from vipdrain.lab.bosh import Director
from vipdrain.lab.cluster import Lab
from vipdrain.lab.observer import VipObserver

MIGRATION = {"keepalived": {"vrrp_version": 2, "virtual_router_id": 1}}
WATCH_SECONDS = 1.0
TAIL = 3.0


def window(lab: Lab, observer: VipObserver, run, start: float, end: float) -> dict[str, float]:
    vip = lab.vips[0]
    spans = observer.intervals(vip, start, end)
    summary = run.summary(start, end)
    return {
        "failed": summary.failures,
        "no_holder_s": round(sum(i.duration for i in spans if not i.holders), 3),
        "two_holders_s": round(sum(i.duration for i in spans if len(i.holders) > 1), 3),
        "moves": observer.moves(vip, start, end),
    }


def old_job_deploy(lab: Lab) -> None:
    for vm in lab.vms:  # one AZ each, in order: BOSH's order for these VMs
        vm.monit_stop()
        vm.install_old_job()
        vm.monit_start()
        threading.Event().wait(WATCH_SECONDS)  # the director's watch time, simulated


def measure(nodes: int, repeats: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for _ in range(repeats):
        lab = Lab.up(nodes=nodes, advert_int=1.0, old_job=True, overrides=MIGRATION)
        with lab, lab.observe() as observer, lab.client(rate=RATE) as run:
            lab.wait_converged()
            t0 = time.time()
            old_job_deploy(lab)
            lab.wait_converged()
            t1 = time.time() + TAIL
            threading.Event().wait(TAIL)
            rows.append({"what": "old-job deploy", **window(lab, observer, run, t0, t1)})
            t2 = time.time()
            Director(lab.vms).deploy({vm.name: None for vm in lab.vms})
            t3 = time.time() + TAIL
            threading.Event().wait(TAIL)
            rows.append({"what": "migration", **window(lab, observer, run, t2, t3)})
        print(rows[-2], rows[-1], file=sys.stderr)
    return rows


def med(values: Sequence[float]) -> str:
    return f"{statistics.median(values):g} [{min(values):g}-{max(values):g}]"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    rows = measure(args.nodes, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"machine": machine(), "git": git_state(), "loadavg": loadavg(), "nodes": args.nodes, "rate": RATE}
    (args.out / "migration-cost.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"| deploy ({args.nodes} VMs) | failed requests | s without holder | s with two holders | VIP moves |")
    print("|---|---|---|---|---|")
    for what in ("old-job deploy", "migration"):
        mine = [r for r in rows if r["what"] == what]
        cells = [med([float(r[k]) for r in mine]) for k in ("failed", "no_holder_s", "two_holders_s", "moves")]
        print(f"| {what} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
