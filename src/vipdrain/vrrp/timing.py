"""VRRP timing rules, each written once: what every wait, listen and deadline is derived from.

All functions are pure and take `advert_int` in seconds (the configured Advertisement_Interval).
Sources: RFC 5798 (VRRPv3) section 6.1, RFC 3768 (VRRPv2) section 6.1, and keepalived's
`keepalived/include/vrrp.h` (VRRP_TIMER_SKEW_CALC, VRRP_MS_DOWN_TIMER), which is what runs.
`tests/unit/test_timing.py` pins how these rules relate to each other.
"""

from __future__ import annotations

import math

#: RFC 5798 6.1: Master_Down_Interval counts this many advert intervals (keepalived's
#: `down_timer_adverts`, default 3).
DOWN_TIMER_ADVERTS = 3


def skew(priority: int, advert_int: float, version: int = 3) -> float:
    """Skew_Time of a backup with `priority`: how much later than 3 intervals it declares the master down.

    VRRPv3 (RFC 5798 6.1): ((256 - priority) x Master_Adver_Interval) / 256.
    VRRPv2 (RFC 3768 6.1): (256 - priority) / 256 seconds, whatever the interval - keepalived's
    VRRP_TIMER_SKEW_CALC uses TIMER_HZ (1 s) for v2 and the master's advert interval for v3.
    Always below one advert interval (v2 intervals are whole seconds >= 1).
    """
    if version == 2:
        return (256 - priority) / 256
    return (256 - priority) / 256 * advert_int


def master_down_interval(priority: int, advert_int: float, version: int = 3) -> float:
    """RFC 5798 6.1 Master_Down_Interval = 3 x Master_Adver_Interval + Skew_Time: how long a
    backup with `priority` waits, hearing no higher (or equal) advert, before it becomes master."""
    return DOWN_TIMER_ADVERTS * advert_int + skew(priority, advert_int, version)


def master_down_bound(advert_int: float) -> float:
    """The longest Master_Down_Interval of any backup: skew < advert_int, so below 4 intervals."""
    return (DOWN_TIMER_ADVERTS + 1) * advert_int


def hear_every_master(advert_int: float) -> float:
    """How long to listen to hear every master at least once: a master advertises every
    `advert_int` (RFC 5798 6.4.3), so one and a half intervals plus scheduling slack. An advert
    older than this also means its sender stopped being master (the survey's "recent")."""
    return 1.5 * advert_int + 0.2


def advert_freshness(advert_int: float) -> float:
    """An advert older than this no longer proves its sender is master: about the
    Master_Down_Interval of a backup (3 intervals + skew, half an interval for most priorities)."""
    return DOWN_TIMER_ADVERTS * advert_int + 0.5


def confirmation_end(since: float, resigned_at: float, advert_int: float) -> float:
    """When the drain's confirmation window ends (absolute, same clock as the arguments).

    A backup whose Master_Down timer was already running at the resign may still preempt until
    `advert_freshness` after it; and the window spans at least two adverts of the new holder
    after the handoff was verified at `since`."""
    return max(since + 2 * advert_int, resigned_at + advert_freshness(advert_int))


def takeover_bound(advert_int: float) -> float:
    """Seconds from a hold's release until keepalived here may take a VIP by preemption: a
    backup that outranks the master ignores its adverts and waits its Master_Down_Interval
    (`master_down_bound`), plus a second for the hold to reach keepalived."""
    return master_down_bound(advert_int) + 1.0


def post_start_takeover_wait(advert_int: float) -> float:
    """How long post-start waits for the preemption its release causes: the takeover bound plus
    a second of slack for noticing the VIP arrived."""
    return takeover_bound(advert_int) + 1.0


def settle_budget(advert_int: float) -> float:
    """post-deploy's default budget: up to three moves in a row (each a Master_Down_Interval
    rounded up, 3 x advert_int + 1) and 5 s to look twice after the last."""
    return 3 * (DOWN_TIMER_ADVERTS * advert_int + 1) + 5


def handoff_bound(priority: int, advert_int: float, *, resign: bool = True, version: int = 3) -> float:
    """Promised handoff time of a drain to a peer with `priority` (issues 7 and 9).

    With the resign advert (priority 0) the peer takes over after its Skew_Time (RFC 5798 6.4.2),
    plus 0.3 s; without it, after its full Master_Down_Interval, plus 0.5 s."""
    if resign:
        return skew(priority, advert_int, version) + 0.3
    return master_down_interval(priority, advert_int, version) + 0.5


def fencing_wait(fall: int, interval: float, timeout: float) -> float:
    """How long keepalived's track_script takes to fence a peer whose haproxy is down: `fall`
    failed checks `interval` apart, each up to `timeout`, plus one interval for the phase."""
    return (fall + 1) * interval + timeout


def foreign_listen(advert_int: float) -> float:
    """How long pre-start listens for another VRRP group: two adverts at keepalived's default
    interval (1 s, haproxy-boshrelease's fixed value) or at ours, whichever is longer, plus slack."""
    return 2 * max(1.0, advert_int) + 0.2


def recall_seconds(advert_int: float) -> int:
    """Dynamic draining: how long BOSH waits before calling the drain back (whole seconds, >= 1):
    one advert interval, so each call-back can see a change."""
    return max(1, math.ceil(advert_int))


def elections_settle(advert_int: float) -> float:
    """Time for the elections a (re)started keepalived causes to show: it starts as backup, waits
    a Master_Down_Interval (< 4 intervals), and a preemption may follow; ten intervals cover both."""
    return 10 * advert_int


def lab_converge_deadline(advert_int: float) -> float:
    """How long a lab waits for its cluster to converge: the elections plus process start-up."""
    return elections_settle(advert_int) + 15.0
