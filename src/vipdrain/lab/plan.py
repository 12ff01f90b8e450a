"""The lab's address plan (networks, and the offsets of VMs, VIPs, clients and the observer in them)
and the job-property helpers the cluster and its VMs share.

VM `vmN` is at 192.0.2.(10+N), client `cJ` at 192.0.2.(200+J), the VIPs from 192.0.2.100, the
observer at 192.0.2.250; IPv6 uses the same numbers written in hex digits in 2001:db8::/64.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Mapping
from typing import Any

NET4 = ipaddress.IPv4Network("192.0.2.0/24")
NET6 = ipaddress.IPv6Network("2001:db8::/64")
VM_OFFSET, VIP_OFFSET, CLIENT_OFFSET, OBSERVER_OFFSET = 10, 100, 200, 250
#: IPv6 uses the same numbers written in hex digits (2001:db8::10, ::100, ::200, ::250).
VM_OFFSET6, VIP_OFFSET6, CLIENT_OFFSET6, OBSERVER_OFFSET6 = 0x10, 0x100, 0x200, 0x250
#: The lab's `vipdrain.drain.preserve_grace` (the property's default is 30 s): connection
#: preservation is on by default, and a holder's BOSH drain prints the grace period, which the
#: lab's director then waits, as BOSH does; 30 s per drain would make the suites crawl. Tests of
#: the grace period itself set their own.
LAB_PRESERVE_GRACE = 1


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` merged in: nested mappings merge, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def vip_addresses(properties: Mapping[str, Any]) -> list[str]:
    """The VIP addresses named by job properties (`keepalived.vips` entries or `keepalived.vip`)."""
    ka = properties.get("keepalived") or {}
    entries = ka.get("vips") or ([ka["vip"]] if ka.get("vip") else [])
    out = []
    for entry in entries:
        raw = entry.get("address") if isinstance(entry, Mapping) else entry
        out.append(str(ipaddress.ip_address(str(raw).split("/")[0])))
    return out


def address(ipv6: bool, offset: int) -> str:
    net: ipaddress.IPv4Network | ipaddress.IPv6Network = NET6 if ipv6 else NET4
    return str(net.network_address + offset)
