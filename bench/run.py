#!/usr/bin/env python3
"""vipdrain benchmark: rolling deploys and single handoffs under load, strategy by strategy.

    python bench/run.py                 # full run (3 repeats; about 25 min on 2 cores)
    python bench/run.py --quick         # 1 repeat, N = 2 and 3, advert_int 0.1 s only (a few minutes)
    python bench/run.py --repeats 5 --nodes 3 --advert-ints 1 --strategies vipdrain,naive-stop
    python bench/run.py --strategies '' --vip-counts 1,50 --repeats 10 --name scaling  # drain cost only

Needs root (real keepalived + haproxy in network namespaces: `vipdrain.lab`). For every
advert_int x N x strategy it brings up one lab, starts a load client (one new connection per
request) and the VIP observer, then runs `repeats` rolling deploys (canaries 1, max_in_flight 1)
and `repeats` single handoffs (the master's stop side once, then it starts again). Then, per VIP
count (1, 10, 50 VRRP instances), `repeats` drains of the master through a wrapper that reads
the drain process's CPU time and peak RSS. Writes `<out>/<name>.json` (machine, code version,
settings, every run with the evidence of its failures, the summary, the targets), `<name>.csv` and
`<name>.md` (name: `full`, `quick`, `<mode>-custom` or --name), and one timeline picture per
strategy (rolling deploy, N=3, advert_int 1 s) under docs/img/. `--report FILE.json` only re-renders
a results file. Exit status 0 even when a target is missed: the report says so.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from strategies import (
    DEFAULT_STRATEGIES,
    STRATEGIES,
    Strategy,
    StrategyDirector,
    lab_overrides,
    monit_stop,
    peer_priority,
    select,
    strip_loopback_vips,
)
from vipdrain.lab.bosh import DeployFailed, Step, Timeline
from vipdrain.lab.client import ClientRun, Request, Stream, summarize
from vipdrain.lab.cluster import Lab, list_prefixes
from vipdrain.lab.observer import Interval
from vipdrain.vrrp.timing import handoff_bound

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results"
DEFAULT_IMG = ROOT / "docs" / "img"
FULL_NODES = (2, 3, 5)
FULL_ADVERT_INTS = (1.0, 0.1)
QUICK_NODES = (2, 3)
QUICK_ADVERT_INTS = (0.1,)
VIP_COUNTS = (1, 10, 50)
RATE = 200.0
#: Client traffic counted before and after each measured window (s).
MARGIN = 0.5
#: Failed requests kept per run as evidence.
MAX_FAILURES = 40
#: Pause between runs in one lab, after the cluster has settled (s).
SETTLE = 0.5
#: Long-lived connections next to the short requests: raw TCP streams through haproxy, this many
#: at a time, each this long, their starts spread evenly (vipdrain-preserve's grace covers one).
STREAMS, STREAM_SECONDS = 3, 6.0
#: The picture per strategy: rolling deploy, this many VMs, this advert_int.
PICTURE_NODES, PICTURE_ADVERT_INT = 3, 1.0

#: Runs `argv` in the VM namespace and prints its exit status, stdout, wall time and the
#: rusage of its children (the drain process and anything it ran) as one JSON line.
#: A drain that ran in the drain server's child (vipdrain.warm) spent its CPU there, where no
#: rusage of ours sees it: the child reports it on stderr (`WARM_CHILD`), and it is added.
RUSAGE_WRAPPER = """\
import json, re, resource, subprocess, sys, time
t0, t = time.time(), time.monotonic()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.monotonic() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
user, system, rss = ru.ru_utime, ru.ru_stime, ru.ru_maxrss
child = re.search(r"drain server child \\d+: exit -?\\d+, "
                  r"CPU user ([0-9.]+) s \\+ sys ([0-9.]+) s .*peak RSS (\\d+) KiB", p.stderr)
if child:
    user, system, rss = user + float(child[1]), system + float(child[2]), max(rss, int(child[3]))
sys.stderr.write(p.stderr)
print(json.dumps({"rc": p.returncode, "stdout": p.stdout, "t0": t0, "wall": wall, "user": user,
                  "sys": system, "maxrss_kib": rss, "warm": bool(child)}))
"""


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class Handoff:
    """One VM's stop side while it held a VIP: when a peer was first seen holding it."""

    vm: str
    to: str | None
    #: Stop side start (unmonitor) -> VIP first seen on another VM, by the address observer.
    seconds: float | None
    #: The target for this handoff (None for the no-drain baselines).
    target: float | None
    peer_priority: int | None


