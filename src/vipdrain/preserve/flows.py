"""This VM's own TCP connections to the VIPs, read from /proc/net/tcp and /proc/net/tcp6."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from vipdrain.model import IPAddress

#: TCP states in /proc/net/tcp* without a connection to keep: LISTEN (0A) and CLOSE (07).
_NOT_CONNECTED = {"0A", "07"}
_TIME_WAIT = "06"

Flow = tuple[IPAddress, int, IPAddress, int]


def local_flows(proc_net_tcp: str, vips: Iterable[IPAddress], *, time_wait: bool = True) -> list[Flow]:
    """Connections this VM has to `vips`, from /proc/net/tcp or /proc/net/tcp6 text, as the
    local set keys them: (client address, client port, VIP, VIP port). `time_wait=False` leaves
    out connections that are over (TIME_WAIT: the kernel only absorbs stray packets for them).

    Addresses there are 32-bit words printed in host byte order; ports are plain hex.
    """
    wanted = set(vips)
    skip = _NOT_CONNECTED if time_wait else _NOT_CONNECTED | {_TIME_WAIT}
    flows = []
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] in skip:
            continue
        (local, lport), (remote, rport) = (f.split(":") for f in fields[1:3])
        vip, client = _proc_address(local), _proc_address(remote)
        if vip in wanted:
            flows.append((client, int(rport, 16), vip, int(lport, 16)))
    return flows


def _proc_address(word_hex: str) -> IPAddress:
    raw = b"".join(int(word_hex[i:i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(word_hex), 8))
    address = ipaddress.ip_address(raw)
    # An IPv4 connection accepted by an IPv6 socket is listed in tcp6 as ::ffff:a.b.c.d.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return mapped or address


def read_proc_tcp(version: int) -> str:
    """/proc/net/tcp (4) or /proc/net/tcp6 (6) of this network namespace; "" when unreadable."""
    try:
        return Path(f"/proc/net/tcp{'6' if version == 6 else ''}").read_text()
    except OSError:
        return ""


def own_flows(vips: Iterable[IPAddress], *, time_wait: bool = True,
              read: Callable[[int], str] = read_proc_tcp) -> list[Flow]:
    """This VM's connections to `vips`, over IPv4 and IPv6 (see `local_flows`)."""
    wanted = list(vips)
    return [f for version in (4, 6) for f in local_flows(read(version), wanted, time_wait=time_wait)]


def open_connections(vips: Iterable[IPAddress], read: Callable[[int], str] = read_proc_tcp) -> int:
    """How many connections to `vips` this VM still serves (TIME_WAIT ones are over)."""
    return len(own_flows(vips, time_wait=False, read=read))
