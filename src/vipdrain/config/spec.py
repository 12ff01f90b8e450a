"""The BOSH instance (`spec`) and the other instances of the group (the `keepalived` link)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vipdrain.config.props import Report
from vipdrain.config.schema import TYPE_WORDS, describe, has_type
from vipdrain.config.values import address_problem
from vipdrain.errors import MISSING
from vipdrain.model import InstanceSpec, Peer

LINK = "keepalived"

#: BOSH instance group names; rendered unquoted as keepalived's router_id.
GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def parse_spec(raw: Any, report: Report) -> InstanceSpec | None:
    if not isinstance(raw, Mapping):
        if raw is None:
            report.add("spec", MISSING, "is required: the BOSH instance (name, index, id, bootstrap, ip)")
        else:
            report.add("spec", raw, "must be a map (name, index, id, bootstrap, ip)")
        return None
    before = len(report.problems)

    def field(key: str, expected: str, missing: str) -> Any:
        value = raw.get(key)
        if value is None:
            report.add(f"spec.{key}", MISSING, f"is required: {missing}")
        elif not has_type(value, expected):
            report.add(f"spec.{key}", value, f"must be {TYPE_WORDS[expected]}, not {describe(value)}")
        else:
            return value
        return None

    name = field("name", "string", "the instance group's name")
    if name is not None and not GROUP_NAME.fullmatch(name):
        report.add("spec.name", name, "must be an instance group name (A-Z a-z 0-9 _ . -, at most 63)")
    index = field("index", "integer", "the instance's index")
    if index is not None and index < 0:
        report.add("spec.index", index, "must not be negative")
    instance_id = field("id", "string", "the instance's id")
    bootstrap = field("bootstrap", "boolean", "whether this is the group's bootstrap instance")
    raw_ip = field("ip", "string", "the instance's IP address")
    ip = None
    if raw_ip is not None:
        ip, why = address_problem(raw_ip)
        if why:
            report.add("spec.ip", raw_ip, why)
    extras = {}
    for key in ("az", "deployment"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            report.add(f"spec.{key}", value, f"must be a string, not {describe(value)}")
        extras[key] = value if isinstance(value, str) else ""
    if len(report.problems) > before or ip is None:
        return None
    return InstanceSpec(name=name, index=index, id=instance_id, bootstrap=bootstrap, ip=ip, **extras)


def parse_link(raw: Any, spec: InstanceSpec | None, report: Report) -> list[Peer]:
    """The other instances of the group, from the `keepalived` link (this instance left out)."""
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        report.add("links", raw, "must be a map of link name to link data")
        return []
    link = raw.get(LINK)
    if link is None:
        return []
    instances = link.get("instances") if isinstance(link, Mapping) else None
    if not isinstance(instances, list):
        report.add(f"links.{LINK}.instances", instances if instances is not None else MISSING,
                   "must be a list of the group's instances (address, index, bootstrap, id)")
        return []
    peers = []
    for i, entry in enumerate(instances):
        peer = _parse_link_instance(f"links.{LINK}.instances[{i}]", entry, report)
        if peer is not None and not (spec is not None and _is_self(peer, spec)):
            peers.append(peer)
    return peers


def _parse_link_instance(path: str, entry: Any, report: Report) -> Peer | None:
    if not isinstance(entry, Mapping):
        report.add(path, entry, "must be a map (address, index, bootstrap, id)")
        return None
    raw_address = entry.get("address")
    address, why = address_problem(raw_address) if raw_address is not None else (None, None)
    if raw_address is None:
        report.add(f"{path}.address", MISSING, "is required: the instance's IP address")
    elif why:
        hint = " (with use_dns_addresses, set keepalived.unicast_peers to IP addresses)"
        report.add(f"{path}.address", raw_address, why + hint)
    index, bootstrap, peer_id = entry.get("index"), entry.get("bootstrap", False), entry.get("id", "")
    if index is not None and not has_type(index, "integer"):
        report.add(f"{path}.index", index, f"must be a whole number, not {describe(index)}")
        index = None
    if not isinstance(bootstrap, bool):
        report.add(f"{path}.bootstrap", bootstrap, f"must be a boolean, not {describe(bootstrap)}")
    if not isinstance(peer_id, str):
        report.add(f"{path}.id", peer_id, f"must be a string, not {describe(peer_id)}")
    if address is None or not isinstance(bootstrap, bool) or not isinstance(peer_id, str):
        return None
    return Peer(address=address, index=index, bootstrap=bootstrap, id=peer_id)


def _is_self(peer: Peer, spec: InstanceSpec) -> bool:
    if peer.id and spec.id:
        return peer.id == spec.id
    return peer.address == spec.ip