@dataclass
class Run:
    """One measured run."""

    scenario: str  # deploy | handoff | drain-scaling
    strategy: str
    advert_int: float
    nodes: int
    vips: int
    repeat: int
    window: tuple[float, float] = (0.0, 0.0)
    requests: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    failed_total: int = 0
    #: Request slots the client could not send in the window (all workers stuck in timeouts).
    unsent: int = 0
    longest_gap_ms: float = 0.0
    handoffs: list[Handoff] = field(default_factory=list)
    #: The first handoff of the run (the master's), seconds.
    handoff_s: float | None = None
    vip_moves: int = 0
    #: Deploy: bosh deploy start -> end (post-deploy included). Handoff: the stop side.
    duration_s: float = 0.0
    #: Wall time of each drain step (vipdrain / fault-drain), seconds.
    drain_s: list[float] = field(default_factory=list)
    #: drain-scaling only: CPU (user + sys) and peak RSS of the drain process.
    cpu_s: float | None = None
    maxrss_mib: float | None = None
    #: drain-scaling only: drain start -> every VIP seen on a peer.
    all_vips_moved_s: float | None = None
    #: Streams that had to outlive a VIP move away from their VM (`streams_across_moves`), and
    #: how many of them finished.
    streams_at_risk: int = 0
    streams_survived: int = 0
    loadavg: float = 0.0
    #: Other lab runs on the machine when this run started (other engineers: CPU contention).
    other_labs: int = 0
    #: The code measured: git HEAD when the run started, `+dirty` if files under src/ differed from it.
    code: str = ""
    error: str = ""
    #: Evidence: the failed requests (s after the window start, outcome, VM, error), at most 40.
    failures: list[tuple[float, str, str | None, str]] = field(default_factory=list)
    #: Evidence: the lifecycle steps (VM, step, start and end in s after the window start, ok, detail).
    steps: list[tuple[str, str, float, float, bool, str]] = field(default_factory=list)
    #: Evidence: VIP holders over the window (s after the window start, holders).
    holders: list[tuple[float, list[str]]] = field(default_factory=list)


@dataclass
class Pending:
    """A run whose client records are read once the lab's client has stopped."""

    run: Run
    timeline: Timeline
    start: float
    end: float


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


def handoff_target(strategy: Strategy, priority: int | None, advert_int: float) -> float | None:
    """Issue 7: 3 x advert_int + skew + 0.5 s; issue 9 (resign advert): skew + 0.3 s."""
    if strategy.drain != "vipdrain" or priority is None:
        return None
    if strategy.resign:
        return handoff_bound(priority, advert_int, resign=True)
    return handoff_bound(priority, advert_int, resign=False)


def first_peer(intervals: Sequence[Interval], vm: str, since: float) -> tuple[float, str] | None:
    """When (and to whom) a VM other than `vm` was first seen holding the VIP at or after `since`."""
    for iv in intervals:
        if iv.end <= since:
            continue
        others = sorted(iv.holders - {vm})
        if others:
            return max(iv.start, since), others[0]
    return None


def held_at(intervals: Sequence[Interval], vm: str, t: float) -> bool:
    return any(iv.start <= t < iv.end and vm in iv.holders for iv in intervals)


def handoffs_of(lab: Lab, strategy: Strategy, steps: Iterable[Step], intervals: Sequence[Interval]) -> list[Handoff]:
    """Per stop side (an `unmonitor` step) of a VM that held the VIP: the handoff."""
    out = []
    for s in sorted((s for s in steps if s.step == "unmonitor"), key=lambda s: s.start):
        if not held_at(intervals, s.vm, s.start):
            continue
        seen = first_peer(intervals, s.vm, s.start)
        to = seen[1] if seen else None
        prio = peer_priority(lab, to) if to else None
        out.append(Handoff(s.vm, to, None if seen is None else round(seen[0] - s.start, 4),
                           handoff_target(strategy, prio, lab.advert_int), prio))
    return out


def streams_across_moves(streams: Iterable[Stream], seconds: float, intervals: Sequence[Interval],
                         steps: Iterable[Step]) -> list[Stream]:
    """The streams that had to outlive a VIP move away from the VM serving them.

    A VM loses the VIP's clients when another VM is first seen holding it (its gratuitous ARP).
    A stream is at risk when it was served by that VM, opened before the VM's trouble began, and
    due to end after the move (a stream that ended by itself before proves nothing). The trouble
    began at the VM's stop side (`unmonitor`) when this is the first move away from it since
    then - a naive stop may even restart the VM before its peer takes over - and at the move
    itself otherwise (a preemption).
    """
    unmonitored: dict[str, list[float]] = {}
    for s in steps:
        if s.step == "unmonitor":
            unmonitored.setdefault(s.vm, []).append(s.start)
    lost: list[tuple[str, float, float]] = []  # (vm, trouble began, move)
    last_loss: dict[str, float] = {}
    last: frozenset[str] = frozenset()
    for iv in intervals:
        if not iv.holders:
            continue
        new = iv.holders - last
        for vm in (last - new) if new else ():
            since = [t for t in unmonitored.get(vm, []) if last_loss.get(vm, float("-inf")) < t <= iv.start]
            lost.append((vm, max(since, default=iv.start), iv.start))
            last_loss[vm] = iv.start
        last = iv.holders
    out = {}
    for s in streams:
        if any(s.vm == vm and s.time < began and s.time + seconds > moved for vm, began, moved in lost):
            out[(s.time, s.vm)] = s
    return list(out.values())


def code_version() -> str:
    """`HEAD` (short) of the tree the lab imports, `+dirty` when src/ has local changes."""
    g = git_state()
    return g["head"] + ("+dirty" if g["dirty_src"] else "")


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError):
        return 0.0


def fill_from_client(run: Run, records: Sequence[Request], start: float, end: float, rate: float) -> None:
    """Failures, gap and unsent slots of the requests started within [start, end]."""
    summary = summarize(records, (), start, end)
    run.window = (round(start, 3), round(end, 3))
    run.requests = summary.total
    run.failed = dict(sorted(summary.failed.items()))
    run.failed_total = summary.failures
    run.longest_gap_ms = round(summary.longest_gap_ms, 1)
    run.unsent = max(0, round(rate * (end - start)) - summary.total)
    failed = sorted((r for r in records if start <= r.time <= end and not r.ok), key=lambda r: r.time)
    run.failures = [(round(r.time - start, 3), r.outcome, r.vm, r.error) for r in failed[:MAX_FAILURES]]


