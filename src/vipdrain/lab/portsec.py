"""The lab switch's anti-spoofing, as a cloud enforces it: OpenStack port security (Neutron's
`port_security_enabled` with `allowed_address_pairs`), vSphere's "forged transmits: reject".

Every port of the switch accepts from its host only frames from that host's own MAC, carrying one
of its own addresses or an allowed pair (the VIPs, for the VMs), in IPv4, ARP and IPv6 alike -
as Neutron's firewall drivers do (`neutron/agent/linux/openvswitch_firewall/firewall.py`: the
"allowed address pairs" flows match `dl_src` and `nw_src`/`arp_spa`/`ipv6_src` together; IPv6
link-local addresses of the port's own MAC are allowed, and the unspecified address for DAD).
Whatever else a host sends is dropped at its port: a frame forwarded at layer 2 with a client's
source address, in particular (vipdrain.preserve's layer-2 mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vipdrain.lab import netns

#: The switch namespace's nftables table (the switch namespace holds nothing else).
TABLE = "lab_port_security"


@dataclass(frozen=True)
class Port:
    """One switch port and what its host may send from: its MAC, its addresses and allowed pairs."""

    name: str
    mac: str
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...] = ()


def port_security_ruleset(ports: Sequence[Port]) -> str:
    """The `nft -f` script of the switch's bridge table: per port, drop any frame from another
    MAC, and any IPv4, ARP or IPv6 packet whose sender is not one of the port's addresses
    (IPv6: or link-local, or unspecified for duplicate address detection)."""
    lines = [f"table bridge {TABLE} {{", "\tchain forward {",
             "\t\ttype filter hook forward priority 0; policy accept;"]
    for port in ports:
        iif = f'iifname "{port.name}"'
        lines.append(f"\t\t{iif} ether saddr != {port.mac} drop")
        v4 = ", ".join(port.ipv4)
        lines.append(f"\t\t{iif} ether type ip ip saddr != {{ {v4} }} drop")
        lines.append(f"\t\t{iif} ether type arp arp saddr ether != {port.mac} drop")
        lines.append(f"\t\t{iif} ether type arp arp saddr ip != {{ {v4} }} drop")
        v6 = ", ".join(["::", "fe80::/10", *port.ipv6])
        lines.append(f"\t\t{iif} ether type ip6 ip6 saddr != {{ {v6} }} drop")
    lines += ["\t}", "}"]
    return "\n".join(lines) + "\n"


def enforce(namespace: str, ports: Sequence[Port]) -> None:
    """Install the anti-spoofing table in the switch's namespace."""
    netns.run(netns.exec_argv(namespace, ["nft", "-f", "-"]), input=port_security_ruleset(ports))
