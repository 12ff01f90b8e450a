#!/usr/bin/env python3
"""Evidence for the rare failed requests at a VIP move: who resets the client's connections?

    python bench/capture_resets.py [--cycles 12] [--advert-int 1] [--pcap /tmp/vipdrain-resets.pcap]

A 2-VM lab with a client at 200 req/s; tcpdump runs in the client's namespace (TCP port 80 and
ARP). Each cycle drains the master the BOSH way (the VIP moves to the peer), stops and starts it
again (with `preferred` placement it then takes the VIP back by preemption). At the end: every
failed request with its distance to the nearest VIP move, and every TCP reset on the wire with
the VM that sent it (by MAC). Read a connection in full with
`tcpdump -r PCAP -e -tt -n 'tcp port CLIENTPORT or arp'`. Needs root and tcpdump.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from run import RATE, bosh_drain_env, settle
from strategies import StrategyDirector, monit_stop
from vipdrain.lab.cluster import Lab


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=12)
    p.add_argument("--advert-int", type=float, default=1.0)
    p.add_argument("--pcap", type=Path, default=Path("/tmp/vipdrain-resets.pcap"))
    args = p.parse_args(argv)
    with Lab.up(nodes=2, advert_int=args.advert_int) as lab:
        vip = lab.vips[0]
        macs = {vm.mac: vm.name for vm in lab.vms}
        dump = subprocess.Popen(["ip", "netns", "exec", lab.client_namespaces[0], "tcpdump", "-i", "eth0", "-U",
                                 "-w", str(args.pcap), "tcp port 80 or arp"], stderr=subprocess.DEVNULL)
        try:
            with lab.observe() as observer, lab.client(rate=RATE) as client:
                for cycle in range(args.cycles):
                    settle(lab)
                    master = lab.vm(lab.holders(vip)[0])
                    master.vipdrain("drain", "job_changed", "hash_changed", env=bosh_drain_env(), check=False)
                    time.sleep(0.5)
                    monit_stop(master, "keepalived-first")
                    StrategyDirector(lab.vms).start_instance(master)
                    print(f"cycle {cycle + 1}/{args.cycles} done", flush=True)
                settle(lab)
            moves = [(iv.start, sorted(iv.holders)) for iv in observer.intervals(vip)][1:]
        finally:
            dump.terminate()
            dump.wait(10)
    failed = [r for r in client.records() if not r.ok]
    print(f"\n{len(failed)} failed of {len(client.records())} requests")
    for r in failed:
        t, holders = min(moves, key=lambda m: abs(m[0] - r.time)) if moves else (r.time, [])
        print(f"  {r.outcome:<8} started {r.time:.3f}, {t - r.time:+.3f} s to the move to {holders}: {r.error}")
    out = subprocess.run(["tcpdump", "-r", str(args.pcap), "-e", "-tt", "-n", "tcp[tcpflags] & tcp-rst != 0"],
                         capture_output=True, text=True).stdout
    print(f"\nTCP resets on the wire ({args.pcap}):")
    for line in out.splitlines():
        src = line.split()[1] if len(line.split()) > 1 else ""
        print(f"  [{macs.get(src, 'client')}] {line[:170]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
