"""Interface addresses over rtnetlink: a one-shot dump, an event socket, and adding or removing
one address; and the kernel's neighbour table (no `ip` subprocesses).

Sockets are opened inside a namespace with `netns.call_in` and keep working from any thread.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from vipdrain.model import IPAddress

NETLINK_ROUTE = 0
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWNEIGH = 28
RTM_GETNEIGH = 30
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
IFA_ADDRESS = 1
IFA_LOCAL = 2
NDA_DST = 1
NDA_LLADDR = 2
NDA_CACHEINFO = 3
#: Neighbour states (NUD_*, include/net/neighbour.h): NUD_VALID ones carry a usable address.
NUD_REACHABLE = 0x02
NUD_STALE = 0x04
NUD_DELAY = 0x08
NUD_PROBE = 0x10
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NUD_VALID = NUD_PERMANENT | NUD_NOARP | NUD_REACHABLE | NUD_PROBE | NUD_STALE | NUD_DELAY
#: struct nda_cacheinfo ages are in clock ticks (USER_HZ, 100 on Linux).
_USER_HZ = 100
LOOPBACK_INDEX = 1  # `lo` is always interface 1 in a fresh namespace

T = TypeVar("T")

_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_NDMSG = struct.Struct("=BxxxiHBB")
_NDA_CACHEINFO = struct.Struct("=IIII")
_RTATTR = struct.Struct("=HH")
_NLMSGERR = struct.Struct("=i")


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


def _messages(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(message type, offset of its body, offset of its end) of each netlink message in `data`."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            return
        yield kind, offset + _NLMSGHDR.size, offset + length
        offset += _align(length)


def parse(data: bytes) -> Iterator[AddrEvent | None]:
    """Address events in a netlink datagram; yields None for NLMSG_DONE (end of a dump)."""
    for kind, body, end in _messages(data):
        if kind == NLMSG_DONE:
            yield None
        elif kind in (RTM_NEWADDR, RTM_DELADDR):
            family, prefixlen, _f, _scope, index = _IFADDRMSG.unpack_from(data, body)
            raw = _own_address(data, body + _IFADDRMSG.size, end)
            if raw is not None and family in (socket.AF_INET, socket.AF_INET6):
                yield AddrEvent(kind == RTM_NEWADDR, _text(raw), prefixlen, index)


@functools.lru_cache(maxsize=4096)
def _text(raw: bytes) -> str:
    """An address's text form. Cached: a drain dumps the same addresses many times a second."""
    return str(ipaddress.ip_address(raw))


def _own_address(data: bytes, offset: int, end: int) -> bytes | None:
    """The address in the attributes at data[offset:end]: IFA_LOCAL, the interface's own address
    (IPv4: IFA_ADDRESS is the peer on p2p links), else IFA_ADDRESS. Only those two are copied:
    a drain parses every address of the VM many times a second."""
    found = None
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        if kind == IFA_LOCAL and length > _RTATTR.size:
            return data[offset + _RTATTR.size : offset + length]
        if kind == IFA_ADDRESS:
            found = data[offset + _RTATTR.size : offset + length]
        offset += _align(length)
    return found


@dataclass(frozen=True)
class Neighbour:
    """One entry of the kernel's neighbour table (ARP cache, IPv6 neighbour cache)."""

    address: str
    mac: str
    ifindex: int
    #: NUD_* bits (NUD_VALID: the address is usable).
    state: int
    #: Seconds since traffic with it was last confirmed (an answer came back), None if unknown.
    confirmed_ago: float | None = None


def parse_neighbours(data: bytes) -> Iterator[Neighbour | None]:
    """Neighbour entries in a netlink datagram (entries without a link-layer address skipped);
    yields None for NLMSG_DONE (end of a dump)."""
    for kind, body, end in _messages(data):
        if kind == NLMSG_DONE:
            yield None
        elif kind == RTM_NEWNEIGH:
            _family, index, state, _flags, _type = _NDMSG.unpack_from(data, body)
            attrs = _attributes(data, body + _NDMSG.size, end)
            if NDA_DST in attrs and len(attrs.get(NDA_LLADDR, b"")) == 6:
                info = attrs.get(NDA_CACHEINFO, b"")
                ago = _NDA_CACHEINFO.unpack(info)[0] / _USER_HZ if len(info) == _NDA_CACHEINFO.size else None
                yield Neighbour(_text(attrs[NDA_DST]), ":".join(f"{b:02x}" for b in attrs[NDA_LLADDR]), index,
                                state, ago)


