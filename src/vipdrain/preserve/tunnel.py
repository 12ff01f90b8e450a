"""The tunnel that carries forwarded packets between group members (`preserve_forwarding:
encapsulated`, the default): one VXLAN device per VM, point-to-point towards each peer.

Why VXLAN: the forwarded packet keeps the client's source address, which cloud anti-spoofing
(OpenStack port security, vSphere forged transmits, AWS source/dest check) drops when a VM sends
it. Inside UDP between the two VMs' own addresses it passes: the outer source is the sender's own.
Of the tunnel types Linux offers, VXLAN is the one that is in the stemcell kernels (Ubuntu's
`linux-modules`, as for every overlay network) and in this lab's kernel, where ipip, gre, fou and
geneve are not built. An nftables `fwd` in the ingress hook can hand a frame to a device but
cannot set tunnel metadata, so the device must know where to send each frame on its own: static
forwarding entries, one per peer, keyed by a MAC derived from the peer's address
(`tunnel_mac`). The new master rewrites the frame's destination to the old master's tunnel MAC
and forwards it into the device; the old master's device decapsulates it and its stack delivers
it to the socket that owns the connection (the VIP's copy on `lo`, vipdrain.vipaddr).

Two details make the receiving side accept an IPv4 packet whose source (a client) is not routed
through the tunnel: the device's `rp_filter` is 2 (loose; the kernel uses the larger of `all`
and the device's value, so this holds with a hardened `all` of 1), and the device carries one
address, RFC 7600's IPv4 dummy address 192.0.0.8/32 with scope host: the kernel drops every
packet that arrives on a device without an IPv4 address whenever rp_filter is on
(`__fib_validate_source`, "last_resort"). Scope host keeps it out of source address selection;
it is never on the wire.

MTU: the tunnel adds 50 bytes (IPv4) or 70 bytes (IPv6) to a frame. The outer IPv4 header is sent
without DF (VXLAN's default), so a full-size segment leaves as two fragments and is reassembled
by the old master: measured in the lab, a 3 MB upload through the tunnel arrived whole, in 2,131
reassembled packets. The network between the VMs must pass fragments of this UDP port.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from vipdrain import rtnl
from vipdrain.model import IPAddress, JobConfig
from vipdrain.preserve.notice import notice_source, notice_targets
from vipdrain.vrrp.neighbours import who_has

#: The tunnel device on every VM (15 characters at most, a kernel limit).
TUNNEL_DEVICE = "vipdrain-tun"
#: VXLAN network identifier of the tunnel; only vipdrain's own devices use it.
TUNNEL_VNI = 7112
#: RFC 7600 IPv4 dummy address: the one IPv4 address the device needs (see the module's docstring).
DUMMY_IPV4 = ipaddress.IPv4Address("192.0.0.8")


def tunnel_mac(address: IPAddress) -> str:
    """The tunnel device's MAC on the VM whose own address is `address`: the same on every VM,
    so a peer's is known without asking. Locally administered, unicast (first byte 0x02); the
    other five bytes are a hash of the address."""
    import hashlib  # here: its OpenSSL binding costs 3 ms of the start-up of a drain, which needs no MAC

    digest = hashlib.blake2s(address.packed, digest_size=5, person=b"vipdrain").digest()
    return ":".join(f"{b:02x}" for b in b"\x02" + digest)


@dataclass(frozen=True)
class Tunnel:
    """One VM's tunnel: its own address, the peers it can reach (same family), the UDP port."""

    local: IPAddress
    peers: tuple[IPAddress, ...]
    port: int

    @classmethod
    def from_config(cls, cfg: JobConfig) -> Tunnel | None:
        """`cfg`'s tunnel, or None when it forwards at layer 2: from the address peers know this
        VM by (as the drain notice) to every peer of that address family."""
        if cfg.drain.preserve_forwarding != "encapsulated":
            return None
        local = notice_source(cfg)
        return cls(local=local, peers=tuple(notice_targets(local, cfg.peers)), port=cfg.drain.preserve_tunnel_port)

    @property
    def mac(self) -> str:
        return tunnel_mac(self.local)

    def peer_macs(self) -> dict[IPAddress, str]:
        """Peer address -> its tunnel MAC."""
        return {peer: tunnel_mac(peer) for peer in self.peers}


