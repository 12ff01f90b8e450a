"""VRRP priorities: who is preferred, and how far a hold lowers a VM. Pure functions.

keepalived adds `track file value x weight` to the base priority and clamps the result to
1..254 (a result below -253 would mean FAULT, which we never want: FAULT drops the VIP at once).
"""

from __future__ import annotations

from collections.abc import Iterable

from vipdrain.model import InstanceSpec, Peer, Placement

#: Weight of the hold track file: value 1 takes any base priority down to keepalived's floor of 1,
#: strictly below every VM without a hold (whose priority is at least LOWEST_BASE).
HOLD_WEIGHT = -253
PREFERRED_PRIORITY = 200
TOP_BASE = 150
LOWEST_BASE = 51
#: Sticky placement: the current holder gets this much on top, more than any base difference.
STICKY_BONUS = TOP_BASE - LOWEST_BASE + 1
HELD_PRIORITY = 1
#: Widest step between neighbouring VMs. Backups race for the VIP after a resign advert with
#: timers that differ by (priority difference / 256) x advert_int: with adjacent priorities
#: (100/99) that is 4 ms at 1 s, and two backups became master at once in the lab.
MAX_STEP = 25


def rank(instance: InstanceSpec, peers: Iterable[Peer]) -> int:
    """0 for the bootstrap VM, then 1, 2... by BOSH index among the VMs that are not bootstrap."""
    if instance.bootstrap:
        return 0
    lower = sum(
        1 for p in peers if not p.bootstrap and p.index is not None and p.index < instance.index
    )
    return 1 + lower


def step(group_size: int) -> int:
    """Priority distance between neighbours: as wide as the 51..150 band allows for the group."""
    return max(1, min(MAX_STEP, (TOP_BASE - LOWEST_BASE) // max(1, group_size - 1)))


def base_priority(instance: InstanceSpec, peers: Iterable[Peer], placement: Placement) -> int:
    """Priority keepalived starts from for this VM.

    preferred: the bootstrap VM (200) wins every election it takes part in, so the VIP returns to
    it after its update; the others follow from 150 down by index. sticky: everyone from 150 down
    (bootstrap first) and the holder gets STICKY_BONUS through its holder track file, so a VM
    that rejoins never takes the VIP back.
    """
    peers = list(peers)
    r = rank(instance, peers)
    d = step(len(peers) + 1)
    if placement == "preferred":
        return PREFERRED_PRIORITY if r == 0 else max(LOWEST_BASE, TOP_BASE - d * (r - 1))
    return max(LOWEST_BASE, TOP_BASE - d * r)


def effective_priority(base: int, held: bool, holder: bool = False) -> int:
    """What keepalived advertises, given the hold and (sticky) holder track files."""
    value = base + (HOLD_WEIGHT if held else 0) + (STICKY_BONUS if holder else 0)
    return min(254, max(HELD_PRIORITY, value))
