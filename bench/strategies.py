"""The ways of taking a keepalived + haproxy VM down that the benchmark compares.

Every strategy runs through the same deploy simulator (`vipdrain.lab.bosh.Director`): only the
stop side of an instance update differs (what happens between `monit unmonitor` and the new
release). The start side is the same for all of them: the lab's VMs start the BOSH way with
vipdrain's pre-start / post-start (they join held until haproxy answers), so the baselines are
measured at their stop side only - a real haproxy-boshrelease VM is also exposed when it rejoins.

The default set (`DEFAULT_STRATEGIES`):

- `naive-stop`: no drain; monit stops haproxy (bpm: SIGTERM), then keepalived the way
  haproxy-boshrelease's `keepalived_ctl stop` does: `kill -9` of its process group - no priority-0
  advert, the VIP stays on the stopped VM's interface, the peer takes over after
  Master_Down_Interval. haproxy-boshrelease today (its keepalived job checks haproxy every 2 s).
- `keepalived-stop`: no drain; keepalived first (it sends a priority-0 advert), then haproxy.
- `fault-drain`: a pre-stop step forces keepalived into FAULT through the hold track file (value 2
  x weight -253 is below -253: FAULT, per keepalived.conf(5)), waits until a peer holds every VIP,
  then monit stops keepalived and haproxy.
- `vipdrain`: vipdrain's BOSH drain with its defaults (priority drop, resign advert, verified
  handoff, connections forwarded through the tunnel for the grace period: the lab's 1 s), then
  monit stop.
- `vipdrain-noresign`: the same with `vipdrain.drain.resign_advert: false` (priority drop only).
- `vipdrain-preserve`: `vipdrain` with `vipdrain.drain.preserve_connections` (grace 6 s, as long
  as the benchmark's streams: the drain returns 6, so BOSH waits 6 s more before `monit stop`).

Extras (name them with `--strategies`):

- `naive-stop-term`: haproxy first, then keepalived with a clean SIGTERM.
- `vipdrain-sticky`: `vipdrain` with `vipdrain.placement: sticky`.
- `vipdrain-nopreserve`: `vipdrain` without `preserve_connections` (the defaults before issue 15).

The baselines (every strategy that is not `vipdrain*`) run without vipdrain's data-path help:
no connection forwarding, and the silent VIP copies on `lo` that vipdrain's pre-start puts on
every VM are removed again (at bring-up and after every pre-start). Left in place, they would
keep serving a stopped VM's clients whose ARP entries still point at it - a vipdrain feature,
not the baseline's.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vipdrain import rtnl
from vipdrain.errors import RuntimeFailure
from vipdrain.fsutil import atomic_write
from vipdrain.lab import netns
from vipdrain.lab.bosh import Director, LabVM
from vipdrain.lab.cluster import VM, Lab

DrainKind = Literal["none", "vipdrain", "fault"]
StopOrder = Literal["keepalived-first", "haproxy-first", "haproxy-first-kill"]

#: Value written to the hold track file (weight -253) by `fault-drain`: 2 x -253 = -506 < -253 -> FAULT.
FAULT_TRACK_VALUE = 2
#: haproxy-boshrelease's keepalived job checks haproxy every 2 s (fixed); the baselines use it too.
#: Without vipdrain's forwarding (on by default): a baseline gets none of vipdrain's data-path help.
NO_PRESERVE = {"vipdrain": {"drain": {"preserve_connections": False}}}
BASELINE_HEALTHCHECK = {"keepalived": {"healthcheck": {"interval": 2}}, **NO_PRESERVE}


@dataclass(frozen=True)
class Strategy:
    """One way of stopping an instance: job properties, a drain kind and a monit stop order."""

    name: str
    summary: str
    drain: DrainKind
    stop_order: StopOrder
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def vipdrain(self) -> bool:
        """Is this vipdrain (as opposed to a baseline without it)?"""
        return self.drain == "vipdrain"

    @property
    def resign(self) -> bool:
        """Does the handoff use vipdrain's priority-0 resign advert?"""
        vipdrain = self.overrides.get("vipdrain") or {}
        return self.drain == "vipdrain" and bool((vipdrain.get("drain") or {}).get("resign_advert", True))


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("naive-stop", "no drain; monit stops haproxy, then kill -9 of keepalived (haproxy-boshrelease "
                 "today; health check every 2 s)", "none", "haproxy-first-kill", BASELINE_HEALTHCHECK),
        Strategy("naive-stop-term", "no drain; monit stops haproxy, then keepalived with SIGTERM "
                 "(priority-0 advert)", "none", "haproxy-first", BASELINE_HEALTHCHECK),
        Strategy("keepalived-stop", "no drain; keepalived stopped first (priority-0 advert), then haproxy",
                 "none", "keepalived-first", BASELINE_HEALTHCHECK),
        Strategy("fault-drain", "force FAULT (track file), wait until a peer holds the VIP, then stop",
                 "fault", "keepalived-first",
                 {"vipdrain": {"drain": {"enabled": False, "preserve_connections": False}}}),
        Strategy("vipdrain", "vipdrain drain with its defaults: priority drop + resign advert, verified handoff, "
                 "connections forwarded through the tunnel for the grace period (the lab's 1 s), then stop",
                 "vipdrain", "keepalived-first"),
        Strategy("vipdrain-nopreserve", "vipdrain drain without `preserve_connections` (the defaults before "
                 "issue 15)", "vipdrain", "keepalived-first", NO_PRESERVE),
        Strategy("vipdrain-noresign", "vipdrain drain without the resign advert (priority drop only)",
                 "vipdrain", "keepalived-first", {"vipdrain": {"drain": {"resign_advert": False}}}),
        Strategy("vipdrain-sticky", "vipdrain drain with `vipdrain.placement: sticky` (no move back to the "
                 "bootstrap VM)", "vipdrain", "keepalived-first", {"vipdrain": {"placement": "sticky"}}),
        Strategy("vipdrain-preserve", "vipdrain drain with `vipdrain.drain.preserve_connections: true` "
                 "(preserve_grace 6 s)", "vipdrain", "keepalived-first",
                 {"vipdrain": {"drain": {"preserve_connections": True, "preserve_grace": 6}}}),
    )
}


