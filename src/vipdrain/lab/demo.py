"""`vipdrain demo`: a rolling `bosh deploy` of a 3-VM haproxy group under load, in the lab.

Brings the lab up, starts the load client and the VIP observer, lets the deploy simulator run
every VM through drain -> stop -> new release -> pre-start -> start -> post-start, then
post-deploy; tears down and reports what the clients saw, with a timeline picture.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vipdrain.errors import EXIT_OK, EXIT_RUNTIME

if TYPE_CHECKING:  # annotations only: the lab's modules load when a demo runs
    from vipdrain.lab.bosh import Step, Timeline
    from vipdrain.lab.observer import Interval
    from vipdrain.lab.records import Summary


@dataclass
class Handoff:
    """One VM's drain, measured from outside: when the VIP was seen on another VM."""

    vm: str
    drain_seconds: float
    #: Drain start -> VIP seen elsewhere (None: this VM did not hold the VIP when it drained).
    handoff_seconds: float | None


@dataclass
class DemoReport:
    nodes: int
    rate: float
    advert_int: float
    requests: int
    failed: dict[str, int]
    longest_gap_ms: float
    vip_moves: int
    split_brain_seconds: float
    unowned_seconds: float
    deploy_seconds: float
    handoffs: list[Handoff] = field(default_factory=list)
    picture: str = ""

    def lines(self) -> list[str]:
        failed = sum(self.failed.values())
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.failed.items())) or "none"
        out = [
            f"rolling deploy of {self.nodes} VMs at {self.rate:g} req/s (advert_int {self.advert_int:g} s)",
            f"  requests: {self.requests} sent, {failed} failed ({kinds}); longest gap {self.longest_gap_ms:.0f} ms",
            f"  VIP moves: {self.vip_moves}; no holder for {self.unowned_seconds:.2f} s; "
            f"two holders for {self.split_brain_seconds:.2f} s",
            f"  deploy duration: {self.deploy_seconds:.1f} s",
        ]
        for h in self.handoffs:
            ho = f"VIP on a peer after {h.handoff_seconds:.2f} s" if h.handoff_seconds is not None else "held no VIP"
            out.append(f"  {h.vm}: drain {h.drain_seconds:.2f} s, {ho}")
        if self.picture:
            out.append(f"  timeline picture: {self.picture}")
        return out


def handoffs(timeline: Timeline, holder_intervals: list[Interval]) -> list[Handoff]:
    """Per drain step: how long it took and when the observer first saw the VIP elsewhere."""
    out = []
    for s in timeline.named("drain"):
        held = any(iv.start <= s.start < iv.end and s.vm in iv.holders for iv in holder_intervals)
        moved = next((iv.start for iv in holder_intervals if iv.start >= s.start and iv.holders
                      and s.vm not in iv.holders), None) if held else None
        out.append(Handoff(s.vm, s.end - s.start, None if moved is None else moved - s.start))
    return out


def seconds_where(intervals: list[Interval], predicate: Callable[[Interval], bool]) -> float:
    return sum(iv.duration for iv in intervals if predicate(iv))


def report_from(nodes: int, rate: float, advert_int: float, summary: Summary, timeline: Timeline,
                holder_intervals: list[Interval], moves: int, deploy_seconds: float) -> DemoReport:
    return DemoReport(
        nodes=nodes, rate=rate, advert_int=advert_int, requests=summary.total, failed=dict(summary.failed),
        longest_gap_ms=summary.longest_gap_ms, vip_moves=moves,
        split_brain_seconds=seconds_where(holder_intervals, lambda iv: len(iv.holders) > 1),
        unowned_seconds=seconds_where(holder_intervals, lambda iv: not iv.holders),
        deploy_seconds=deploy_seconds, handoffs=handoffs(timeline, holder_intervals),
    )


#: What the demo deploys with: connection preservation on (short grace: the demo's requests are
#: short), so no connection that is open at a handoff is lost.
DEMO_PROPERTIES: dict[str, Any] = {"vipdrain": {"drain": {"preserve_connections": True, "preserve_grace": 2}}}
#: `--no-preserve`: connection preservation (on by default) off.
NO_PRESERVE: dict[str, Any] = {"vipdrain": {"drain": {"preserve_connections": False}}}


def run_demo(out: Path, *, nodes: int = 3, rate: float = 200.0, advert_int: float = 1.0,
             overrides: dict[str, Any] | None = None, progress: Callable[[str], None] = print,
             picture: bool = True) -> DemoReport:
    """Run the demo end to end; the lab is torn down whatever happens."""
    from vipdrain.lab.bosh import Director
    from vipdrain.lab.cluster import Lab
    from vipdrain.waiting import wait_until

    progress(f"bringing up a {nodes}-VM lab (real keepalived + haproxy in network namespaces)...")
    if overrides:
        progress(f"job properties: {json.dumps(overrides)}")
    t_up = time.time()
    with Lab.up(nodes=nodes, advert_int=advert_int, overrides=overrides) as lab:
        vip = lab.vips[0]
        progress(f"lab {lab.prefix} up in {time.time() - t_up:.1f} s; VIP {vip} on "
                 f"{', '.join(vm.name for vm in lab.vms if vm.holds(vip))}")
        with lab.observe() as observer, lab.client(rate=rate) as client:
            steady = client.records

            wait_until(lambda: sum(r.ok for r in steady()) >= rate, budget=15, step=0.1)
            progress(f"load client at {rate:g} req/s; rolling deploy starts (canaries 1, max_in_flight 1)")

            def on_step(s: Step) -> None:
                if s.end:
                    progress(f"  {s.vm} {s.step:<11} {s.end - s.start:5.2f} s {'ok' if s.ok else 'FAILED'}")

            director = Director(lab.vms, on_step=on_step)
            start = time.time()
            try:
                director.deploy({vm.name: None for vm in lab.vms})
            finally:
                end = time.time()
                # One more second of traffic after the deploy: the tail is part of the story.
                wait_until(lambda: any(r.time > end + 1.0 for r in steady()), budget=10, step=0.1)
            client.stop()
            summary = client.summary(start - 1.0, end + 1.0)
            ivs = observer.intervals(vip, start - 1.0, end + 1.0)
            report = report_from(nodes, rate, advert_int, summary, director.timeline, ivs,
                                 observer.moves(vip, start, end + 1.0), end - start)
            if picture:
                from vipdrain.lab.plot import plot_timeline

                path = plot_timeline(out / "timeline.png", [vm.name for vm in lab.vms], director.timeline.steps,
                                     [r for r in client.records() if start - 1.0 <= r.time <= end + 1.0], ivs,
                                     title=f"vipdrain: rolling deploy of {nodes} VMs at {rate:g} req/s",
                                     origin=start - 1.0)
                report.picture = str(path)
    progress("lab torn down")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    (out / "timeline.txt").write_text(director.timeline.format(origin=start) + "\n")
    return report


def cmd_demo(args: argparse.Namespace) -> int:
    report = run_demo(Path(args.out), nodes=args.nodes, rate=args.rate, advert_int=args.advert_int,
                      overrides=NO_PRESERVE if args.no_preserve else DEMO_PROPERTIES,
                      progress=lambda line: print(line, flush=True))
    print("\n".join(report.lines()))
    return EXIT_OK if not report.failed else EXIT_RUNTIME
