"""Another VRRP group announcing one of our VIPs: the split brain of a half-done migration.

keepalived only listens to adverts of its own VRID and VRRP version (keepalived 2.2.7
vrrp.c, `vrrp_check_packet`: "wrong version" drops the packet; another VRID is another
instance). A group of VMs speaking VRRPv2 with VRID 1 (haproxy-boshrelease's keepalived job) and
one speaking VRRPv3 or another VRID for the same address never hear each other: each elects its
own master and both hold the VIP. So before keepalived starts (pre-start), and whenever the group
is checked (post-deploy, `vipdrain status`), we listen for adverts that carry one of our VIPs
under a (VRID, version) other than ours. Deciding is a pure function (`foreign_groups`); the
listening is a thin edge (`ForeignWatch`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from vipdrain import vrrp
from vipdrain.errors import RuntimeFailure
from vipdrain.layout import Layout
from vipdrain.model import IPAddress, JobConfig, Vip
from vipdrain.observe import LiveObserver
from vipdrain.vrrp.timing import foreign_listen

log = logging.getLogger("vipdrain.foreign")


@dataclass(frozen=True)
class Heard:
    """One advert as the check needs it: which group sent it, from where, for which addresses."""

    vrid: int
    version: int
    source: IPAddress
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True)
class ForeignGroup:
    """A VRRP group other than ours that announces `vip`."""

    vip: Vip
    ours: tuple[int, int]  # (vrid, version) this job runs for the VIP
    theirs: Heard

    def sentence(self) -> str:
        vrid, version = self.ours
        t = self.theirs
        return (
            f"another VRRP group announces {self.vip.address} ({self.vip.name}): vrid {t.vrid}, VRRPv{t.version} "
            f"from {t.source}, while this job runs vrid {vrid}, VRRPv{version} for it; the two groups cannot hear "
            "each other and would both hold the VIP (set keepalived.virtual_router_id and keepalived.vrrp_version "
            "to the other group's values, see docs/BOSH.md \"Upgrading\")"
        )


def our_group(cfg: JobConfig, vip: Vip) -> tuple[int, int]:
    """(VRID, VRRP version) of the keepalived instance this job runs for `vip` (IPv6 is always v3,
    as `vipdrain.render` renders it)."""
    return vip.virtual_router_id, 3 if vip.family == 6 else cfg.vrrp_version


def foreign_groups(cfg: JobConfig, heard: Iterable[Heard]) -> list[ForeignGroup]:
    """Adverts that carry one of our VIPs under another (VRID, version): one per group and VIP,
    the first source heard. Adverts from our own addresses never count."""
    own = {cfg.instance.ip}
    by_address = {vip.address: vip for vip in cfg.vips}
    found: dict[tuple[IPAddress, int, int], ForeignGroup] = {}
    for h in heard:
        if h.source in own:
            continue
        for address in h.addresses:
            vip = by_address.get(address)
            if vip is None or (h.vrid, h.version) == our_group(cfg, vip):
                continue
            found.setdefault((vip.address, h.vrid, h.version), ForeignGroup(vip, our_group(cfg, vip), h))
    return list(found.values())


def listen_seconds(cfg: JobConfig) -> float:
    """How long pre-start listens (`timing.foreign_listen`)."""
    return foreign_listen(cfg.advert_int)


class ForeignWatch:
    """Keeps what every advert a `LiveObserver` recorded said (append `record` to its `taps`)."""

    def __init__(self, cfg: JobConfig) -> None:
        self.cfg = cfg
        self.heard: list[Heard] = []

    def record(self, packet: vrrp.Packet) -> None:
        a = packet.advert
        if a.src is not None and not packet.outgoing:
            self.heard.append(Heard(a.vrid, a.version, a.src, a.addresses))

    def found(self) -> list[ForeignGroup]:
        """Every foreign group heard so far."""
        return foreign_groups(self.cfg, self.heard)

    def watching(self, observer: LiveObserver) -> LiveObserver:
        """`observer`, now also feeding this watch."""
        observer.taps.append(self.record)
        return observer


def refuse_foreign_groups(cfg: JobConfig, layout: Layout, seconds: float | None = None,
                          observer: Callable[[JobConfig, Layout], LiveObserver] = LiveObserver) -> None:
    """Pre-start: listen, and raise (fail the deploy before keepalived starts) when another VRRP
    group announces one of our VIPs. A VM that cannot listen says so and goes on: the check is a
    guard, and failing every deploy where packet sockets are refused would be worse."""
    watch = ForeignWatch(cfg)
    try:
        with watch.watching(observer(cfg, layout)) as live:
            live.collect(listen_seconds(cfg) if seconds is None else seconds)
    except OSError as exc:
        log.warning("cannot listen for other VRRP groups announcing our VIPs (%s): not checked", exc)
        return
    found = watch.found()
    if found:
        raise RuntimeFailure("pre-start: refusing to start keepalived: " + "; ".join(f.sentence() for f in found))
