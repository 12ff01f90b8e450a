"""Who holds an address on the link: ARP for IPv4 and IPv6 neighbour solicitation (`who_has`,
`arp_who_has`); the MACs that answer name the holders (Linux, root or CAP_NET_RAW). And what the
kernel already knows: `confirmed_mac`, from its neighbour table."""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import time
from collections.abc import Callable

from vipdrain import rtnl
from vipdrain.model import IPAddress
from vipdrain.vrrp.sockets import ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, mac_text
from vipdrain.vrrp.wire import IPV6_HEADER, AddressLike, as_address

_ARP = struct.Struct("!HHBBH6s4s6s4s")


def arp_who_has(
    interface: str, target_ip: AddressLike, sender_ip: AddressLike, timeout: float
) -> list[tuple[str, ipaddress.IPv4Address]]:
    """Broadcast one ARP request for `target_ip` and collect who claims it within `timeout` s.

    Returns `(mac, ip)` per distinct MAC in arrival order: ARP replies for the target and
    gratuitous ARPs announcing it (keepalived sends those on becoming master). More than one
    MAC means more than one holder. This host never answers its own request, so a VIP held
    locally is not listed. `sender_ip` is what peers may learn about us: use this host's own
    address (or 0.0.0.0 for an RFC 5227 probe), never the VIP.
    """
    target, sender = as_address(target_ip), as_address(sender_ip)
    if target.version != 4 or sender.version != 4:
        raise ValueError("ARP is IPv4 only")
    found = who_has(interface, [target], sender, timeout)
    return [(mac, target) for mac in found[target]]  # type: ignore[misc]


#: How recently the neighbour entry must have been confirmed to be trusted without asking.
CONFIRMED_WITHIN = 2.0


def confirmed_mac(interface: str, target: IPAddress,
                  table: Callable[[int], list[rtnl.Neighbour]] = rtnl.neighbours) -> str | None:
    """The MAC the kernel's neighbour table has for `target` on `interface`, if traffic with it
    was answered within CONFIRMED_WITHIN seconds (as the TCP exchange of a probe just was) or the
    entry is fixed; else None, and asking the link is the way (`who_has`).

    By confirmation time, not state: right after a probe through an entry that had gone stale
    the state is DELAY (the kernel's timer turns it REACHABLE only later), though just confirmed.
    A stale entry may name the old MAC of a VM recreated with the same address.
    """
    family = socket.AF_INET if target.version == 4 else socket.AF_INET6
    try:
        index = socket.if_nametoindex(interface)
        entries = table(family)
    except OSError:
        return None
    wanted = str(target)
    for entry in entries:
        if entry.ifindex != index or entry.address != wanted or not entry.state & rtnl.NUD_VALID:
            continue
        recent = entry.confirmed_ago is not None and entry.confirmed_ago <= CONFIRMED_WITHIN
        if entry.state & rtnl.NUD_PERMANENT or recent:
            return entry.mac
    return None


_ICMPV6 = 58
_NEIGHBOUR_SOLICITATION = 135
_NEIGHBOUR_ADVERTISEMENT = 136
#: RFC 4861 7.1: neighbour discovery messages travel with hop limit 255 only.
_ND_HOP_LIMIT = 255


