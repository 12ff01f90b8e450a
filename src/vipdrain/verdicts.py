"""The drain's decisions, as pure functions of one observation.

Every check has the same shape, `(VipView) -> Verdict`, and says why in a sentence. The
drain (vipdrain.drain) only composes these; unit tests feed them hand-made observations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from vipdrain.model import InstanceSpec, IPAddress, Peer, Placement, Vip
from vipdrain.priority import base_priority


@dataclass(frozen=True)
class PeerAdvert:
    """A VRRP advert seen on the wire from another VM."""

    vrid: int
    version: int
    priority: int
    source: IPAddress
    seen_at: float  # time.monotonic()
    #: Sender's MAC, when seen at layer 2 (tells holders apart across adverts and ARP).
    mac: str = ""


@dataclass(frozen=True)
class VipView:
    """Everything observed about one VIP at one moment."""

    vip: Vip
    #: The VIP is on one of this VM's interfaces.
    local: bool
    #: Last state keepalived reported through its notify FIFO (None: unknown).
    state: str | None
    #: Best advert from a peer for this VRID seen since the drain began and still fresh.
    peer_master: PeerAdvert | None
    #: The priority this VM advertises now (1 while held).
    own_priority: int
    #: A fresh advert from another VM that is master at no more than our (held) priority: a VM
    #: that is draining too (e.g. max_in_flight covering the whole group).
    draining_peer: PeerAdvert | None = None
    #: Why the peer that is master cannot serve (its haproxy does not answer), if it cannot.
    peer_problem: str | None = None
    #: Is this VM master of the VIP's VRID, as observed (`master_here`)? None: not observed long
    #: enough to tell, `state` (keepalived's last report) is all there is.
    master_here: bool | None = None
    #: Why `master_here` is what it is, in a sentence.
    here: str = ""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


Check = Callable[[VipView], Verdict]


def local_not_master(v: VipView) -> Verdict:
    """This VM no longer acts as master: observed (our adverts, keepalived alive), keepalived's
    report only when there is no observation yet."""
    if v.master_here is not None:
        return Verdict(not v.master_here, v.here)
    if v.state == "MASTER":
        return Verdict(False, f"keepalived still reports {v.vip.name} as MASTER here")
    return Verdict(True, f"{v.vip.name} is {v.state or 'not reported'} here")


#: keepalived's states in which it does not advertise.
NOT_ADVERTISING = ("BACKUP", "FAULT", "STOP", "DELETED")


def master_here(
    vip: Vip,
    *,
    keepalived_running: bool,
    own: PeerAdvert | None,
    now: float,
    listened: float,
    window: float,
    hint: str | None = None,
    hint_age: float | None = None,
) -> tuple[bool | None, str]:
    """Is this VM master of `vip`'s VRID, judged from what is seen? (pure)

    A master advertises every advert_int, so: keepalived not running -> no; our own advert (above
    priority 0) within `window` s -> yes, unless keepalived reported a non-advertising state
    after that advert (it steps down the instant it hears a better master: the report is the fast
    path); silent for a whole `window` -> no. Listened less than `window` and silent: None - the
    caller may fall back to keepalived's report (`hint`), which is stale when its notify reader
    is dead. `now` and `own.seen_at` share a clock; `hint_age` is seconds since the report.
    """
    vrid = vip.virtual_router_id
    if not keepalived_running:
        return False, f"keepalived is not running here: nothing here advertises VRID {vrid}"
    age = now - own.seen_at if own is not None else None
    if own is not None and age is not None and age <= window:
        if hint in NOT_ADVERTISING and hint_age is not None and hint_age < age:
            return False, f"{vip.name} is {hint} here (reported after this VM's last advert)"
        return True, (f"this VM still advertises VRID {vrid} (priority {own.priority}, {age:.1f} s ago): "
                      f"keepalived is master of {vip.name} here")
    if listened >= window:
        silent = f"for {age:.1f} s" if age is not None else f"in the {listened:.1f} s listened"
        return False, f"this VM has not advertised VRID {vrid} {silent}: not master of {vip.name} here"
    return None, ""


def peer_can_serve(v: VipView) -> Verdict:
    if v.peer_master is not None and v.peer_problem:
        return Verdict(False, f"{v.peer_master.source} holds {v.vip.name} but cannot serve: {v.peer_problem}")
    return Verdict(True, "the new holder's haproxy answers")


def vip_left_local_interfaces(v: VipView) -> Verdict:
    if v.local:
        return Verdict(False, f"{v.vip.address} is still on {v.vip.interface}")
    return Verdict(True, f"{v.vip.address} is gone from this VM")


def peer_adverts_as_master(v: VipView) -> Verdict:
    p = v.peer_master
    if p is None:
        vrid = v.vip.virtual_router_id
        return Verdict(False, f"no peer has advertised VRID {vrid} above priority {v.own_priority}")
    return Verdict(True, f"{p.source} advertises VRID {p.vrid} at priority {p.priority}")


#: The order matters only for the message: the first refusal is the one reported.
HANDOFF_CHECKS: tuple[Check, ...] = (peer_adverts_as_master, peer_can_serve, vip_left_local_interfaces,
                                     local_not_master)


def handed_over(v: VipView, checks: Sequence[Check] = HANDOFF_CHECKS) -> Verdict:
    """Verified handoff of one VIP: every check passes; else the first refusal."""
    for check in checks:
        verdict = check(v)
        if not verdict.ok:
            return verdict
    peer = v.peer_master.source if v.peer_master else "a peer"
    return Verdict(True, f"{v.vip.name} ({v.vip.address}) handed over to {peer}")


def holds_vip(v: VipView) -> bool:
    """Is there anything to hand over for this VIP? (VIP on our interface, or our keepalived seen
    advertising as its master.) keepalived's report alone is not enough: with its notify reader
    dead it says MASTER long after the VIP left, and a resign advert from a VM that is not
    master makes a backup take the VIP from the real master."""
    return v.local or v.master_here is True


class Plan(Enum):
    NOTHING_TO_DO = "nothing to hand over"
    NO_PEER = "no peer to hand over to"
    HANDOFF = "hand over"


def plan(views: Sequence[VipView], peers: Sequence[Peer]) -> tuple[Plan, str]:
    """Decide, before waiting, whether a handoff is needed and possible."""
    held = [v for v in views if holds_vip(v)]
    if not held:
        return Plan.NOTHING_TO_DO, "this VM holds none of its VIPs: nothing to hand over"
    names = ", ".join(f"{v.vip.name} ({v.vip.address})" for v in held)
    if not peers:
        return Plan.NO_PEER, f"this VM holds {names} and the job has no peer (single instance)"
    return Plan.HANDOFF, f"this VM holds {names}"


def vip_went_to_a_draining_peer(v: VipView) -> Verdict:
    """The VIP left us for a VM held like us: waiting longer cannot produce a healthy holder."""
    p = v.draining_peer
    if p is None or v.peer_master is not None or v.local:
        return Verdict(False, "")
    return Verdict(True, f"{v.vip.name} went to {p.source}, which advertises priority {p.priority}: it is "
                         "draining too, no healthy peer is left")


def accept_advert(advert: PeerAdvert, own_addresses: set[IPAddress], own_priority: int) -> bool:
    """Does this advert prove a peer can be master? From elsewhere, above our (held) priority."""
    return advert.source not in own_addresses and advert.priority > own_priority


def takeover_order(instance: InstanceSpec, peers: Sequence[Peer], placement: Placement) -> list[Peer]:
    """The peers in the order they would take over from this VM: highest base priority first (what
    keepalived there advertises: the same formula as ours), a tie to the higher address (VRRP's
    rule). A peer whose index the link does not give may have any priority: it comes first."""
    me = Peer(address=instance.ip, index=instance.index, bootstrap=instance.bootstrap, id=instance.id)

    def priority(p: Peer) -> int:
        if p.index is None:
            return 256
        spec = InstanceSpec(name="", index=p.index, id=p.id, bootstrap=p.bootstrap, ip=p.address)
        return base_priority(spec, [me, *(q for q in peers if q != p)], placement)

    return sorted(peers, key=lambda p: (priority(p), p.address.version, p.address), reverse=True)


@dataclass(frozen=True)
class Candidate:
    """A peer that may take over, as the drain last probed it."""

    address: IPAddress
    #: Why its haproxy does not answer, or None when it does.
    problem: str | None = None
    #: Seconds since its haproxy was first seen not answering (0 while it answers).
    failing_for: float = 0.0


@dataclass(frozen=True)
class TakerChoice:
    """Whom to hand over to: `taker` (ready), or wait (`wait` True), or nobody (both unset)."""

    taker: IPAddress | None
    wait: bool
    reason: str


def choose_taker(candidates: Sequence[Candidate], fenced_after: float | None) -> TakerChoice:
    """Pick the peer that will really take over, in takeover order (`takeover_order`).

    A peer whose haproxy answers is the taker. One that does not answer is still in the election
    until keepalived's health check there has failed `fall` times: its own check asks the same
    haproxy, so after `fenced_after` seconds of our failed probes it is out (FAULT) and the next
    peer would take over. Before that, handing over would give it the VIP: wait. None of them
    answering is no peer at all (no_peer_policy at once). `fenced_after` None: no health check
    fences a peer, so an unfit best peer is waited for until the deadline.
    """
    if candidates and all(c.problem for c in candidates):
        return TakerChoice(None, False, "no peer's haproxy answers: " + "; ".join(
            f"{c.address}: {c.problem}" for c in candidates))
    skipped = []
    for c in candidates:
        if c.problem is None:
            why = f"{c.address} takes over (its haproxy answers)"
            return TakerChoice(c.address, False, why + (f"; {', '.join(skipped)}" if skipped else ""))
        if fenced_after is not None and c.failing_for >= fenced_after:
            skipped.append(f"{c.address} is out of the election (its haproxy has not answered for "
                           f"{c.failing_for:.1f} s)")
            continue
        left = "" if fenced_after is None else f", or for keepalived there to fence it within " \
                                               f"{fenced_after - c.failing_for:.1f} s"
        return TakerChoice(None, True, f"{c.address} would take over but its haproxy does not answer "
                                       f"({c.problem}); waiting for it to answer{left}")
    return TakerChoice(None, False, "no peer to hand over to")
