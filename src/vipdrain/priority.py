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
#: Sticky placement: the current holder gets this much on top, more than any base difference.
STICKY_BONUS = 50
PREFERRED_PRIORITY = 150
TOP_BASE = 100
LOWEST_BASE = 51
HELD_PRIORITY = 1


def rank(instance: InstanceSpec, peers: Iterable[Peer]) -> int:
    """0 for the bootstrap VM, then 1, 2... by BOSH index among the VMs that are not bootstrap."""
    if instance.bootstrap:
        return 0
    lower = sum(
        1 for p in peers if not p.bootstrap and p.index is not None and p.index < instance.index
    )
    return 1 + lower


def base_priority(instance: InstanceSpec, peers: Iterable[Peer], placement: Placement) -> int:
    """Priority keepalived starts from for this VM.

    preferred: the bootstrap VM (150) wins every election it takes part in, so the VIP returns to
    it after its update. sticky: everyone near 100 and the holder gets STICKY_BONUS through its
    holder track file, so a VM that rejoins never takes the VIP back.
    """
    r = rank(instance, peers)
    if placement == "preferred":
        return PREFERRED_PRIORITY if r == 0 else max(LOWEST_BASE, TOP_BASE - (r - 1))
    return max(LOWEST_BASE, TOP_BASE - r)


def effective_priority(base: int, held: bool, holder: bool = False) -> int:
    """What keepalived advertises, given the hold and (sticky) holder track files."""
    value = base + (HOLD_WEIGHT if held else 0) + (STICKY_BONUS if holder else 0)
    return min(254, max(HELD_PRIORITY, value))
