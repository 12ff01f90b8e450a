"""The lab switch's anti-spoofing, as a cloud enforces it: OpenStack port security (Neutron's
`port_security_enabled` with `allowed_address_pairs`), vSphere's "forged transmits: reject".

Every port of the switch accepts from its host only frames from that host's own MAC, carrying one
of its own addresses or an allowed pair (the VIPs, for the VMs), in IPv4, ARP and IPv6 alike. This
follows OVN's port security, the logical flows Neutron's OVN driver gets for a port whose
`port_security` is "MAC IP..." (ovn-nb's `port_security` column; the flows as posted to ovs-dev
with the IPv4/IPv6 port-security patch, 2016): ARP only with `arp.sha` the port's MAC and
`arp.spa` one of its addresses; IPv4 only from its addresses; IPv6 only from its addresses, the
link-local address derived from its MAC, or `::` (duplicate address detection); everything else
dropped. Whatever else a host sends is dropped at its port: a frame forwarded at layer 2 with a
client's source address, in particular (vipdrain.preserve's layer-2 mode).
"""

from __future__ import annotations

import ipaddress
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


def link_local(mac: str) -> str:
    """The IPv6 link-local address a host forms from `mac` (modified EUI-64, RFC 4291 appendix A)."""
    octets = bytes.fromhex(mac.replace(":", ""))
    eui = bytes([octets[0] ^ 0x02]) + octets[1:3] + b"\xff\xfe" + octets[3:]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + eui))


def port_security_ruleset(ports: Sequence[Port]) -> str:
    """The `nft -f` script of the switch's bridge table: per port, drop any frame from another
    MAC, and any IPv4, ARP or IPv6 packet whose sender is not one of the port's addresses
    (IPv6: or its MAC's link-local address, or unspecified for duplicate address detection)."""
    lines = [f"table bridge {TABLE} {{", "\tchain forward {",
             "\t\ttype filter hook forward priority 0; policy accept;"]
    for port in ports:
        iif = f'iifname "{port.name}"'
        lines.append(f"\t\t{iif} ether saddr != {port.mac} drop")
        v4 = ", ".join(port.ipv4)
        lines.append(f"\t\t{iif} ether type ip ip saddr != {{ {v4} }} drop")
        lines.append(f"\t\t{iif} ether type arp arp saddr ether != {port.mac} drop")
        lines.append(f"\t\t{iif} ether type arp arp saddr ip != {{ {v4} }} drop")
        v6 = ", ".join(["::", link_local(port.mac), *port.ipv6])
        lines.append(f"\t\t{iif} ether type ip6 ip6 saddr != {{ {v6} }} drop")
    lines += ["\t}", "}"]
    return "\n".join(lines) + "\n"


def enforce(namespace: str, ports: Sequence[Port]) -> None:
    """Install the anti-spoofing table in the switch's namespace."""
    netns.run(netns.exec_argv(namespace, ["nft", "-f", "-"]), input=port_security_ruleset(ports))
