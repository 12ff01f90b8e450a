"""Interface addresses over rtnetlink: a one-shot dump and an event socket (no `ip` subprocesses).

Sockets are opened inside a namespace with `netns.call_in` and keep working from any thread.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

NETLINK_ROUTE = 0
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
IFA_ADDRESS = 1
IFA_LOCAL = 2
LOOPBACK_INDEX = 1  # `lo` is always interface 1 in a fresh namespace

_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")


@dataclass(frozen=True)
class AddrEvent:
    """An address added to (present=True) or removed from an interface."""

    present: bool
    address: str
    prefixlen: int
    ifindex: int

    @property
    def on_loopback(self) -> bool:
        return self.ifindex == LOOPBACK_INDEX


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse(data: bytes) -> Iterator[AddrEvent | None]:
    """Address events in a netlink datagram; yields None for NLMSG_DONE (end of a dump)."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            return
        body = offset + _NLMSGHDR.size
        if kind == NLMSG_DONE:
            yield None
        elif kind in (RTM_NEWADDR, RTM_DELADDR):
            family, prefixlen, _f, _scope, index = _IFADDRMSG.unpack_from(data, body)
            attrs = _attributes(data[body + _IFADDRMSG.size : offset + length])
            # IPv4: IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on p2p links).
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw is not None and family in (socket.AF_INET, socket.AF_INET6):
                yield AddrEvent(kind == RTM_NEWADDR, str(ipaddress.ip_address(raw)), prefixlen, index)
        offset += _align(length)


def _attributes(data: bytes) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    offset = 0
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        attrs[kind] = data[offset + _RTATTR.size : offset + length]
        offset += _align(length)
    return attrs


def _socket(groups: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, groups))
    return sock


def _request_dump(sock: socket.socket) -> None:
    payload = struct.pack("=B3x", socket.AF_UNSPEC)
    sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(payload), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + payload)


def dump() -> list[AddrEvent]:
    """Every address on every interface of the calling thread's namespace."""
    with _socket() as sock:
        _request_dump(sock)
        found: list[AddrEvent] = []
        while True:
            for event in parse(sock.recv(1 << 16)):
                if event is None:
                    return found
                found.append(event)


def monitor_socket() -> socket.socket:
    """A socket that receives address changes (v4 and v6) of the calling thread's namespace.

    It first receives a full dump (ending with a None from `parse`), then events, in order.
    """
    sock = _socket(RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
    _request_dump(sock)
    return sock