def fill_evidence(run: Run, steps: Iterable[Step], intervals: Sequence[Interval], start: float) -> None:
    """The steps and VIP holders of the window, relative to its start (to read a bad run back)."""
    run.steps = [(s.vm, s.step, round(s.start - start, 3), round(s.end - start, 3), s.ok, str(s.detail)[:200])
                 for s in sorted(steps, key=lambda s: s.start)]
    run.holders = [(round(iv.start - start, 3), sorted(iv.holders)) for iv in intervals]


def wait_records_past(client: ClientRun, t: float, budget: float = 10.0) -> None:
    """Wait until the client has written a request started after `t` (the window is complete
    apart from requests still in flight, which the final read after stop includes)."""
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        if any(r.time > t for r in client.records()[-50:]):
            return
        time.sleep(0.1)


def settle(lab: Lab) -> None:
    lab.wait_converged()
    time.sleep(SETTLE)


def measure_strategy(strategy: Strategy, advert_int: float, nodes: int, repeats: int, rate: float,
                     picture: Path | None, progress: Callable[[str], None], update_seconds: float = 0.0) -> list[Run]:
    """One lab: `repeats` rolling deploys, then `repeats` single handoffs of the master."""
    pending: list[Pending] = []
    base = {"strategy": strategy.name, "advert_int": advert_int, "nodes": nodes, "vips": 1}
    t_up = time.monotonic()
    with Lab.up(nodes=nodes, advert_int=advert_int, overrides=lab_overrides(strategy)) as lab:
        vip = lab.vips[0]
        if not strategy.vipdrain:
            for vm in lab.vms:
                strip_loopback_vips(vm)
        progress(f"    lab {lab.prefix} up in {time.monotonic() - t_up:.1f} s")
        with lab.observe() as observer, lab.client(rate=rate) as client, \
                lab.client(rate=0, streams=STREAMS, stream_mode="tcp", stream_seconds=STREAM_SECONDS,
                           stream_stagger=STREAM_SECONDS / STREAMS) as stream_client:
            wait_records_past(client, time.time() + 0.5)
            for r in range(repeats):
                settle(lab)
                run = Run("deploy", repeat=r, loadavg=loadavg(), other_labs=len(other_labs([lab.prefix])),
                          code=code_version(), **base)
                director = StrategyDirector(lab.vms, strategy=strategy, update_seconds=update_seconds)
                start = time.time()
                try:
                    director.deploy({vm.name: None for vm in lab.vms})
                except DeployFailed as exc:
                    run.error = str(exc)
                end = time.time()
                pending.append(Pending(run, director.timeline, start, end))
                # The next run starts after `settle`, which outlasts the window's tail (MARGIN).
            for r in range(repeats):
                settle(lab)
                run = Run("handoff", repeat=r, loadavg=loadavg(), other_labs=len(other_labs([lab.prefix])),
                          code=code_version(), **base)
                master = lab.vm(lab.holders(vip)[0])
                director = StrategyDirector(lab.vms, strategy=strategy)
                start = time.time()
                try:
                    director.stop_instance(master, "job_changed", False)
                    end = time.time()
                    moved = observer.wait_for(vip, lambda h, m=master.name: bool(h - {m}), 15.0, since=start)
                    end = max(end, moved)
                except Exception as exc:  # a failed step or a lab timeout is a result, not a crash
                    run.error = f"{type(exc).__name__}: {exc}"
                    end = time.time()
                pending.append(Pending(run, director.timeline, start, end))
                time.sleep(max(0.0, end + MARGIN - time.time()))  # the restart stays out of the window
                director.start_instance(master)
            settle(lab)
        records = client.records()
        streams = stream_client.streams()
        runs = []
        for p in pending:
            w0, w1 = p.start - MARGIN, p.end + MARGIN
            ivs = observer.intervals(vip, w0, w1)
            fill_from_client(p.run, records, w0, w1, rate)
            at_risk = streams_across_moves(streams, STREAM_SECONDS, ivs, p.timeline.steps)
            p.run.streams_at_risk = len(at_risk)
            p.run.streams_survived = sum(1 for s in at_risk if s.outcome == "finished")
            p.run.handoffs = handoffs_of(lab, strategy, p.timeline.steps, ivs)
            p.run.handoff_s = p.run.handoffs[0].seconds if p.run.handoffs else None
            p.run.vip_moves = observer.moves(vip, w0, w1)
            p.run.duration_s = round(p.end - p.start, 3)
            p.run.drain_s = [round(s.end - s.start, 3) for s in p.timeline.named("drain")]
            fill_evidence(p.run, p.timeline.steps, ivs, w0)
            runs.append(p.run)
            progress("      " + describe(p.run))
        first_deploy = next((p for p in pending if p.run.scenario == "deploy"), None)
        if picture is not None and first_deploy is not None:
            from vipdrain.lab.plot import plot_timeline

            w0, w1 = first_deploy.start - MARGIN, first_deploy.end + MARGIN
            plot_timeline(picture, [vm.name for vm in lab.vms], first_deploy.timeline.steps,
                          [r for r in records if w0 <= r.time <= w1], observer.intervals(vip, w0, w1),
                          title=f"{strategy.name}: rolling deploy of {nodes} VMs at {rate:g} req/s, "
                                f"advert_int {advert_int:g} s",
                          origin=w0)
            progress(f"      picture: {picture.relative_to(ROOT) if picture.is_relative_to(ROOT) else picture}")
    return runs


