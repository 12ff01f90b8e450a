"""The VIPs (keepalived.vip or keepalived.vips, their VRIDs and interfaces) and the peers adverts
go to; every problem names the VIP's path."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vipdrain.config.props import Props
from vipdrain.config.schema import describe, has_type
from vipdrain.config.values import address_problem, interface_problem
from vipdrain.errors import MISSING
from vipdrain.model import InstanceSpec, IPAddress, Peer, Vip

InterfaceLookup = Callable[[IPAddress], str | None]

VIP_KEYS = ("address", "virtual_router_id", "interface")


@dataclass(frozen=True)
class VipEntry:
    """One VIP as given, before its VRID and interface are resolved."""

    #: Where it was given: `keepalived.vip` or `keepalived.vips[N]`.
    path: str
    position: int
    address: IPAddress
    virtual_router_id: int | None = None
    interface: str | None = None


def vrrp_peers(props: Props, link_peers: list[Peer], spec: InstanceSpec | None) -> list[Peer]:
    """`keepalived.unicast_peers` (enriched with the link's index/bootstrap) or the link's peers."""
    name = "keepalived.unicast_peers"
    raw = props.get(name)
    if not props.is_set(name) or not raw:
        return link_peers
    from_link = {p.address: p for p in link_peers}
    peers: list[Peer] = []
    seen: set[IPAddress] = set()
    for i, value in enumerate(raw):
        addr, why = address_problem(value)
        if addr is not None and addr in seen:
            why = "is listed twice"
        if why or addr is None:
            props.reject_item(name, f"{name}[{i}]", value, why or "is not an IP address")
            continue
        seen.add(addr)
        # The same list can serve every instance of the group: the own address is skipped.
        if spec is None or addr != spec.ip:
            peers.append(from_link.get(addr, Peer(address=addr)))
    return peers


def vip_entries(props: Props) -> list[VipEntry]:
    one, many = "keepalived.vip", "keepalived.vips"
    if props.is_set(one) and props.is_set(many):
        props.reject(many, props.get(many), f"cannot be combined with {one}: give one of them")
        return []
    if props.is_set(one):
        addr, why = address_problem(props.get(one), "a VIP address")
        if why or addr is None:
            props.reject(one, props.get(one), why or "is not an IP address")
            return []
        return [VipEntry(one, 0, addr)]
    if not props.is_set(many):
        if props.ok(one, many):
            props.report.add(one, MISSING, f"is required: the virtual IP address (or a list in {many})")
        return []
    raw = props.get(many)
    if not raw:
        props.reject(many, raw, "must list at least one VIP")
    return [e for i, item in enumerate(raw) if (e := _vip_entry(props, i, item)) is not None]


def _vip_entry(props: Props, position: int, item: Any) -> VipEntry | None:
    many = "keepalived.vips"
    path = f"{many}[{position}]"
    if isinstance(item, str):
        addr, why = address_problem(item, "a VIP address")
        if why or addr is None:
            props.reject_item(many, path, item, why or "is not an IP address")
            return None
        return VipEntry(path, position, addr)
    if not isinstance(item, Mapping):
        props.reject_item(many, path, item, f"must be an address or a map with {', '.join(VIP_KEYS)}")
        return None
    before = props.problem_count()
    suggested = set()
    for key in item:
        if key not in VIP_KEYS:
            close = difflib.get_close_matches(str(key), VIP_KEYS, n=1)
            suggested.update(close)
            hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(VIP_KEYS)})"
            props.reject_item(many, f"{path}.{key}", item[key], f"is not a VIP key{hint}")
    raw_addr = item.get("address")
    addr, why = address_problem(raw_addr, "a VIP address") if raw_addr is not None else (None, None)
    # A misspelt `address` was reported just above; "address is required" would repeat it.
    if raw_addr is None and "address" not in suggested:
        props.reject_item(many, f"{path}.address", MISSING, "is required")
    elif why:
        props.reject_item(many, f"{path}.address", raw_addr, why)
    vrid = item.get("virtual_router_id")
    if vrid is not None and not (has_type(vrid, "integer") and 1 <= vrid <= 255):
        message = "is out of range 1..255" if has_type(vrid, "integer") else (
            f"must be a whole number, not {describe(vrid)}")
        props.reject_item(many, f"{path}.virtual_router_id", vrid, message)
    interface = item.get("interface")
    if interface is not None:
        why = f"must be a string, not {describe(interface)}" if not isinstance(interface, str) else (
            None if interface == "auto" else interface_problem(interface))
        if why:
            props.reject_item(many, f"{path}.interface", interface, why)
    if props.problem_count() > before or addr is None:
        return None
    return VipEntry(path, position, addr, vrid, interface)


def resolve_vips(
    props: Props, entries: list[VipEntry], spec: InstanceSpec | None, interface_of: InterfaceLookup | None
) -> list[tuple[VipEntry, Vip]]:
    """VIPs with names, VRIDs and interface names (`auto` looked up once, from spec.ip)."""
    name = "keepalived.interface"
    default = props.get(name)
    why = interface_problem(default) if default != "auto" else None
    if why:
        props.reject(name, default, why)
    base = props.integer("keepalived.virtual_router_id")
    auto = _AutoInterface(props, spec, interface_of)
    resolved = []
    for entry in entries:
        if entry.interface:
            interface = auto.resolve(f"{entry.path}.interface") if entry.interface == "auto" else entry.interface
        else:
            interface = None if why else auto.resolve(name) if default == "auto" else default
        vrid = entry.virtual_router_id or base + entry.position
        if vrid > 255:
            if props.ok("keepalived.virtual_router_id"):
                props.report.add(entry.path, str(entry.address),
                                 f"gets virtual_router_id {vrid} (keepalived.virtual_router_id {base} + "
                                 f"position {entry.position}), above 255: give it its own virtual_router_id")
            continue
        # An unresolved interface ("", already reported) still lets the other VIP checks run.
        vip = Vip(name=f"vip_{entry.position + 1}", address=entry.address, virtual_router_id=vrid,
                  interface=interface or "")
        resolved.append((entry, vip))
    return resolved


class _AutoInterface:
    """`interface: auto`: the interface holding spec.ip, looked up (and any problem reported) once."""

    def __init__(self, props: Props, spec: InstanceSpec | None, lookup: InterfaceLookup | None) -> None:
        self._props, self._spec, self._lookup = props, spec, lookup
        self._done = False
        self._found: str | None = None

    def resolve(self, path: str) -> str | None:
        if self._spec is None:  # spec.ip is missing or bad, which is reported already
            return None
        if not self._done:
            self._done = True
            found = _lookup_interface(self._lookup, self._spec.ip)
            why = interface_problem(found) if found is not None else None
            if found is None:
                self._props.report.add(path, "auto", f"found no local interface holding spec.ip "
                                       f"{self._spec.ip}: set the interface name")
            elif why:
                self._props.report.add(path, "auto", f"resolved to {found!r}, which {why}")
            else:
                self._found = found
        return self._found


def _lookup_interface(interface_of: InterfaceLookup | None, ip: IPAddress) -> str | None:
    if interface_of is None:
        from vipdrain.netstate import interface_of as default_lookup  # runs `ip`: only when needed

        return default_lookup(ip)
    return interface_of(ip)


def check_vips(
    props: Props,
    resolved: list[tuple[VipEntry, Vip]],
    spec: InstanceSpec | None,
    peers: list[Peer],
    version: int,
) -> None:
    """Problems between VIPs and with the group's own addresses; each names the VIP's path."""
    first_at: dict[IPAddress, str] = {}
    vrid_owner: dict[tuple[str, int, int], Vip] = {}
    peer_at = {p.address: p for p in peers}
    vrids_known = props.ok("keepalived.virtual_router_id")
    for entry, vip in resolved:
        shown = str(vip.address)
        if vip.address in first_at:
            props.report.add(entry.path, shown, f"is listed twice (also {first_at[vip.address]})")
            continue
        first_at[vip.address] = entry.path
        if spec is not None and vip.address == spec.ip:
            props.report.add(entry.path, shown, "is this instance's own address (spec.ip); a VIP must be "
                             "an address no VM owns")
        elif vip.address in peer_at:
            props.report.add(entry.path, shown, f"is the address of a peer ({_peer_label(peer_at[vip.address])});"
                             " a VIP must be an address no VM owns")
        if vip.family == 6 and version == 2 and props.ok("keepalived.vrrp_version"):
            props.report.add(entry.path, shown, "is IPv6, which needs VRRP version 3 "
                             "(keepalived.vrrp_version is 2)")
        key = (vip.interface, vip.family, vip.virtual_router_id)
        if key in vrid_owner and vrids_known and vip.interface:
            other = vrid_owner[key]
            props.report.add(entry.path, shown, f"has virtual_router_id {vip.virtual_router_id}, already used "
                             f"by {other.name} ({other.address}) on {vip.interface} (IPv{vip.family}): "
                             "VRIDs must differ per interface and address family")
        vrid_owner.setdefault(key, vip)


def _peer_label(peer: Peer) -> str:
    return f"instance {peer.index}" if peer.index is not None else str(peer.address)


def source_address(props: Props, vips: tuple[Vip, ...]) -> IPAddress | None:
    name = "keepalived.source_address"
    value = props.get(name)
    if value is None:
        return None
    addr, why = address_problem(value)
    mismatch = next((v for v in vips if addr is not None and v.family != addr.version), None)
    if addr is not None and mismatch is not None:
        why = (f"is IPv{addr.version} but {mismatch.name} ({mismatch.address}) is IPv{mismatch.family}: one "
               "source address serves every VIP (leave it unset to mix address families)")
    elif addr is not None and any(v.address == addr for v in vips):
        why = "is one of the VIPs; adverts must come from the VM's own address"
    if why:
        props.reject(name, value, why)
        return None
    return addr


def check_unicast_peers(props: Props, resolved: list[tuple[VipEntry, Vip]], peers: list[Peer]) -> None:
    if not peers:
        props.reject("keepalived.unicast", True, "needs peers: the keepalived link lists no other instance "
                     "and keepalived.unicast_peers is empty")
        return
    families = {p.address.version for p in peers}
    for entry, vip in resolved:
        if vip.family not in families:
            props.report.add(entry.path, str(vip.address), f"is IPv{vip.family} but no unicast peer is: "
                             f"list IPv{vip.family} peers in keepalived.unicast_peers")
