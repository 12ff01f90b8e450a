"""Who holds each VIP over time, as the lab sees it from outside vipdrain.

Two independent views, both timestamped with `time.time()` (the load client's clock):

- addresses: one rtnetlink socket per VM namespace (event-driven, no polling, no subprocess):
  a VM holds a VIP while the address is on one of its interfaces other than `lo` (a draining VM
  may park a VIP on `lo`, where it answers no ARP);
- ARP (optional, IPv4 VIPs): a probe every `arp_interval` s records which MACs (mapped to VM
  names) answer "who has VIP" - what a client on the segment would be told. It probes from the
  lab's own observer namespace, never from a client: replies would rewrite that client's ARP cache.

From either timeline: VIP moves, split brain (two holders at once) and unowned intervals.
"""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from vipdrain import rtnl
from vipdrain.lab import netns
from vipdrain.lab.wait import until

if TYPE_CHECKING:
    from vipdrain.lab.cluster import Lab

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


@dataclass(frozen=True)
class Change:
    """From `time` on, `holders` (VM names) held the VIP."""

    time: float
    holders: frozenset[str]


@dataclass(frozen=True)
class Interval:
    """[start, end) during which exactly `holders` held the VIP."""

    start: float
    end: float
    holders: frozenset[str]

    @property
    def duration(self) -> float:
        return self.end - self.start


def intervals(changes: list[Change], start: float, end: float) -> list[Interval]:
    """The holder intervals of a change timeline, clipped to [start, end)."""
    out = []
    for i, change in enumerate(changes):
        nxt = changes[i + 1].time if i + 1 < len(changes) else end
        lo, hi = max(change.time, start), min(nxt, end)
        if hi > lo:
            out.append(Interval(lo, hi, change.holders))
    return out


def count_moves(changes: Iterable[Change]) -> int:
    """How often the VIP came to a different sole holder (states with none or several skipped):
    vm0 -> none -> vm1 is one move, vm0 -> {vm0, vm1} -> vm1 is one move."""
    moves, last = 0, None
    for change in changes:
        if len(change.holders) != 1:
            continue
        if last is not None and change.holders != last:
            moves += 1
        last = change.holders
    return moves


class _Timelines:
    """Per-VIP change lists, appended under a lock."""

    def __init__(self, vips: Iterable[str], start: float):
        self._lock = threading.Lock()
        self.changes: dict[str, list[Change]] = {vip: [Change(start, frozenset())] for vip in vips}

    def set(self, vip: str, t: float, holders: frozenset[str]) -> None:
        with self._lock:
            seq = self.changes[vip]
            if seq[-1].holders == holders:
                return
            if t <= seq[-1].time:  # the initial state, stamped with the start time
                seq[-1] = Change(seq[-1].time, holders)
            else:
                seq.append(Change(t, holders))

    def get(self, vip: str) -> list[Change]:
        with self._lock:
            return list(self.changes[_norm(vip)])


def _norm(address: str) -> str:
    return str(ipaddress.ip_address(address))