def bosh_drain_env() -> dict[str, str]:
    return {"BOSH_JOB_STATE": json.dumps({"persistent_disk": 0}),
            "BOSH_JOB_NEXT_STATE": json.dumps({"persistent_disk": 0})}


def measure_scaling(vip_count: int, repeats: int, rate: float, progress: Callable[[str], None]) -> list[Run]:
    """One 2-VM lab with `vip_count` VRRP instances: `repeats` BOSH drains of the master, each under
    a wrapper that reports the drain process's CPU time and peak RSS; then stop and start it again."""
    strategy = STRATEGIES["vipdrain"]
    runs: list[Run] = []
    pending: list[tuple[Run, float, float]] = []
    t_up = time.monotonic()
    with Lab.up(nodes=2, advert_int=1.0, vips=vip_count) as lab:
        progress(f"    lab {lab.prefix} up in {time.monotonic() - t_up:.1f} s ({vip_count} VIPs)")
        with lab.observe() as observer, lab.client(rate=rate) as client:
            wait_records_past(client, time.time() + 0.5)
            for r in range(repeats):
                settle(lab)
                run = Run("drain-scaling", strategy.name, 1.0, 2, vip_count, r, loadavg=loadavg(),
                          other_labs=len(other_labs([lab.prefix])), code=code_version())
                master = lab.vm(lab.holders(lab.vips[0])[0])
                start = time.time()
                proc = master.run([sys.executable, "-c", RUSAGE_WRAPPER, str(master.wrapper), "drain",
                                   "job_changed", "hash_changed"], env=bosh_drain_env(), check=False)
                end = time.time()
                try:
                    usage = json.loads(proc.stdout.strip().splitlines()[-1])
                    start = float(usage["t0"])  # the drain process's start, not the wrapper's
                    run.cpu_s = round(usage["user"] + usage["sys"], 3)
                    run.maxrss_mib = round(usage["maxrss_kib"] / 1024, 1)
                    run.drain_s = [round(usage["wall"], 3)]
                    # The contract: one integer line (the grace period when connections are kept).
                    if usage["rc"] != 0 or not re.fullmatch(r"-?[0-9]+\n", usage["stdout"]):
                        run.error = f"drain exit {usage['rc']}, stdout {usage['stdout']!r}"
                except (ValueError, KeyError, IndexError):
                    run.error = f"wrapper failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
                moved = []
                for vip in lab.vips:
                    seen = first_peer(observer.intervals(vip, start - MARGIN, time.time()), master.name, start)
                    moved.append(seen[0] - start if seen else None)
                if all(m is not None for m in moved):
                    run.all_vips_moved_s = round(max(m for m in moved if m is not None), 4)
                ivs = observer.intervals(lab.vips[0], start - MARGIN, end + MARGIN)
                step = Step(master.name, "unmonitor", start, start)
                run.handoffs = handoffs_of(lab, strategy, [step], ivs)
                run.steps = [(master.name, "drain", MARGIN, round(end - start + MARGIN, 3), not run.error,
                              " | ".join(proc.stderr.strip().splitlines()[-3:])[-400:])]
                run.handoff_s = run.handoffs[0].seconds if run.handoffs else None
                run.duration_s = round(end - start, 3)
                pending.append((run, start, end))
                time.sleep(max(0.0, end + MARGIN - time.time()))
                monit_stop(master, strategy.stop_order)
                StrategyDirector(lab.vms, strategy=strategy).start_instance(master)
            settle(lab)
        records = client.records()
        for run, start, end in pending:
            fill_from_client(run, records, start - MARGIN, end + MARGIN, rate)
            run.holders = [(round(iv.start - start + MARGIN, 3), sorted(iv.holders))
                           for iv in observer.intervals(lab.vips[0], start - MARGIN, end + MARGIN)]
            run.vip_moves = observer.moves(lab.vips[0], start - MARGIN, end + MARGIN)
            runs.append(run)
            progress("      " + describe(run))
    return runs



def describe(run: Run) -> str:
    failed = ", ".join(f"{k} {v}" for k, v in run.failed.items()) or "0 failed"
    parts = [f"{run.scenario:<13} #{run.repeat}", f"{run.requests} req, {failed}", f"gap {run.longest_gap_ms:.0f} ms"]
    if run.handoff_s is not None:
        parts.append(f"handoff {run.handoff_s:.2f} s")
    parts.append(f"moves {run.vip_moves}")
    if run.streams_at_risk:
        parts.append(f"streams survived {run.streams_survived}/{run.streams_at_risk}")
    parts.append(f"{run.duration_s:.1f} s")
    if run.cpu_s is not None:
        parts.append(f"cpu {run.cpu_s:.2f} s, rss {run.maxrss_mib} MiB, all VIPs moved {run.all_vips_moved_s} s")
    if run.error:
        parts.append(f"ERROR {run.error}")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# Summaries and targets
# --------------------------------------------------------------------------------------------


def stats(values: Iterable[float | int | None]) -> dict[str, float] | None:
    """Median, min and max of the values that are not None (None when there are none)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": round(statistics.median(vals), 4), "min": min(vals), "max": max(vals), "n": len(vals)}


def occupancy(run: Run) -> tuple[float, float]:
    """Seconds of the run's window in which no VM held the VIP, and in which two or more did."""
    if not run.holders:
        return 0.0, 0.0
    length = run.window[1] - run.window[0]
    unowned = split = 0.0
    for i, (t, names) in enumerate(run.holders):
        nxt = run.holders[i + 1][0] if i + 1 < len(run.holders) else length
        if not names:
            unowned += nxt - t
        elif len(names) > 1:
            split += nxt - t
    return round(unowned, 3), round(split, 3)


