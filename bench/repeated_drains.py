"""Issue 9's check: 20 drains in a row at advert_int 1 s under 200 req/s, with the resign advert.

Two VMs with `placement: sticky`, so every drain is a pure handoff (the VM that drained and came
back does not take the VIP back by preemption): drain vm0, undrain it, drain vm1, undrain it, ...
For each drain: the handoff the drain reports ("verified X s after the drain began"), when the
observer saw the VIP on the peer, and the client's failed requests in the drain's window. Run
once without and once with connection preservation. Writes bench/results/repeated_drains.json.

    python bench/repeated_drains.py [--drains 20] [--advert-int 1]

Issue 15's check (`--switches`): the same drains with connection preservation forwarding through
the tunnel (`preserve_forwarding` encapsulated) and the default grace period, on a plain switch
and on one that enforces anti-spoofing (vipdrain.lab.portsec), IPv4 and IPv6 (`--ipv6`), at
`--rate` (one new connection per request). Every failed request of the whole run counts, not
only those in a drain's window. Writes bench/results/repeated_drains_<rate>.json.

    python bench/repeated_drains.py --switches --rate 1000 [--ipv6]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any

from vipdrain.config.schema import BY_NAME
from vipdrain.lab.cluster import Lab
from vipdrain.vrrp.timing import handoff_bound
from vipdrain.waiting import wait_until

OUT = Path(__file__).parent / "results" / "repeated_drains.json"
PEER_PRIORITY = 150  # the drained VM's peer in a 2-VM sticky group has 150 or 125; skew of the better is used


def run_round(drains: int, advert_int: float, preserve: bool, rate: float, *, grace: float | None = 1,
              ipv6: bool = False, anti_spoofing: bool = False) -> dict[str, Any]:
    """`drains` drains, alternating between two sticky VMs; `grace` None: the property's default
    (the lab's VMs otherwise have a shorter one, vipdrain.lab.plan.LAB_PRESERVE_GRACE)."""
    default_grace = BY_NAME["vipdrain.drain.preserve_grace"].default
    drain: dict[str, Any] = {"preserve_connections": preserve,
                             "preserve_grace": default_grace if grace is None else grace}
    props: dict[str, Any] = {"vipdrain": {"placement": "sticky", "drain": drain}}
    rows = []
    with Lab.up(nodes=2, advert_int=advert_int, overrides=props, ipv6=ipv6, anti_spoofing=anti_spoofing) as lab, \
            lab.observe() as obs, lab.client(rate=rate) as client:
        started = time.time()
        vip = lab.vips[0]
        assert wait_until(lambda: sum(r.ok for r in client.records()) >= rate, budget=15, step=0.1)
        for i in range(drains):
            holder = lab.holders(vip)[0]
            vm = lab.vm(holder)
            peer = next(v for v in lab.vms if v.name != holder)
            t0 = time.time()
            proc = vm.vipdrain("drain", "job_changed", "hash_changed")
            t1 = time.time()
            reported = float(re.search(r"verified ([0-9.]+) s after", proc.stderr).group(1))  # type: ignore[union-attr]
            seen = obs.wait_for(vip, {peer.name}, timeout=10, since=t0) - t0
            vm.vipdrain("undrain")
            # Let the window close with traffic on the new holder before the next drain.
            wait_until(lambda t=t1: any(r.time > t + 0.5 for r in client.records()), budget=10, step=0.05)
            s = client.summary(t0 - 0.2, t1 + 0.5)
            rows.append({"drain": i + 1, "from": holder, "to": peer.name, "reported_s": reported,
                         "observed_s": round(seen, 3), "requests": s.total, "failed": dict(s.failed)})
            print(f"  drain {i + 1:2d} {holder}->{peer.name}: verified {reported:.2f} s, VIP seen on the peer "
                  f"{seen:.2f} s after the drain began; {s.total} requests, failed {dict(s.failed) or 0}",
                  flush=True)
        ended = time.time()
        whole = client.summary(started, ended)
        skipped = client.skipped
    reported = [r["reported_s"] for r in rows]
    failed = sum(sum(r["failed"].values()) for r in rows)
    return {
        "preserve_connections": preserve,
        "ipv6": ipv6,
        "anti_spoofing": anti_spoofing,
        "grace": drain["preserve_grace"],
        "whole_run": {"requests": whole.total, "failed": dict(whole.failed),
                      "achieved_rate": round(whole.total / (ended - started), 1), "skipped": skipped},
        "drains": rows,
        "reported_s": {"median": statistics.median(reported), "min": min(reported), "max": max(reported)},
        "requests": sum(r["requests"] for r in rows),
        "failed": failed,
        "target_s": round(handoff_bound(PEER_PRIORITY, advert_int), 3),
        "within_target": sum(1 for x in reported if x <= handoff_bound(125, advert_int)),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--drains", type=int, default=20)
    p.add_argument("--advert-int", type=float, default=1.0)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--switches", action="store_true",
                   help="issue 15: preservation with default grace, plain and anti-spoofing switch")
    p.add_argument("--ipv6", action="store_true", help="with --switches: the VIP is an IPv6 address")
    args = p.parse_args()
    if args.switches:
        return switches(args)
    rounds = []
    for preserve in (False, True):
        print(f"{args.drains} drains, advert_int {args.advert_int:g} s, preserve_connections {preserve}:", flush=True)
        rounds.append(run_round(args.drains, args.advert_int, preserve, args.rate))
        r = rounds[-1]
        print(f"  -> handoff median {r['reported_s']['median']:.2f} s (min {r['reported_s']['min']:.2f}, max "
              f"{r['reported_s']['max']:.2f}); {r['failed']} of {r['requests']} requests failed", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"machine": {"python": platform.python_version(), "kernel": platform.release()},
                               "advert_int": args.advert_int, "rate": args.rate, "rounds": rounds}, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


def switches(args: argparse.Namespace) -> int:
    """Issue 15's rounds; a round meets the target when no request of the whole run failed."""
    out = OUT.with_name(f"repeated_drains_{args.rate:g}{'_ipv6' if args.ipv6 else ''}.json")
    rounds = []
    for anti_spoofing in (False, True):
        switch = "anti-spoofing switch" if anti_spoofing else "plain switch"
        print(f"{args.drains} drains, {switch}, IPv{6 if args.ipv6 else 4}, {args.rate:g} req/s, "
              "preserve_connections (encapsulated, default grace):", flush=True)
        r = run_round(args.drains, args.advert_int, True, args.rate, grace=None, ipv6=args.ipv6,
                      anti_spoofing=anti_spoofing)
        r["met"] = not r["whole_run"]["failed"]
        rounds.append(r)
        w = r["whole_run"]
        print(f"  -> {w['requests']} requests ({w['achieved_rate']:g} a second, {w['skipped']} slots skipped), "
              f"failed {w['failed'] or 0}: 0 failed {'met' if r['met'] else 'not met'}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"python": platform.python_version(), "kernel": platform.release(),
                                           "cpus": os.cpu_count()},
                               "advert_int": args.advert_int, "rate": args.rate, "rounds": rounds}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