#: What `bench/run.py` runs unless told otherwise.
DEFAULT_STRATEGIES = ("naive-stop", "keepalived-stop", "fault-drain", "vipdrain", "vipdrain-noresign",
                      "vipdrain-preserve")


def select(names: Iterable[str]) -> list[Strategy]:
    """The named strategies, in the given order (unknown names raise)."""
    out = []
    for name in names:
        if name not in STRATEGIES:
            raise RuntimeFailure(f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")
        out.append(STRATEGIES[name])
    return out


def strip_loopback_vips(vm: VM) -> str:
    """Remove the silent VIP copies on `lo` (vipdrain's pre-start adds them); returns a sentence."""
    vips = set(vm.lab.vips)
    removed = []
    for event in vm.call(rtnl.dump):
        if event.on_loopback and event.address in vips:
            netns.ip("-n", vm.namespace, "addr", "del", f"{event.address}/{event.prefixlen}", "dev", "lo",
                     check=False)
            removed.append(event.address)
    return f"removed {len(removed)} VIP copies from lo (baseline: no vipdrain on the data path)"


def monit_stop(vm: VM, order: StopOrder) -> str:
    """`monit stop` of the VM's jobs in `order`; returns what happened."""
    if order == "haproxy-first-kill":
        vm.stop_haproxy()
        # haproxy-boshrelease's keepalived_ctl stop: `kill -9 -$(cat $PIDFILE)` for each pid file.
        vm.lab.faults.kill_keepalived(vm, signal.SIGKILL, group=True)
        vm.stop_keepalived(timeout=5.0)  # reaps it and records that it is gone
        return "haproxy stopped, then keepalived killed (kill -9 of its process group)"
    if order == "haproxy-first":
        vm.stop_haproxy()
        vm.stop_keepalived()
        return "haproxy stopped, then keepalived"
    vm.stop_keepalived()
    vm.stop_haproxy()
    return "keepalived stopped, then haproxy"


def fault_drain(vm: VM, timeout: float) -> str:
    """Force keepalived on `vm` into FAULT and wait until every VIP it held is on another VM.

    Raises RuntimeFailure when no peer holds them within `timeout` (the deploy would stop there).
    """
    lab = vm.lab
    held = [vip for vip, names in lab.holder_map().items() if vm.name in names]
    atomic_write(vm.layout.hold_track_file, f"{FAULT_TRACK_VALUE}\n")
    if not held:
        return "held no VIP"
    started = time.monotonic()
    while True:
        holders = lab.holder_map()
        if all(holders[vip] and vm.name not in holders[vip] for vip in held):
            return f"FAULT forced; {len(held)} VIP(s) on a peer after {time.monotonic() - started:.2f} s"
        if time.monotonic() - started > timeout:
            raise RuntimeFailure(f"no peer took {', '.join(held)} within {timeout:g} s of FAULT")
        time.sleep(0.02)


@dataclass
class StrategyDirector(Director):
    """The deploy simulator with a strategy's stop side; everything else is BOSH's order."""

    strategy: Strategy = STRATEGIES["vipdrain"]
    #: Deadline of `fault-drain`'s wait for a peer.
    fault_timeout: float = 10.0
    #: Seconds the update step keeps the VM stopped (the lab swaps a release instantly; a real
    #: BOSH update installs packages, maybe a new VM, for tens of seconds).
    update_seconds: float = 0.0

    def update_instance(self, vm: LabVM, overrides: dict[str, Any] | None, skip_drain: bool) -> None:
        """BOSH's order, with the update step lasting at least `update_seconds`."""
        self.stop_instance(vm, "job_changed", skip_drain)

        def update() -> str:
            vm.write_config(overrides)
            time.sleep(self.update_seconds)
            return f"new release in place ({self.update_seconds:g} s)"

        self._step(vm, "update", update)
        self.start_instance(vm)

    def stop_instance(self, vm: LabVM, action: str, skip_drain: bool) -> None:
        """`monit unmonitor` -> the strategy's drain (if any) -> its `monit stop`."""
        assert isinstance(vm, VM)
        s = self.strategy
        self._step(vm, "unmonitor", lambda: "")
        if s.drain == "vipdrain" and not skip_drain:
            self.drain(vm, action)
        elif s.drain == "fault" and not skip_drain:
            self._step(vm, "drain", lambda: fault_drain(vm, self.fault_timeout))
        self._step(vm, "stop", lambda: monit_stop(vm, s.stop_order))

    def start_instance(self, vm: LabVM) -> None:
        """pre-start -> `monit start` -> post-start; a baseline's VM loses the lo copies pre-start made."""
        assert isinstance(vm, VM)

        def pre_start() -> str:
            said = self._hook(vm, "pre-start")
            return said if self.strategy.vipdrain else f"{said}; {strip_loopback_vips(vm)}"

        self._step(vm, "pre-start", pre_start)
        self._step(vm, "start", lambda: vm.monit_start() or "")
        self._step(vm, "post-start", lambda: self._hook(vm, "post-start"))


def lab_overrides(strategy: Strategy, lab_overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Job properties of a lab running `strategy` (plus any extra overrides)."""
    from vipdrain.lab.cluster import deep_merge

    return deep_merge(dict(strategy.overrides), lab_overrides or {})


def peer_priority(lab: Lab, name: str) -> int | None:
    """The base VRRP priority in `name`'s rendered keepalived.conf (None if unreadable)."""
    try:
        text = lab.vm(name).layout.keepalived_conf.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "priority" and words[1].isdigit():
            return int(words[1])
    return None