def solicited_node(target: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """RFC 4291 2.7.1: the multicast group a neighbour solicitation for `target` goes to."""
    return ipaddress.IPv6Address(ipaddress.IPv6Address("ff02::1:ff00:0").packed[:13] + target.packed[13:])


def build_neighbour_solicitation(target: ipaddress.IPv6Address, mac: bytes) -> bytes:
    """The ICMPv6 message (RFC 4861 4.3) asking who has `target`, with our link-layer address
    option; checksum 0: the kernel fills it in for ICMPv6 raw sockets (RFC 3542 3.1)."""
    return struct.pack("!BBHI", _NEIGHBOUR_SOLICITATION, 0, 0, 0) + target.packed + bytes([1, 1]) + mac[:6]


def parse_neighbour_advert(packet: bytes) -> ipaddress.IPv6Address | None:
    """The target of a neighbour advertisement (an IPv6 packet, no extension headers), else None.

    Solicited answers and unsolicited ones (keepalived sends those on becoming master) alike.
    """
    if len(packet) < IPV6_HEADER.size + 24 or packet[0] >> 4 != 6:
        return None
    _first, _length, proto, hops, _src, _dst = IPV6_HEADER.unpack_from(packet)
    icmp = packet[IPV6_HEADER.size:]
    if proto != _ICMPV6 or hops != _ND_HOP_LIMIT or icmp[0] != _NEIGHBOUR_ADVERTISEMENT or icmp[1] != 0:
        return None
    return ipaddress.IPv6Address(icmp[8:24])


def _send_neighbour_solicitation(interface: str, target: ipaddress.IPv6Address, mac: bytes) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, _ND_HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        group = str(solicited_node(target))
        sock.sendto(build_neighbour_solicitation(target, mac), (group, 0, 0, socket.if_nametoindex(interface)))


def who_has(
    interface: str, targets: list[IPAddress], sender_ip: AddressLike | None, timeout: float
) -> dict[IPAddress, list[str]]:
    """Ask the link who has each address - ARP for IPv4, neighbour solicitation for IPv6 - all at
    once, and collect the MACs that claim each within `timeout` s (arrival order, distinct).

    Answers and unsolicited announcements (gratuitous ARP, unsolicited neighbour adverts) count
    alike; this host's own packets never do, so an address held here is not listed. `sender_ip`
    is the IPv4 address ARP requests carry (this host's own, never the VIP; needed only with
    IPv4 targets). IPv6 solicitations go from the interface's link-local address, chosen by the
    kernel. One more MAC than expected means one more holder.
    """
    v4 = {t.packed: t for t in targets if t.version == 4}
    v6 = {t: t for t in targets if t.version == 6}
    found: dict[IPAddress, dict[str, None]] = {t: {} for t in targets}
    sockets: list[tuple[socket.socket, int]] = []
    try:
        # Protocol 0 until bind: nothing from other interfaces gets queued meanwhile.
        if v4:
            sender = as_address(sender_ip) if sender_ip is not None else None
            if sender is None or sender.version != 4:
                raise ValueError("ARP needs this host's IPv4 address as the sender")
            if sender.packed in v4:
                raise ValueError(f"asking for {sender} as {sender} would announce it, not probe it")
            arp = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
            sockets.append((arp, ETH_P_ARP))
            arp.bind((interface, ETH_P_ARP))
            mac = arp.getsockname()[4][:6]
            for packed in v4:
                request = _ARP.pack(1, ETH_P_IP, 6, 4, 1, mac, sender.packed, b"\0" * 6, packed)
                arp.sendto(request, (interface, ETH_P_ARP, 0, 0, b"\xff" * 6))
        if v6:
            nd = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
            sockets.append((nd, ETH_P_IPV6))
            nd.bind((interface, ETH_P_IPV6))
            mac = nd.getsockname()[4][:6]
            for target in v6:
                _send_neighbour_solicitation(interface, target, mac)  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout
        while sockets and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([s for s, _ in sockets], [], [], left)
            if not ready:
                break
            for sock in ready:
                data, addr = sock.recvfrom(65535)
                if addr[2] == socket.PACKET_OUTGOING:
                    continue
                claimed: IPAddress | None = None
                claimer = addr[4]  # the frame's source; ARP names its own sender
                if addr[1] == ETH_P_ARP and len(data) >= _ARP.size:
                    htype, ptype, _hlen, _plen, op, sha, spa, _tha, tpa = _ARP.unpack_from(data)
                    if htype == 1 and ptype == ETH_P_IP and spa in v4 and (op == 2 or (op == 1 and tpa == spa)):
                        claimed, claimer = v4[spa], sha
                elif addr[1] == ETH_P_IPV6:
                    target = parse_neighbour_advert(data)
                    claimed = v6.get(target) if target is not None else None  # type: ignore[call-overload]
                if claimed is not None:
                    found[claimed].setdefault(mac_text(claimer), None)
    finally:
        for sock, _ in sockets:
            sock.close()
    return {t: list(macs) for t, macs in found.items()}
