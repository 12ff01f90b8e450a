"""Stand-ins the unit tests share: a hand-built JobConfig, a fake clock, and one fake observer.

The fake observer implements `vipdrain.observe.Observer` (what the survey, post-start and
post-deploy read): adverts the test puts on its "wire" with `hear`, addresses it puts on this
VM with `local`. It is no kinder than `LiveObserver`: an advert counts only while it is fresh
(`timing.advert_freshness`), listening takes the clock forward, and a VIP is here only when it
is on its own interface.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vipdrain.model import DrainSettings, HealthCheck, InstanceSpec, IPAddress, JobConfig, Peer, Vip
from vipdrain.verdicts import PeerAdvert, VipView, accept_advert
from vipdrain.vrrp import timing

SELF = ipaddress.ip_address("192.0.2.10")


def job_config(
    vips: int | Sequence[Vip] = 1,
    peers: int | Sequence[str] = 1,
    *,
    priority: int = 100,
    healthcheck: HealthCheck | None = None,
    drain: DrainSettings | None = None,
    ip: IPAddress = SELF,
    **fields: Any,
) -> JobConfig:
    """A JobConfig built by hand (no schema, no parsing): bootstrap VM haproxy/0 at `ip`.

    `vips`: a count (vip_1 at 192.0.2.100 with VRID 1 on eth0, then .101/VRID 2, ...) or the VIPs.
    `peers`: a count (192.0.2.11 = haproxy/1, .12 = haproxy/2, ...) or their addresses, indexed
    from 1. Other JobConfig fields go in `fields`."""
    if isinstance(vips, int):
        vips = tuple(Vip(name=f"vip_{i + 1}", address=ipaddress.ip_address(f"192.0.2.{100 + i}"),
                         virtual_router_id=1 + i, interface="eth0") for i in range(vips))
    addresses = [f"192.0.2.{11 + i}" for i in range(peers)] if isinstance(peers, int) else list(peers)
    return JobConfig(
        instance=InstanceSpec(name="haproxy", index=0, id="a", bootstrap=True, ip=ip),
        vips=tuple(vips),
        priority=priority,
        healthcheck=healthcheck,
        peers=tuple(Peer(address=ipaddress.ip_address(a), index=i + 1) for i, a in enumerate(addresses)),
        # Without connection preservation (on by default): it would send notices and run nft
        # for real; the tests of preservation turn it on.
        drain=drain if drain is not None else DrainSettings(preserve_connections=False),
        **fields,
    )


@dataclass
class FakeClock:
    """A monotonic clock that only moves when something sleeps or listens."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


@dataclass
class FakeObserver:
    """`vipdrain.observe.Observer` on a scripted wire (see the module docstring)."""

    cfg: JobConfig
    clock: FakeClock = field(default_factory=FakeClock)
    #: VIP names on this VM's interface.
    here: set[str] = field(default_factory=set)
    latest: dict[tuple[int, int], PeerAdvert] = field(default_factory=dict)
    sources: dict[tuple[int, int], dict[IPAddress, PeerAdvert]] = field(default_factory=dict)
    #: Seconds asked for by each `collect`.
    listened: list[float] = field(default_factory=list)
    #: (time, action): things that happen while the caller listens (a peer advertises, a VIP moves).
    events: list[tuple[float, Callable[[FakeObserver], None]]] = field(default_factory=list)
    #: Masters that keep advertising (VIP, source, priority, MAC): heard at the end of a listen
    #: once every advert interval, as on the wire.
    masters: list[tuple[Vip, str, int, str]] = field(default_factory=list)
    #: When `masters` were last heard: again once an advert interval has passed, however the
    #: caller splits its listening.
    masters_heard_at: float = float("-inf")

    @property
    def freshness(self) -> float:
        return timing.advert_freshness(self.cfg.advert_int)

    def hear(self, vip: Vip, source: str, priority: int, mac: str = "") -> None:
        """An advert for `vip`'s VRID from `source` arrives now (as `LiveObserver._record`)."""
        advert = PeerAdvert(vip.virtual_router_id, self.cfg.vrrp_version, priority, ipaddress.ip_address(source),
                            self.clock.now, mac)
        key = (vip.virtual_router_id, vip.family)
        self.latest[key] = advert
        self.sources.setdefault(key, {})[advert.source] = advert

    def collect(self, seconds: float, *, until_first: bool = False) -> None:
        self.listened.append(seconds)
        self.clock.now += seconds
        due = [e for e in self.events if e[0] <= self.clock.now]
        self.events = [e for e in self.events if e[0] > self.clock.now]
        for _, action in due:
            action(self)
        if self.clock.now - self.masters_heard_at >= self.cfg.advert_int:
            self.masters_heard_at = self.clock.now
            for vip, source, priority, mac in self.masters:
                self.hear(vip, source, priority, mac)

    def views(self, own_priority: int) -> list[VipView]:
        out = []
        for vip in self.cfg.vips:
            advert = self.latest.get((vip.virtual_router_id, vip.family))
            fresh = advert if advert is not None and self.clock.now - advert.seen_at <= self.freshness else None
            peer = fresh if fresh and accept_advert(fresh, {self.cfg.instance.ip}, own_priority) else None
            local = vip.name in self.here
            out.append(VipView(vip=vip, local=local, state="MASTER" if local else "BACKUP", peer_master=peer,
                               own_priority=own_priority))
        return out
