"""The drain's eyes on a real VM: VRRP adverts on the wire, addresses on the interfaces,
keepalived's reported state - and its one voice, the priority-0 resign advert.
"""

from __future__ import annotations

import ipaddress
import logging
import select
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Protocol

from vipdrain import keepalived, netstate, probe, vrrp
from vipdrain.layout import Layout
from vipdrain.model import IPAddress, JobConfig, Vip
from vipdrain.notify import read_state_file
from vipdrain.verdicts import PeerAdvert, VipView, accept_advert, holds_vip, master_here
from vipdrain.vrrp.timing import advert_freshness, hear_every_master

log = logging.getLogger("vipdrain.observe")

#: A peer's haproxy on the same segment answers a request in a few milliseconds.
PEER_PROBE_TIMEOUT = 0.3
#: Long enough for a peer on the segment to answer ARP; spent once per drain, before the hold.
RESIGN_ARP_TIMEOUT = 0.1


class Observer(Protocol):
    """What the survey, post-start and post-deploy read from the wire and the interfaces;
    `LiveObserver` is the real one, `tests/unit/fakes.FakeObserver` the unit tests' one."""

    @property
    def latest(self) -> Mapping[tuple[int, int], PeerAdvert]:
        """Latest advert per (VRID, address family) from anyone but us."""
        ...

    @property
    def sources(self) -> Mapping[tuple[int, int], Mapping[IPAddress, PeerAdvert]]:
        """Every source heard per (VRID, family), with its latest advert."""
        ...

    @property
    def freshness(self) -> float:
        """An advert older than this no longer proves its sender is master."""
        ...

    def collect(self, seconds: float, *, until_first: bool = False) -> None:
        """Listen for adverts for up to `seconds`; with `until_first`, return once some arrived."""
        ...

    def views(self, own_priority: int) -> list[VipView]:
        """One observation of every VIP of the job."""
        ...