def failure_places(run: Run) -> Counter[str]:
    """Where the run's failed requests happened: at a `handoff` (a VIP move whose old holder was in
    its stop side: drain, stop, update), at a `preemption` (any other move: keepalived handing the
    VIP back to a higher-priority VM after its rejoin), or `elsewhere` (no move within 1.5 s after
    the request started)."""
    changes = []
    for (t, names), (_, before) in zip(run.holders[1:], run.holders, strict=False):
        if set(names) != set(before):
            changes.append((t, set(before) - set(names) or set(before)))
    places: Counter[str] = Counter()
    for t_fail, *_ in run.failures:
        near = [(t, old) for t, old in changes if t_fail - 0.05 <= t <= t_fail + 1.5]
        if not near:
            places["elsewhere"] += 1
            continue
        t, old = near[0]
        latest = {vm: step for vm, step, start, *_ in sorted(run.steps, key=lambda s: s[2]) if start - 0.05 <= t}
        stopping = any(latest.get(vm) in ("unmonitor", "drain", "stop", "update") for vm in old)
        places["handoff" if stopping else "preemption"] += 1
    return places


def summarize_runs(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per (scenario, strategy, advert_int, nodes, vips)."""
    groups: dict[tuple[Any, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.scenario, run.strategy, run.advert_int, run.nodes, run.vips), []).append(run)
    rows = []
    for (scenario, strategy, advert_int, nodes, vips), group in groups.items():
        kinds: Counter[str] = Counter()
        places: Counter[str] = Counter()
        for run in group:
            kinds.update(run.failed)
            places.update(failure_places(run))
        handoffs = [h for run in group for h in run.handoffs]
        rows.append({
            "scenario": scenario, "strategy": strategy, "advert_int": advert_int, "nodes": nodes, "vips": vips,
            "runs": len(group), "errors": sum(1 for r in group if r.error),
            "requests": stats(r.requests for r in group),
            "failed": stats(r.failed_total for r in group),
            "failed_by_kind_total": dict(sorted(kinds.items())),
            #: Of the failed requests kept as evidence (at most MAX_FAILURES per run): where they happened.
            "failed_where_total": dict(sorted(places.items())),
            "unsent": stats(r.unsent for r in group),
            "longest_gap_ms": stats(r.longest_gap_ms for r in group),
            "handoff_s": stats(r.handoff_s for r in group),
            "handoff_all_s": stats(h.seconds for h in handoffs),
            "handoff_over_target": sum(1 for h in handoffs
                                       if h.target is not None and (h.seconds is None or h.seconds > h.target)),
            "handoff_target_s": stats(h.target for h in handoffs),
            "unowned_s": stats(occupancy(r)[0] for r in group),
            "two_holders_s": stats(occupancy(r)[1] for r in group),
            "vip_moves": stats(r.vip_moves for r in group),
            "duration_s": stats(r.duration_s for r in group),
            "drain_s": stats(d for r in group for d in r.drain_s),
            "cpu_s": stats(r.cpu_s for r in group),
            "maxrss_mib": stats(r.maxrss_mib for r in group),
            "all_vips_moved_s": stats(r.all_vips_moved_s for r in group),
            "streams_at_risk": sum(r.streams_at_risk for r in group),
            "streams_survived": sum(r.streams_survived for r in group),
        })
    return rows


def targets(rows: Sequence[dict[str, Any]], runs: Sequence[Run], rate: float = RATE) -> list[dict[str, Any]]:
    """The issues' targets, each with the measured value and whether it was met."""
    out: list[dict[str, Any]] = []
    deploys = [r for r in runs if r.scenario == "deploy" and r.strategy == "vipdrain"]
    for nodes in sorted({r.nodes for r in deploys}):
        group = [r for r in deploys if r.nodes == nodes]
        failed = sum(r.failed_total for r in group)
        requests = sum(r.requests for r in group)
        clean = sum(1 for r in group if not r.failed_total and not r.error)
        where: Counter[str] = Counter()
        for r in group:
            where.update(failure_places(r))
        at = f" (at {', '.join(f'{k} {v}' for k, v in sorted(where.items()))})" if where else ""
        out.append({"target": f"vipdrain: 0 failed requests through a rolling deploy of {nodes} VMs at {rate:g} req/s",
                    "measured": f"{failed} failed of {requests} in {len(group)} deploys{at}; {clean} of "
                                f"{len(group)} deploys without a failure "
                                f"(advert_int {', '.join(sorted({f'{r.advert_int:g} s' for r in group}))})",
                    "met": failed == 0 and not any(r.error for r in group)})
    for name, what in (("vipdrain", "skew + 0.3 s (resign advert)"),
                       ("vipdrain-noresign", "3 x advert_int + skew + 0.5 s")):
        for advert_int in sorted({r.advert_int for r in runs if r.strategy == name}, reverse=True):
            hs = [h for r in runs if r.strategy == name and r.advert_int == advert_int
                  and r.scenario in ("deploy", "handoff") for h in r.handoffs]
            if not hs:
                continue
            over = [h for h in hs if h.target is not None and (h.seconds is None or h.seconds > h.target)]
            worst = max(hs, key=lambda h: (h.seconds or 1e9) - (h.target or 0))
            out.append({"target": f"{name} at advert_int {advert_int:g} s: handoff within {what}",
                        "measured": f"{len(hs) - len(over)} of {len(hs)} handoffs within; worst "
                                    f"{worst.seconds} s vs target {worst.target:.3f} s"
                                    if worst.target is not None else f"{len(hs)} handoffs",
                        "met": not over})
    scaling = {r["vips"]: r for r in rows if r["scenario"] == "drain-scaling"}
    if 1 in scaling and 50 in scaling and scaling[1]["drain_s"] and scaling[50]["drain_s"]:
        one, fifty = scaling[1]["drain_s"]["median"], scaling[50]["drain_s"]["median"]
        out.append({"target": "drain time for 50 VIPs within 1.5 x that for 1 VIP",
                    "measured": f"{fifty:.3f} s vs {one:.3f} s (x{fifty / one:.2f}, medians)",
                    "met": fifty <= 1.5 * one})
    # The drain call includes a confirmation window of fixed length (3 x advert_int + skew after
    # the resign): the handoff itself is when the last VIP is on the peer.
    if 1 in scaling and 50 in scaling and scaling[1]["all_vips_moved_s"] and scaling[50]["all_vips_moved_s"]:
        one, fifty = scaling[1]["all_vips_moved_s"]["median"], scaling[50]["all_vips_moved_s"]["median"]
        out.append({"target": "every VIP on the peer, 50 VIPs within 1.5 x the time for 1 VIP",
                    "measured": f"{fifty:.3f} s vs {one:.3f} s (x{fifty / one:.2f}, medians)",
                    "met": fifty <= 1.5 * one})
    for vips in sorted({r.vips for r in runs if r.cpu_s is not None}):
        cost = [r for r in runs if r.cpu_s is not None and r.vips == vips]
        cpu = max(r.cpu_s or 0.0 for r in cost)
        rss = max(r.maxrss_mib or 0.0 for r in cost)
        med = statistics.median(r.cpu_s or 0.0 for r in cost)
        out.append({"target": f"one drain call ({vips} VIP{'s' if vips > 1 else ''}) under 0.5 s CPU and 60 MB RSS",
                    "measured": f"{len(cost)} calls: CPU (user+sys) median {med:.2f} s, worst {cpu:.2f} s; "
                                f"peak RSS worst {rss:.1f} MiB",
                    "met": cpu < 0.5 and rss * 1.048576 < 60})
    return out


def fmt(s: dict[str, float] | None, digits: int = 2, spread: bool = True) -> str:
    """`median [min-max]` of a stats dict."""
    if s is None:
        return "-"
    med = f"{s['median']:.{digits}f}"
    if not spread or s["min"] == s["max"]:
        return med
    return f"{med} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def survived(row: dict[str, Any]) -> str:
    """`survived/at risk (percent)` summed over the repeats; `-` when no stream was at risk (or
    the results predate the streams)."""
    at_risk = row.get("streams_at_risk", 0)
    if not at_risk:
        return "-"
    return f"{row['streams_survived']}/{at_risk} ({100 * row['streams_survived'] / at_risk:.0f}%)"


def markdown(rows: Sequence[dict[str, Any]], goal_rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The tables of docs/BENCHMARKS.md: medians [min-max] over the repeats."""
    lines = [f"Results of `{meta['command']}` ({meta.get('name', meta['mode'])}, {meta['repeats']} repeat(s), "
             f"{meta['runtime_s'] / 60:.1f} min, {meta['started']}). Cells: median [min-max] over the repeats."
             + (f" Each deploy's update step keeps the VM stopped {meta['update_seconds']:g} s."
                if meta.get("update_seconds") else ""), ""]
    rate = f"{meta.get('rate', RATE):g} req/s"
    for scenario, title in (("deploy", f"Rolling deploy (canaries 1, max_in_flight 1), {rate}"),
                            ("handoff", f"Single handoff (the master's stop side once), {rate}")):
        part = [r for r in rows if r["scenario"] == scenario]
        if not part:
            continue
        lines += [f"### {title}", "",
                  "| advert_int | N | strategy | failed | by kind (sum) | not sent | longest gap ms | handoff s "
                  "| no holder s | 2 holders s | VIP moves | streams survived | "
                  + ("deploy s" if scenario == "deploy" else "stop side s") + " |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        order = list(STRATEGIES)
        for r in sorted(part, key=lambda r: (-r["advert_int"], r["nodes"], order.index(r["strategy"]))):
            kinds = ", ".join(f"{k} {v}" for k, v in r["failed_by_kind_total"].items()) or "-"
            err = f" ({r['errors']} error(s))" if r["errors"] else ""
            lines.append(
                f"| {r['advert_int']:g} s | {r['nodes']} | {r['strategy']}{err} | {fmt(r['failed'], 0)} | {kinds} "
                f"| {fmt(r['unsent'], 0)} | {fmt(r['longest_gap_ms'], 0)} | {fmt(r['handoff_s'])} "
                f"| {fmt(r['unowned_s'])} | {fmt(r['two_holders_s'])} "
                f"| {fmt(r['vip_moves'], 0, spread=False)} | {survived(r)} | {fmt(r['duration_s'], 1)} |")
        lines.append("")
    part = [r for r in rows if r["scenario"] == "drain-scaling"]
    if part:
        lines += ["### Drain time and cost vs number of VIPs (2 VMs, advert_int 1 s, vipdrain with resign advert)", "",
                  "| VIPs | drain call s | all VIPs on the peer s | CPU s (user+sys) | peak RSS MiB | failed |",
                  "|---|---|---|---|---|---|"]
        for r in sorted(part, key=lambda r: r["vips"]):
            lines.append(f"| {r['vips']} | {fmt(r['drain_s'])} | {fmt(r['all_vips_moved_s'])} | {fmt(r['cpu_s'])} "
                         f"| {fmt(r['maxrss_mib'], 1)} | {fmt(r['failed'], 0)} |")
        lines.append("")
    if goal_rows:
        lines += ["### Targets", "", "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {g['target']} | {g['measured']} | {'yes' if g['met'] else '**no**'} |" for g in goal_rows]
        lines.append("")
    m = meta["machine"]
    g0, g1 = meta.get("git_start") or {}, meta.get("git_end") or {}
    if g0:
        code = f"Code: commit {g0['head']} ({g0['subject']})" + (
            f" with local changes in {', '.join(g0['dirty_src'])}" if g0.get("dirty_src") else "")
        if g1 and (g1.get("head"), g1.get("dirty_src")) != (g0.get("head"), g0.get("dirty_src")):
            code += f"; **the tree changed during the run** (at the end: {g1['head']}, local changes in " \
                    f"{', '.join(g1.get('dirty_src') or []) or 'none'})"
        if meta.get("code_versions"):
            code += "; runs per code version: " + ", ".join(f"{k} {v}" for k, v in meta["code_versions"].items())
        lines += [code + ".", ""]
    lines += [f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']}, kernel {m['kernel']}, {m['keepalived']}, "
              f"{m['haproxy']}, Python {m['python']}; load average {meta['loadavg_start']} at the start, "
              f"{meta['loadavg_end']} at the end; other labs on the machine at the start: "
              f"{meta['other_labs_start'] or 'none'}.", ""]
    return "\n".join(lines)


CSV_FIELDS = ("scenario", "strategy", "advert_int", "nodes", "vips", "runs", "errors", "streams_at_risk",
              "streams_survived")
CSV_STATS = ("failed", "unsent", "longest_gap_ms", "handoff_s", "unowned_s", "two_holders_s", "vip_moves",
             "duration_s", "drain_s", "cpu_s", "maxrss_mib", "all_vips_moved_s")


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    header = [*CSV_FIELDS, "failed_by_kind_total", *(f"{k}_{s}" for k in CSV_STATS for s in ("median", "min", "max"))]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            kinds = " ".join(f"{k}={v}" for k, v in r["failed_by_kind_total"].items())
            cells = [r.get(k, "") for k in CSV_FIELDS] + [kinds]
            for k in CSV_STATS:
                s = r[k]
                cells += [s["median"], s["min"], s["max"]] if s else ["", "", ""]
            w.writerow(cells)


# --------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------


def _first_line(argv: Sequence[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return ((proc.stdout or proc.stderr).strip().splitlines() or ["unknown"])[0]


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{mem_kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        memory = "unknown RAM"
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "memory": memory, "kernel": platform.release(),
        "keepalived": _first_line(["keepalived", "--version"]),
        "haproxy": " ".join(_first_line(["haproxy", "-v"]).split()[:3]),
        "python": platform.python_version(),
    }


def compile_like_the_package() -> None:
    """Byte-compile vipdrain as packages/vipdrain/packaging does (`compileall`): a drain's start-up
    is then measured as on a VM, not with sources compiled on every call (the lab runs the tree,
    and with PYTHONDONTWRITEBYTECODE set an edited module would be compiled in every process)."""
    import compileall

    import vipdrain

    compileall.compile_dir(str(Path(vipdrain.__file__).parent), quiet=1)


def git_state() -> dict[str, Any]:
    """The code measured: HEAD and the files under src/ that differ from it (others edit the tree
    while benchmarks run; every drain call is a new process that imports the tree as it is)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                                  timeout=10).stdout.rstrip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {"head": git("rev-parse", "--short", "HEAD"), "subject": git("log", "-1", "--format=%s")[:120],
            "dirty_src": [line[3:] for line in git("status", "--porcelain", "--", "src").splitlines()]}


def other_labs(mine: Iterable[str] = ()) -> list[str]:
    """Lab prefixes (other engineers' runs) under the lab directory: a noise indicator."""
    return [p for p in list_prefixes() if p not in set(mine)]


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="1 repeat, N = 2 and 3, advert_int 0.1 s only, 1 repeat of the VIP scaling")
    p.add_argument("--repeats", type=int, help="runs per configuration (default 3; --quick: 1)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory of the result files")
    p.add_argument("--img", type=Path, default=DEFAULT_IMG, help="directory of the timeline pictures")
    p.add_argument("--name", help="base name of the result files (default: full or quick)")
    p.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES),
                   help=f"comma-separated strategy names (known: {', '.join(STRATEGIES)})")
    p.add_argument("--nodes", help="comma-separated group sizes (default 2,3,5; --quick: 2,3)")
    p.add_argument("--advert-ints", help="comma-separated advert_int values (default 1,0.1; --quick: 0.1)")
    p.add_argument("--vip-counts", help="comma-separated VIP counts of the drain scaling (default 1,10,50; "
                   "empty: skip)")
    p.add_argument("--rate", type=float, default=RATE, help="client requests per second")
    p.add_argument("--no-pictures", action="store_true")
    p.add_argument("--update-seconds", type=float, default=0.0,
                   help="keep each VM stopped this long in a deploy's update step (default 0: the lab's instant "
                        "release swap)")
    p.add_argument("--report", type=Path, metavar="JSON",
                   help="measure nothing: rewrite the .md/.csv/.json next to a results JSON from its runs")
    return p.parse_args(argv)


