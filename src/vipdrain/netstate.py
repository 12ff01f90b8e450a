"""Addresses on the local interfaces (current network namespace), over rtnetlink.

The drain looks at them many times a second: a netlink dump costs a fraction of a millisecond,
an `ip -j addr` subprocess several.
"""

from __future__ import annotations

import functools
import ipaddress
import socket

from vipdrain import rtnl
from vipdrain.errors import RuntimeFailure
from vipdrain.model import IPAddress


def local_addresses() -> dict[str, list[IPAddress]]:
    """Interface name -> its addresses (interfaces without any included, zone ids dropped)."""
    try:
        names = dict(socket.if_nameindex())
        found: dict[str, list[IPAddress]] = {name: [] for name in names.values()}
        for event in rtnl.dump():
            name = names.get(event.ifindex) or socket.if_indextoname(event.ifindex)
            found.setdefault(name, []).append(_address(event.address))
    except OSError as exc:
        raise RuntimeFailure(f"cannot list local addresses over netlink: {exc}") from exc
    return found


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> IPAddress:
    """Parsed once per address: the same few come back in every dump."""
    return ipaddress.ip_address(text)


def find_interface(addresses: dict[str, list[IPAddress]], ip: IPAddress) -> str | None:
    """The first interface (in `ip` order) holding `ip`, or None (pure)."""
    return next((name for name, addrs in addresses.items() if ip in addrs), None)


def interface_of(ip: IPAddress) -> str | None:
    """The local interface holding `ip`, or None when no interface has it."""
    return find_interface(local_addresses(), ip)