class LiveObserver:
    """Watches every interface the job's VIPs live on; use as a context manager."""

    def __init__(
        self,
        cfg: JobConfig,
        layout: Layout,
        addresses: Callable[[], dict[str, list[IPAddress]]] = netstate.local_addresses,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        keepalived_alive: Callable[[Layout], bool] = keepalived.running,
    ) -> None:
        self.cfg = cfg
        self.layout = layout
        self._addresses = addresses
        self._clock = clock
        self._wall = wall
        self._keepalived_alive = keepalived_alive
        #: When the listeners opened: silence from our own keepalived means something only after
        #: a whole advert window of listening.
        self.opened_at: float | None = None
        self._listeners: list[vrrp.AdvertListener] = []
        #: Latest advert per (VRID, address family) from anyone but us.
        self.latest: dict[tuple[int, int], PeerAdvert] = {}
        #: Every source seen per (VRID, family) with its latest advert: the survey reads these.
        self.sources: dict[tuple[int, int], dict[IPAddress, PeerAdvert]] = {}
        #: Our own keepalived's adverts as (received, priority): shows when it applied the hold.
        self.own: list[tuple[float, int]] = []
        #: The peer resign adverts go to, with its MAC (`prepare_resign`), and what sends them.
        self._resign_to: tuple[IPAddress, str, str] | None = None  # (peer, interface, MAC)
        self._frames = vrrp.FrameSender()
        #: Our own keepalived's latest advert above priority 0 per (VRID, family): it is master.
        self.own_latest: dict[tuple[int, int], PeerAdvert] = {}
        #: Each VIP's state file, read on every look (`views`).
        self._state_files = {vip.name: layout.state_file(vip.name) for vip in cfg.vips}
        #: Called with every advert from another machine, as it is recorded (vipdrain.foreign).
        self.taps: list[Callable[[vrrp.Packet], None]] = []

    def __enter__(self) -> LiveObserver:
        try:
            for interface in sorted({v.interface for v in self.cfg.vips}):
                self._listeners.append(vrrp.AdvertListener(interface, include_outgoing=True))
            self.opened_at = self._clock()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        self._frames.close()

    @property
    def freshness(self) -> float:
        """An advert older than this no longer proves its sender is master (RFC Master_Down_Interval)."""
        return advert_freshness(self.cfg.advert_int)

    @property
    def master_window(self) -> float:
        """A master advertises every advert_int: silent this long, it is not master."""
        return hear_every_master(self.cfg.advert_int)

    def collect(self, seconds: float, *, until_first: bool = False) -> None:
        """Record adverts from every interface for `seconds`; with `until_first`, return as soon as
        some arrived (the drain then looks at once instead of at the end of its poll interval)."""
        deadline = self._clock() + seconds
        while (left := deadline - self._clock()) > 0:
            ready, _, _ = select.select(self._listeners, [], [], left)
            self._take_queued(ready)
            if ready and until_first:
                return

    def _record(self, packet: vrrp.Packet) -> None:
        a = packet.advert
        if a.src is None:
            return
        seen = PeerAdvert(a.vrid, a.version, a.priority, a.src, packet.received or self._clock(), packet.src_mac)
        key = (a.vrid, a.src.version)
        if packet.outgoing:
            self.own.append((seen.seen_at, a.priority))
            # Priority 0 is a resign (ours, or keepalived stopping): no claim to be master.
            if a.priority > 0:
                self.own_latest[key] = seen
            return
        for tap in self.taps:
            tap(packet)
        self.latest[key] = seen
        self.sources.setdefault(key, {})[a.src] = seen

    def _take_queued(self, listeners: list[vrrp.AdvertListener] | None = None) -> None:
        """Record the adverts already queued on `listeners` (default: all), without waiting."""
        for listener in self._listeners if listeners is None else listeners:
            packet = listener.next(0)
            while packet is not None:
                self._record(packet)
                packet = listener.next(0)

    def views(self, own_priority: int) -> list[VipView]:
        """One observation of every VIP of the job."""
        self._take_queued()
        # Sets: each VIP is looked up in its interface's addresses (many, with many VIPs).
        local = {name: set(ips) for name, ips in self._addresses().items()}
        mine = set().union(*local.values(), {self.cfg.instance.ip})
        now = self._clock()
        wall_now = self._wall()
        running = self._keepalived_alive(self.layout)
        listened = now - self.opened_at if self.opened_at is not None else 0.0
        out = []
        serving: dict[IPAddress, str | None] = {}
        for vip in self.cfg.vips:
            problem = None
            advert = self.latest.get((vip.virtual_router_id, vip.address.version))
            recent = advert if advert is not None and now - advert.seen_at <= self.freshness else None
            peer = recent if recent and accept_advert(recent, mine, own_priority) else None
            if peer is not None and self.cfg.drain.peer_check and peer.source.version == 4:
                if peer.source not in serving:
                    serving[peer.source] = self.peer_problem(peer.source)
                problem = serving[peer.source]
            draining = recent if recent and recent.source not in mine and 0 < recent.priority <= own_priority else None
            state = read_state_file(self._state_files[vip.name])
            here, why = master_here(
                vip, keepalived_running=running, own=self.own_latest.get((vip.virtual_router_id, vip.family)),
                now=now, listened=listened, window=self.master_window,
                hint=state.state if state else None, hint_age=wall_now - state.time if state else None,
            )
            out.append(VipView(
                vip=vip,
                # Only the VIP's own interface counts: a copy on lo (see vipdrain.vipaddr) is silent.
                local=vip.address in local.get(vip.interface, ()),
                state=state.state if state else None,
                peer_master=peer,
                own_priority=own_priority,
                draining_peer=draining,
                peer_problem=problem,
                master_here=here,
                here=why,
            ))
        return out

    def keepalived_running(self) -> bool:
        return self._keepalived_alive(self.layout)

    def peer_problem(self, address: IPAddress) -> str | None:
        """Why the peer's haproxy does not answer haproxy.probe's request (its port and path) on the
        peer's own address, or None. An answer, not a handshake: a hung haproxy still gets one."""
        return probe.answer_problem(probe.parse_probe(self.cfg.haproxy.probe).at(str(address)), PEER_PROBE_TIMEOUT)

    def outdated_advert_since(self, priority: int, since: float) -> bool:
        """Did our keepalived advertise above `priority` after `since` (monotonic)?

        Such an advert, sent after a resign advert, resets the peers' takeover timer: it means
        keepalived had not applied the hold yet when we resigned, so the resign must be repeated.
        """
        return any(t > since and p > priority for t, p in self.own)

    def prepare_resign(self, to: IPAddress) -> str:
        """Learn the MAC of `to`, the peer that is to take over, so `resign(to)` reaches it alone."""
        self._resign_to = None
        if to.version != 4 or self.cfg.unicast:
            return f"resign adverts go to {to} by address" if self.cfg.unicast else \
                f"resign adverts go to the group ({to} has no ARP)"
        interface = self.cfg.vips[0].interface
        # The taker's haproxy has just answered the drain's probe: the kernel's neighbour entry for
        # it is confirmed, and reading it saves the ARP round's listening time before the resign.
        known = vrrp.confirmed_mac(interface, to)
        if known is not None:
            self._resign_to = (to, interface, known)
            return f"resign adverts go to {to} ({known}, neighbour table) only"
        try:
            found = vrrp.arp_who_has(interface, to, self.cfg.instance.ip, RESIGN_ARP_TIMEOUT)
        except OSError as exc:
            found, why = [], str(exc)
        else:
            why = "no ARP answer"
        if len(found) != 1:
            return f"resign adverts go to the group: cannot tell {to}'s MAC ({why if not found else 'several'})"
        self._resign_to = (to, interface, found[0][0])
        return f"resign adverts go to {to} ({found[0][0]}) only"

    def resign(self, to: IPAddress | None = None) -> list[str]:
        """Send one priority-0 advert per VIP held here, as keepalived would for that instance.

        The RFC's "master resigns" signal: a backup that hears it takes over after its skew time
        instead of three advert intervals, while keepalived here still holds the VIP until it
        hears the new master (make-before-break). With `to` (prepared by `prepare_resign`) only
        that peer hears it: every backup that hears it races, and with many VIPs a busy keepalived
        runs its timers late (it serves its socket first), so the lower backup won about half the
        races and the higher one preempted it a second later (issue 18). Failures are reported,
        never raised: the priority drop alone still hands over, only slower.
        """
        said = []
        held = [v.vip for v in self.views(own_priority=0) if holds_vip(v)]
        for vip in held:
            try:
                said.extend(self._send_resign(vip, to))
            except OSError as exc:
                said.append(f"resign advert for {vip.name} not sent ({exc}); handing over by priority alone")
        return said

    def _send_resign(self, vip: Vip, to: IPAddress | None = None) -> list[str]:
        cfg = self.cfg
        src = self._advert_source(vip)
        auth = cfg.authentication if cfg.vrrp_version == 2 and vip.family == 4 else None
        advert = vrrp.Advert(
            version=cfg.vrrp_version if vip.family == 4 else 3,
            vrid=vip.virtual_router_id,
            priority=0,
            advert_int=cfg.advert_int,
            addresses=(vip.address,),
            auth_type=vrrp.AUTH_PASS if auth else vrrp.AUTH_NONE,
            auth_data=vrrp.pass_auth(auth) if auth else b"",
        )
        if cfg.unicast:
            targets = [p.address for p in cfg.peers if p.address.version == vip.family]
            if to is not None and to in targets:
                targets = [to]
        else:
            group = cfg.multicast_group_v4 if vip.family == 4 else cfg.multicast_group_v6
            targets = [ipaddress.ip_address(group)]
            peer, interface, mac = self._resign_to or (None, "", "")
            if to is not None and (peer, interface) == (to, vip.interface):
                self._frames.send(advert, src, targets[0], vip.interface, mac)
                return [f"resign advert (priority 0) for {vip.name} sent from {src} to {targets[0]} "
                        f"in a frame for {to} ({mac}) only"]
        for dst in targets:
            vrrp.send_advert(advert, src, dst, vip.interface)
        return [f"resign advert (priority 0) for {vip.name} sent from {src} to {', '.join(map(str, targets))}"]

    def _advert_source(self, vip: Vip) -> IPAddress:
        """The address keepalived sends this instance's adverts from."""
        if vip.family == 4:
            return self.cfg.source_address or self.cfg.instance.ip
        for ip in self._addresses().get(vip.interface, []):
            if ip.version == 6 and ip.is_link_local:
                return ip
        raise OSError(f"no IPv6 link-local address on {vip.interface}")