def _numbers(text: str | None, default: Sequence[float], kind: Callable[[str], Any]) -> list[Any]:
    if text is None:
        return list(default)
    return [kind(x) for x in text.split(",") if x.strip()]


def write_results(base: Path, meta: dict[str, Any], runs: Sequence[Run]) -> list[dict[str, Any]]:
    """`<base>.json` (everything), `<base>.csv` (the summary) and `<base>.md` (the tables); the targets."""
    rows = summarize_runs(runs)
    goal_rows = targets(rows, runs, meta.get("rate", RATE))
    versions = Counter(r.code for r in runs if r.code)
    if versions:
        meta["code_versions"] = dict(versions)
    doc = {"meta": meta, "summary": rows, "targets": goal_rows, "runs": [asdict(r) for r in runs]}
    base.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    write_csv(base.with_suffix(".csv"), rows)
    base.with_suffix(".md").write_text(markdown(rows, goal_rows, meta))
    return goal_rows


def load_runs(path: Path) -> tuple[dict[str, Any], list[Run]]:
    """The meta and runs of a results JSON written by this script."""
    doc = json.loads(path.read_text())
    runs = []
    for raw in doc["runs"]:
        raw = dict(raw)
        raw["handoffs"] = [Handoff(**h) for h in raw.get("handoffs", [])]
        raw["window"] = tuple(raw.get("window", (0.0, 0.0)))
        known = {f for f in Run.__dataclass_fields__}
        runs.append(Run(**{k: v for k, v in raw.items() if k in known}))
    return doc["meta"], runs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report is not None:
        meta, runs = load_runs(args.report)
        write_results(args.report.with_suffix(""), meta, runs)
        print(args.report.with_suffix(".md").read_text())
        return 0
    if os.geteuid() != 0:
        print("bench/run.py needs root (network namespaces, keepalived)", file=sys.stderr)
        return 2
    repeats = args.repeats or (1 if args.quick else 3)
    nodes = _numbers(args.nodes, QUICK_NODES if args.quick else FULL_NODES, int)
    advert_ints = _numbers(args.advert_ints, QUICK_ADVERT_INTS if args.quick else FULL_ADVERT_INTS, float)
    vip_counts = _numbers(args.vip_counts, VIP_COUNTS, int)
    strategies = select(s.strip() for s in args.strategies.split(",") if s.strip())
    default_repeats = 1 if args.quick else 3
    custom = (any(x is not None for x in (args.nodes, args.advert_ints, args.vip_counts))
              or args.strategies != ",".join(DEFAULT_STRATEGIES) or repeats != default_repeats
              or args.update_seconds != 0.0)
    mode = "quick" if args.quick else "full"
    name = args.name or (f"{mode}-custom" if custom else mode)
    args.out.mkdir(parents=True, exist_ok=True)

    def progress(line: str) -> None:
        print(f"[{time.monotonic() - t0:6.0f}s] {line}", flush=True)

    t0 = time.monotonic()
    meta: dict[str, Any] = {
        "command": "python bench/run.py" + (" " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else ""),
        "mode": mode, "name": name, "repeats": repeats, "rate": args.rate, "update_seconds": args.update_seconds,
        "nodes": nodes, "advert_ints": advert_ints,
        "vip_counts": vip_counts, "strategies": [s.name for s in strategies],
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(), "loadavg_start": loadavg(),
        "other_labs_start": other_labs(), "runtime_s": 0.0, "margin_s": MARGIN, "settle_s": SETTLE,
        "git_start": git_state(),
    }
    progress(f"vipdrain benchmark ({name}): {len(strategies)} strategies x N {nodes} x advert_int {advert_ints}, "
             f"{repeats} repeat(s); VIP scaling {vip_counts}; other labs running: {meta['other_labs_start'] or 'none'}")
    runs: list[Run] = []

    def save() -> list[dict[str, Any]]:
        meta["runtime_s"] = round(time.monotonic() - t0, 1)
        meta["loadavg_end"] = loadavg()
        meta["other_labs_end"] = other_labs()
        meta["git_end"] = git_state()
        return write_results(args.out / name, meta, runs)

    for advert_int in advert_ints:
        for n in nodes:
            for strategy in strategies:
                progress(f"  advert_int {advert_int:g} s, N={n}, {strategy.name}")
                picture = None
                if not args.no_pictures and n == PICTURE_NODES and advert_int == PICTURE_ADVERT_INT:
                    prefix = "bench" if name == "full" else f"bench-{name}"
                    picture = args.img / f"{prefix}-{strategy.name}.png"
                try:
                    runs += measure_strategy(strategy, advert_int, n, repeats, args.rate, picture, progress,
                                             args.update_seconds)
                except Exception as exc:
                    traceback.print_exc()
                    runs.append(Run("deploy", strategy.name, advert_int, n, 1, -1, error=f"lab failed: {exc}"))
                save()
    for k in vip_counts:
        progress(f"  drain scaling: {k} VIP(s)")
        try:
            runs += measure_scaling(k, max(repeats, 3) if not args.quick else repeats, args.rate, progress)
        except Exception as exc:
            traceback.print_exc()
            runs.append(Run("drain-scaling", "vipdrain", 1.0, 2, k, -1, error=f"lab failed: {exc}"))
        save()
    save()
    print()
    print((args.out / f"{name}.md").read_text())
    progress(f"done in {meta['runtime_s'] / 60:.1f} min; results in {args.out}/{name}.{{json,csv,md}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