def tunnel_problems(tunnel: Tunnel) -> list[str]:
    """What keeps `tunnel` from working, as sentences (pure): no peer, or two addresses whose
    tunnel MACs collide (one in 2^40 per pair, but then packets would go to the wrong VM)."""
    if not tunnel.peers:
        return [f"no IPv{tunnel.local.version} peer to tunnel to"]
    seen: dict[str, IPAddress] = {tunnel.mac: tunnel.local}
    problems = []
    for peer, mac in tunnel.peer_macs().items():
        if mac in seen:
            problems.append(f"the tunnel MACs of {seen[mac]} and {peer} collide ({mac})")
        seen[mac] = peer
    return problems


def tunnel_commands(tunnel: Tunnel, ipv4_inside: bool) -> list[list[str]]:
    """The commands (`ip`, `bridge`) that create `tunnel`'s device from nothing (pure).

    `nolearning`: the forwarding entries are the static ones only, so a frame can never go to a
    VM it was not addressed to. `addrgenmode none`: no link-local address, so the device sends
    nothing of its own (no router or neighbour solicitations into the tunnel). `ipv4_inside`:
    IPv4 packets are carried, so the device needs its dummy address (module docstring).
    """
    dev = TUNNEL_DEVICE
    commands = [
        ["ip", "link", "add", dev, "type", "vxlan", "id", str(TUNNEL_VNI), "local", str(tunnel.local),
         "dstport", str(tunnel.port), "nolearning"],
        ["ip", "link", "set", dev, "address", tunnel.mac, "addrgenmode", "none"],
    ]
    if ipv4_inside:
        commands.append(["ip", "address", "add", f"{DUMMY_IPV4}/32", "dev", dev, "scope", "host", "noprefixroute"])
    commands += [["bridge", "fdb", "append", mac, "dev", dev, "dst", str(peer)]
                 for peer, mac in tunnel.peer_macs().items()]
    commands.append(["ip", "link", "set", dev, "up"])
    return commands


def remove_tunnel_argv() -> list[str]:
    """The command that deletes the tunnel device (fails when there is none)."""
    return ["ip", "link", "delete", TUNNEL_DEVICE]


def loose_rp_filter(proc_sys: Path = Path("/proc/sys")) -> None:
    """Set the tunnel device's rp_filter to 2 (loose), see the module's docstring."""
    (proc_sys / "net/ipv4/conf" / TUNNEL_DEVICE / "rp_filter").write_text("2\n")



#: How long `peers_by_mac` listens for answers when it must ask the link.
PEER_QUERY_TIMEOUT = 0.3


def peers_by_mac(tunnel: Tunnel, interface: str, wanted: Collection[str],
                 table: Callable[[int], list[rtnl.Neighbour]] = rtnl.neighbours,
                 ask: Callable[[str, list[IPAddress], IPAddress | None, float], dict[IPAddress, list[str]]] = who_has,
                 ) -> dict[str, IPAddress]:
    """MAC -> the tunnel peer whose interface has it, for the peers seen on `interface`: enough
    to name every MAC in `wanted` if the link can.

    Why: an IPv6 VRRP advert comes from the sender's link-local address (RFC 5798 5.1.2.1), which
    is none of the addresses the tunnel knows its peers by; its MAC is what ties it to a peer.
    The kernel's neighbour table answers first (any valid entry: peers talk to each other); only
    a MAC it does not name makes this ask the link (ARP or neighbour solicitation, at most
    PEER_QUERY_TIMEOUT s). Never raises: what cannot be learnt is left out.
    """
    family = socket.AF_INET if tunnel.local.version == 4 else socket.AF_INET6
    peers = {str(p): p for p in tunnel.peers}
    found: dict[str, IPAddress] = {}
    try:
        index = socket.if_nametoindex(interface)
        for entry in table(family):
            if entry.ifindex == index and entry.address in peers and entry.state & rtnl.NUD_VALID:
                found[entry.mac] = peers[entry.address]
    except OSError:
        pass
    if set(wanted) - set(found):
        unnamed = [p for p in tunnel.peers if p not in found.values()]
        try:
            answers = ask(interface, unnamed, tunnel.local if tunnel.local.version == 4 else None,
                          PEER_QUERY_TIMEOUT) if unnamed else {}
        except (OSError, ValueError):
            answers = {}
        for peer, macs in answers.items():
            for mac in macs:
                found[mac] = peer
    return found
