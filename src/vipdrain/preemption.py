"""Post-start: when this VM, just released, outranks the current master, wait for its takeover.

A backup with a higher priority than the master takes the VIP by preemption only when its
Master_Down timer runs out (3 x advert_int + skew: about 3.4 s at keepalived's default timing),
because it ignores the lower-priority adverts. If post-start returned at once, the director
would stop the next VM while the VIP is about to move. With vipdrain on that VM its drain hands
over anyway; without a drain (haproxy-boshrelease's keepalived job, during a migration) the
stop of a master that is about to be preempted is a second break. So post-start waits until
every VIP this VM will take is here - make-before-break, the old master keeps serving until
then - with a deadline, and only warns when it passes.

Then it settles the takeover arm (`settle_arms`): VIPs armed for a preemption that did not
happen are disarmed, so that a crash of their master later is reset at once, not black-holed.
`undrain` does the same when it armed a takeover.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from vipdrain import preserve
from vipdrain.hold import read_hold
from vipdrain.layout import Layout
from vipdrain.model import IPAddress, JobConfig, Vip
from vipdrain.observe import Observer
from vipdrain.priority import effective_priority
from vipdrain.vrrp.timing import hear_every_master, post_start_takeover_wait
from vipdrain.waiting import wait_until


def to_take(observer: Observer, own_priority: int, now: float) -> list[Vip]:
    """VIPs held elsewhere by a master that advertises less than `own_priority` (what the
    observer heard): with preemption on, this VM takes them."""
    out = []
    for view in observer.views(own_priority):
        advert = observer.latest.get((view.vip.virtual_router_id, view.vip.address.version))
        fresh = advert is not None and now - advert.seen_at <= observer.freshness
        if not view.local and fresh and advert is not None and 0 < advert.priority < own_priority:
            out.append(view.vip)
    return out


def await_preemption(cfg: JobConfig, layout: Layout, observer: Observer,
                     clock: Callable[[], float] = time.monotonic, step: str = "post-start") -> list[str]:
    """Listen; if this VM outranks a master, wait until it holds those VIPs, or a VM that
    outranks this one took them (another release at the same time). Returns warnings
    (prefixed with `step`, the command that released the hold)."""
    own = effective_priority(cfg.priority, held=read_hold(layout).active)
    observer.collect(hear_every_master(cfg.advert_int))
    pending = to_take(observer, own, clock())
    if not pending:
        return []
    budget = post_start_takeover_wait(cfg.advert_int)

    def settled() -> bool:
        observer.collect(0.1)
        local = {v.vip.address for v in observer.views(own) if v.local}
        still = {v.address for v in to_take(observer, own, clock())}
        return all(v.address in local or v.address not in still for v in pending)

    if wait_until(settled, budget=budget, clock=clock):
        return []
    names = ", ".join(v.name for v in pending if v.name)
    return [f"{step}: this VM outranks the master of {names} but did not take it within {budget:g} s"]


def untaken(armed: preserve.Armed, local: Collection[IPAddress]) -> list[tuple[Vip, str]]:
    """The arms of `armed` whose VIP is not among `local` (held here): the takeover did not happen."""
    return [(vip, mac) for vip, mac in armed.arms if vip.address not in local]


def settle_arms(cfg: JobConfig, layout: Layout, observer: Observer, armed: preserve.Armed,
                disarm: Callable[[JobConfig, list[tuple[Vip, str]]], list[str]] = preserve.disarm_takeover,
                ) -> list[str]:
    """After `await_preemption`: disarm what was armed for VIPs this VM does not hold (another VM
    won the election, or the master moved). Returns warnings."""
    if not armed.arms:
        return []
    own = effective_priority(cfg.priority, held=read_hold(layout).active)
    missed = untaken(armed, {v.vip.address for v in observer.views(own) if v.local})
    return disarm(cfg, missed) if missed else []
