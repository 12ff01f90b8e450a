"""The drain's decisions, as pure functions of one observation.

Every check has the same shape, `(VipView) -> Verdict`, and says why in a sentence. The
drain (vipdrain.drain) only composes these; unit tests feed them hand-made observations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from vipdrain.model import IPAddress, Peer, Vip


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


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


Check = Callable[[VipView], Verdict]


def local_not_master(v: VipView) -> Verdict:
    if v.state == "MASTER":
        return Verdict(False, f"keepalived still reports {v.vip.name} as MASTER here")
    return Verdict(True, f"{v.vip.name} is {v.state or 'not reported'} here")


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
    """Is there anything to hand over for this VIP? (VIP here, or keepalived says MASTER.)"""
    return v.local or v.state == "MASTER"


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
