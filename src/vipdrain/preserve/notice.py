"""The drain notice: a UDP datagram (`VDP1` + the VIP's address bytes, TTL 255) the old master sends
every peer so that they arm their forwarding before the VIP moves."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Sequence

from vipdrain.model import IPAddress, JobConfig, Peer

#: First 4 bytes of a drain notice ("VDP" + format version); the VIP's address bytes follow.
MAGIC = b"VDP1"
#: Notices are sent with TTL / hop limit 255 and accepted only so: a routed copy cannot arm.
NOTICE_TTL = 255
#: Copies of the notice sent at once by the drain (the repeater follows every NOTICE_INTERVAL).
NOTICE_BURST = 3
NOTICE_INTERVAL = 0.2

Sender = Callable[[IPAddress, Sequence[IPAddress], Sequence[IPAddress], int], list[str]]


def encode_notice(vip: IPAddress) -> bytes:
    """The drain notice for `vip`: MAGIC then the address bytes (4 or 16), nothing else.

    Fixed offsets, because nftables matches it in the kernel: UDP payload bytes 0-3 are the
    magic (`@th,64,32`), the address starts at byte 4 (`@th,96,...`).
    """
    return MAGIC + vip.packed


def notice_targets(source: IPAddress, peers: Iterable[Peer]) -> list[IPAddress]:
    """Peers a notice can reach from `source`: those of its address family."""
    return [p.address for p in peers if p.address.version == source.version]


def notice_source(cfg: JobConfig) -> IPAddress:
    """The address notices come from: the one peers know this VM by (as for VRRP adverts)."""
    return cfg.source_address or cfg.instance.ip


def send_notices(source: IPAddress, targets: Sequence[IPAddress], vips: Sequence[IPAddress], port: int) -> list[str]:
    """Send one notice per VIP to every target, from `source`, TTL 255; returns problems (never raises)."""
    family = socket.AF_INET if source.version == 4 else socket.AF_INET6
    problems = []
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            if source.version == 4:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, NOTICE_TTL)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, NOTICE_TTL)
            sock.bind((str(source), 0))
            for vip in vips:
                payload = encode_notice(vip)
                for target in targets:
                    try:
                        sock.sendto(payload, (str(target), port))
                    except OSError as exc:
                        problems.append(f"notice for {vip} to {target}: {exc.strerror or exc}")
    except OSError as exc:
        problems.append(f"cannot send notices from {source}: {exc.strerror or exc}")
    return problems