class VipObserver:
    """Watch every VIP of a lab. Context manager (start/close); safe to read while running."""

    def __init__(self, lab: Lab, *, arp: bool = False, arp_interval: float = 0.2):
        self.lab = lab
        self.vips = [_norm(v) for v in lab.vips]
        self.arp_enabled = arp
        self.arp_interval = arp_interval
        self.started = 0.0
        self._addrs: dict[str, set[str]] = {vm.name: set() for vm in lab.vms}
        self._addr_lines: _Timelines | None = None
        self._arp_lines: _Timelines | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._ready = threading.Event()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> VipObserver:
        """Open the sockets, read the initial state, start watching; returns once the initial state is in."""
        self.started = time.time()
        self._addr_lines = _Timelines(self.vips, self.started)
        self._arp_lines = _Timelines(self.vips, self.started)
        selector = selectors.DefaultSelector()
        for vm in self.lab.vms:
            sock = vm.call(rtnl.monitor_socket)
            self._sockets.append(sock)
            selector.register(sock, selectors.EVENT_READ, vm.name)
        thread = threading.Thread(target=self._watch_addresses, args=(selector,), name="vip-observer", daemon=True)
        self._threads.append(thread)
        thread.start()
        until(self._ready.is_set, 10.0, interval=0.01, what="the observer's initial address dump")
        if self.arp_enabled and any(ipaddress.ip_address(v).version == 4 for v in self.vips):
            sock, mac, ip = netns.call_in(self.lab.observer_namespace, _arp_socket)
            self._sockets.append(sock)
            arp_thread = threading.Thread(target=self._watch_arp, args=(sock, mac, ip), name="arp-observer",
                                          daemon=True)
            self._threads.append(arp_thread)
            arp_thread.start()
        return self

    def close(self) -> None:
        """Stop watching (idempotent); the timelines stay readable."""
        self._stop.set()
        for thread in self._threads:
            thread.join(5.0)
        self._threads.clear()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._sockets.clear()

    def __enter__(self) -> VipObserver:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- address view ------------------------------------------------------------------------

    def _watch_addresses(self, selector: selectors.BaseSelector) -> None:
        pending_dumps = {key.data for key in selector.get_map().values()}
        while not self._stop.is_set():
            batch: list[tuple[str, rtnl.AddrEvent, float]] = []
            for key, _ in selector.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(1 << 16)  # type: ignore[union-attr]
                except OSError:
                    # ENOBUFS: the kernel dropped events; read that VM's addresses afresh.
                    self._resync(key.data)
                    continue
                # Addresses from the initial dump were there when we started.
                now = time.time() if key.data not in pending_dumps else self.started
                for event in rtnl.parse(data):
                    if event is None:
                        pending_dumps.discard(key.data)
                        if not pending_dumps:
                            self._ready.set()
                        continue
                    batch.append((key.data, event, now))
            # Events read in one round happened within our resolution of each other (netlink
            # carries no timestamps): apply additions first, so a handoff inside one round shows
            # as the overlap it was rather than as a gap that never happened.
            stamp = min((t for _, _, t in batch), default=0.0)
            for vm, event, t in sorted(batch, key=lambda b: not b[1].present):
                self._apply(vm, event, t if t == self.started else stamp)
        selector.close()

    def _resync(self, vm: str) -> None:
        now = time.time()
        present = {e.address for e in self.lab.vm(vm).call(rtnl.dump) if not e.on_loopback}
        for address in self._addrs[vm] - present:
            self._apply(vm, rtnl.AddrEvent(False, address, 0, 0), now)
        for address in present - self._addrs[vm]:
            self._apply(vm, rtnl.AddrEvent(True, address, 0, 0), now)

    def _apply(self, vm: str, event: rtnl.AddrEvent, now: float) -> None:
        if event.on_loopback:
            return
        addrs = self._addrs[vm]
        (addrs.add if event.present else addrs.discard)(event.address)
        if event.address in self.vips and self._addr_lines is not None:
            holders = frozenset(name for name, a in self._addrs.items() if event.address in a)
            self._addr_lines.set(event.address, now, holders)

    # --- ARP view ----------------------------------------------------------------------------

    def _watch_arp(self, sock: socket.socket, mac: bytes, ip: bytes) -> None:
        by_mac = {bytes.fromhex(vm.mac.replace(":", "")): vm.name for vm in self.lab.vms if vm.mac}
        v4 = [v for v in self.vips if ipaddress.ip_address(v).version == 4]
        while not self._stop.is_set():
            round_start = time.time()
            answers: dict[str, set[str]] = {v: set() for v in v4}
            for vip in v4:
                with contextlib.suppress(OSError):
                    sock.send(_arp_request(mac, ip, ipaddress.ip_address(vip).packed))
            deadline = time.monotonic() + self.arp_interval
            while (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                try:
                    frame = sock.recv(128)
                except (TimeoutError, OSError):
                    break
                reply = _parse_arp_reply(frame)
                if reply is not None and reply[1] in answers:
                    answers[reply[1]].add(by_mac.get(reply[0], reply[0].hex(":")))
            if self._arp_lines is not None:
                for vip, names in answers.items():
                    self._arp_lines.set(vip, round_start, frozenset(names))

    # --- queries -----------------------------------------------------------------------------

    def _lines(self, arp: bool) -> _Timelines:
        lines = self._arp_lines if arp else self._addr_lines
        if lines is None:
            raise RuntimeError("the observer has not been started")
        return lines

    def holders(self, vip: str, *, arp: bool = False) -> frozenset[str]:
        """Who holds `vip` now (by addresses, or by the last ARP round)."""
        return self._lines(arp).get(vip)[-1].holders

    def timeline(self, vip: str, *, arp: bool = False) -> list[Change]:
        """Every change of `vip`'s holders since the observer started (first entry: the start)."""
        return self._lines(arp).get(vip)

    def intervals(self, vip: str, start: float | None = None, end: float | None = None, *,
                  arp: bool = False) -> list[Interval]:
        """Holder intervals of `vip` within [start, end) (default: since start, until now)."""
        return intervals(self.timeline(vip, arp=arp), start or self.started, end or time.time())

    def moves(self, vip: str, start: float | None = None, end: float | None = None, *, arp: bool = False) -> int:
        """How many times `vip` moved to a different sole holder within the window."""
        return count_moves(Change(i.start, i.holders) for i in self.intervals(vip, start, end, arp=arp))

    def split_brain(self, vip: str, start: float | None = None, end: float | None = None, *,
                    arp: bool = False) -> list[Interval]:
        """Intervals in which two or more VMs held `vip` at once."""
        return [i for i in self.intervals(vip, start, end, arp=arp) if len(i.holders) > 1]

    def unowned(self, vip: str, start: float | None = None, end: float | None = None, *,
                arp: bool = False) -> list[Interval]:
        """Intervals in which no VM held `vip`."""
        return [i for i in self.intervals(vip, start, end, arp=arp) if not i.holders]

    def wait_for(self, vip: str, predicate: Callable[[frozenset[str]], bool] | Iterable[str], timeout: float,
                 *, since: float | None = None, arp: bool = False) -> float:
        """Wait until `vip`'s holders satisfy `predicate` (or equal the given names) at some moment
        since `since` (default: the observer's start); returns the first such moment."""
        if callable(predicate):
            check = predicate
        else:
            wanted = frozenset(predicate)

            def check(holders: frozenset[str]) -> bool:
                return holders == wanted

        def first_match() -> float | None:
            spans = self.intervals(vip, since, time.time(), arp=arp)
            return next((span.start for span in spans if check(span.holders)), None)

        return until(first_match, timeout, interval=0.02, what=f"holders of {vip} to match")


def _arp_socket() -> tuple[socket.socket, bytes, bytes]:
    """A raw ARP socket on eth0 of the calling thread's namespace, with eth0's MAC and IPv4 address."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sock.bind(("eth0", ETH_P_ARP))
    mac = sock.getsockname()[4]
    addrs = [e for e in rtnl.dump() if not e.on_loopback and ipaddress.ip_address(e.address).version == 4]
    return sock, mac, ipaddress.ip_address(addrs[0].address).packed


def _arp_request(mac: bytes, ip: bytes, target: bytes) -> bytes:
    """Ethernet broadcast frame with an ARP "who has `target`" from `mac`/`ip`."""
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip, b"\x00" * 6, target)
    return BROADCAST + mac + struct.pack("!H", ETH_P_ARP) + arp


def _parse_arp_reply(frame: bytes) -> tuple[bytes, str] | None:
    """(sender MAC, sender IP) of an ARP reply frame, else None."""
    if len(frame) < 42 or frame[12:14] != struct.pack("!H", ETH_P_ARP):
        return None
    _htype, _ptype, _hlen, _plen, oper, sha, spa = struct.unpack("!HHBBH6s4s", frame[14:32])
    if oper != 2:
        return None
    return sha, str(ipaddress.IPv4Address(spa))