def _attributes(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    found = {}
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        found[kind] = data[offset + _RTATTR.size : offset + length]
        offset += _align(length)
    return found


def neighbours(family: int = socket.AF_INET) -> list[Neighbour]:
    """The neighbour table of `family` in the calling thread's namespace (`ip neigh show`)."""
    return _dump(RTM_GETNEIGH, _NDMSG.pack(family, 0, 0, 0, 0), parse_neighbours)


def _socket(groups: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, groups))
    return sock


#: RTM_GETADDR's request body: struct ifaddrmsg asking for every address family.
_ALL_ADDRESSES = struct.pack("=B3x", socket.AF_UNSPEC)


def _request_dump(sock: socket.socket, kind: int = RTM_GETADDR, payload: bytes = _ALL_ADDRESSES) -> None:
    sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(payload), kind, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + payload)


def _dump(kind: int, payload: bytes, parser: Callable[[bytes], Iterator[T | None]]) -> list[T]:
    """Everything a dump request of `kind` answers, parsed by `parser` (None ends the dump)."""
    with _socket() as sock:
        _request_dump(sock, kind, payload)
        found: list[T] = []
        while True:
            for item in parser(sock.recv(1 << 16)):
                if item is None:
                    return found
                found.append(item)


def dump() -> list[AddrEvent]:
    """Every address on every interface of the calling thread's namespace."""
    return _dump(RTM_GETADDR, _ALL_ADDRESSES, parse)


def _attribute(kind: int, value: bytes) -> bytes:
    data = _RTATTR.pack(_RTATTR.size + len(value), kind) + value
    return data + bytes(_align(len(data)) - len(data))


def address_request(add: bool, address: IPAddress, prefixlen: int, ifindex: int, seq: int = 1) -> bytes:
    """The request `ip addr replace` (`add`) or `ip addr del` sends for ADDRESS/PREFIXLEN on an
    interface: both IFA_LOCAL and IFA_ADDRESS set, scope global, the kernel's answer asked for."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    body = (_IFADDRMSG.pack(family, prefixlen, 0, 0, ifindex)
            + _attribute(IFA_LOCAL, address.packed) + _attribute(IFA_ADDRESS, address.packed))
    kind, flags = ((RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE) if add
                   else (RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK))
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def answer_errno(data: bytes) -> int:
    """The errno of the kernel's answer to a request: 0 when done, EPROTO for a message that is
    no answer (the kernel sends the negated errno in an NLMSG_ERROR message)."""
    if len(data) < _NLMSGHDR.size + _NLMSGERR.size or _NLMSGHDR.unpack_from(data)[1] != NLMSG_ERROR:
        return errno.EPROTO
    (error,) = _NLMSGERR.unpack_from(data, _NLMSGHDR.size)
    return -error


def change_address(add: bool, address: IPAddress, prefixlen: int, interface: str) -> None:
    """Add (or replace) or remove ADDRESS/PREFIXLEN on `interface` in the calling thread's
    namespace, as `ip addr replace|del` does; raises OSError when the kernel refuses."""
    request = address_request(add, address, prefixlen, socket.if_nametoindex(interface))
    with _socket() as sock:
        sock.send(request)
        error = answer_errno(sock.recv(1 << 16))
    if error:
        raise OSError(error, os.strerror(error))


def monitor_socket() -> socket.socket:
    """A socket that receives address changes (v4 and v6) of the calling thread's namespace.

    It first receives a full dump (ending with a None from `parse`), then events, in order.
    """
    sock = _socket(RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
    _request_dump(sock)
    return sock
