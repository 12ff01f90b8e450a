"""The standing nftables table that forwards a draining peer's connections back to it (pure: the
rulesets; edges: `install`, `arm_takeover`, `disarm_takeover`, `forwarding_now`, run through `nft`)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from vipdrain import vrrp
from vipdrain.model import IPAddress, JobConfig, Vip
from vipdrain.names import INTERFACE_NAME
from vipdrain.preserve.flows import Flow, own_flows, read_proc_tcp
from vipdrain.preserve.notice import MAGIC, NOTICE_TTL
from vipdrain.preserve.tunnel import (
    TUNNEL_DEVICE,
    Tunnel,
    loose_rp_filter,
    peers_by_mac,
    remove_tunnel_argv,
    tunnel_commands,
    tunnel_mac,
    tunnel_problems,
)
from vipdrain.verdicts import PeerAdvert
from vipdrain.vrrp.timing import takeover_bound

log = logging.getLogger("vipdrain.preserve")

#: The standing nftables table on every VM with preserve_connections on (netdev family: ingress).
TABLE = "vipdrain_preserve"
TABLE_FAMILY = "netdev"
#: Ingress hook priority of our chains; ingress chains of other tables order around it.
INGRESS_PRIORITY = -100
#: Connections started on the new master during the grace period it remembers at most; beyond
#: that, a new local connection would be taken for an old one (about 13,000 new connections a
#: second over a 30 s grace period).
LOCAL_FLOWS_MAX = 524288
#: How much longer than the grace period a remembered local connection is kept: arms are only
#: refreshed while the old master still holds the VIP, so they end within the grace period of
#: the takeover, before any connection started after it is forgotten.
LOCAL_FLOW_SLACK = 10.0
#: How long a remembered local connection stays remembered once the client sent FIN or RST:
#: long enough for the last packets of the close, short enough that a client port reused for a
#: connection on the old master is not kept here (where a TIME_WAIT socket of the same 4-tuple
#: would answer it with bare ACKs until the client times out: captured at 1,000 req/s).
LOCAL_FLOW_LINGER = 2.0
#: Per-interface set of the MACs this VM forwards to (see `forwarder_ruleset`).
FORWARD_MACS = "fwdmacs"
NFT_TIMEOUT = 10.0

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

Runner = Callable[[Sequence[str], str | None], subprocess.CompletedProcess[str]]


def _ip_keyword(family: int) -> str:
    return "ip" if family == 4 else "ip6"


def _ttl_keyword(family: int) -> str:
    return "ip ttl" if family == 4 else "ip6 hoplimit"


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


@dataclass(frozen=True)
class Forwarder:
    """What the standing table needs: VIPs per interface, who may arm them, for how long."""

    #: interface -> (its MAC, the VIPs on it)
    interfaces: Mapping[str, tuple[str, tuple[Vip, ...]]]
    peers: tuple[IPAddress, ...]
    port: int
    grace: float
    #: Where forwarded packets go: None at layer 2 (straight to the old master's MAC on the VIP's
    #: interface), else into this tunnel (vipdrain.preserve.tunnel).
    tunnel: Tunnel | None = None

    @classmethod
    def from_config(cls, cfg: JobConfig, macs: Mapping[str, str]) -> Forwarder:
        """The forwarder of `cfg`, with `macs` (interface -> this VM's MAC on it)."""
        grouped: dict[str, list[Vip]] = {}
        for vip in cfg.vips:
            grouped.setdefault(vip.interface, []).append(vip)
        return cls(
            interfaces={name: (macs[name], tuple(vips)) for name, vips in sorted(grouped.items())},
            peers=tuple(p.address for p in cfg.peers),
            port=cfg.drain.preserve_port,
            grace=cfg.drain.preserve_grace,
            tunnel=Tunnel.from_config(cfg),
        )


def forwarder_ruleset(fw: Forwarder) -> str:
    """The `nft -f` script that (re)creates the standing table in one transaction.

    It starts with `table ...; delete table ...` so that it replaces any older version atomically
    (the first line makes the delete succeed when there is none). Sets and maps are per
    interface (suffix `_<n>`): a VIP is armed only by a notice that came in on its own
    interface, so the MAC recorded is the old master's on the segment the packets go back to.

    With a tunnel, the MAC recorded is the old master's tunnel MAC (a constant per peer, see
    `tunnel_mac`), forwarded frames go into the tunnel device, and a chain on that device sends a
    frame that arrives through it on again if this VM is armed itself (two moves in a row, as a
    frame arriving on the interface would be at layer 2). Frames from a tunnel MAC this VM
    forwards to are never forwarded again, for the same reason as at layer 2.
    """
    tunnel = fw.tunnel
    peer_families = sorted({p.version for p in fw.peers})
    forward_rules: list[str] = []
    lines = [f"table {TABLE_FAMILY} {TABLE} {{}}", f"delete table {TABLE_FAMILY} {TABLE}",
             f"table {TABLE_FAMILY} {TABLE} {{"]
    for fam in [] if tunnel else peer_families:
        elements = ", ".join(str(p) for p in fw.peers if p.version == fam)
        lines.append(f"\tset peers{fam} {{ type ipv{fam}_addr; elements = {{ {elements} }}; }}")
    for n, (interface, (mac, vips)) in enumerate(fw.interfaces.items()):
        if not INTERFACE_NAME.fullmatch(interface):
            raise ValueError(f"interface name {interface!r} cannot go into an nftables rule")
        if not _MAC.match(mac):
            raise ValueError(f"{mac!r} is not the MAC address of {interface}")
        families = sorted({v.family for v in vips})
        # The MACs this VM forwards to: a frame from one of them was forwarded to us and is
        # never sent back (two VMs armed towards each other would bounce it forever).
        lines.append(f"\tset {FORWARD_MACS}_{n} {{ type ether_addr; flags timeout; }}")
        for fam in families:
            # armed: VIP -> the old master's MAC, for `grace`; local: connections started here.
            lines.append(f"\tmap armed{fam}_{n} {{ type ipv{fam}_addr : ether_addr; flags timeout; }}")
            lines.append(f"\tset local{fam}_{n} {{ type ipv{fam}_addr . inet_service . ipv{fam}_addr . inet_service; "
                         f"flags timeout; size {LOCAL_FLOWS_MAX}; }}")
        lines.append(f"\tchain ingress_{n} {{")
        lines.append(f'\t\ttype filter hook ingress device "{interface}" priority {INGRESS_PRIORITY}; policy accept;')
        notice = f"udp dport {fw.port} {{sender}} {{ttl}} {NOTICE_TTL} @th,64,32 {_hex(MAGIC)} {{vip}} "
        for vip in vips:
            this_vip = f"@th,96,{8 * len(vip.address.packed)} {_hex(vip.address.packed)}"
            # (who may arm, its TTL field, what the VIP is armed towards)
            senders = ([(f"{_ip_keyword(p.version)} saddr {p}", _ttl_keyword(p.version), tunnel_mac(p))
                        for p in tunnel.peers] if tunnel else
                       [(f"{_ip_keyword(nf)} saddr @peers{nf}", _ttl_keyword(nf), "ether saddr")
                        for nf in peer_families])
            for sender, ttl, arm_to in senders:
                lines.append(
                    "\t\t" + notice.format(sender=sender, ttl=ttl, vip=this_vip)
                    + f"update @armed{vip.family}_{n} {{ {vip.address} timeout {_ms(fw.grace)} : {arm_to} }} "
                    f"update @{FORWARD_MACS}_{n} {{ {arm_to} timeout {_ms(fw.grace)} }} drop"
                )
        for fam in families:
            ip = _ip_keyword(fam)
            flow = f"{ip} saddr . tcp sport . {ip} daddr . tcp dport"
            lines.append(f"\t\t{ip} daddr @armed{fam}_{n} tcp flags & (syn | ack) == syn "
                         f"update @local{fam}_{n} {{ {flow} timeout {_ms(fw.grace + LOCAL_FLOW_SLACK)} }}")
            # A local connection the client closes or resets is forgotten soon after (the lookup
            # first: only a remembered one is updated, never a forwarded one added).
            linger = (f"\t\t{ip} daddr @armed{fam}_{n} tcp flags & (fin | rst) != 0 {flow} @local{fam}_{n} "
                      f"update @local{fam}_{n} {{ {flow} timeout {_ms(LOCAL_FLOW_LINGER)} }}")
            lines.append(linger)
            forward_rules.append(linger)
            # The map lookup comes first among the statements: no rewrite unless the VIP is armed.
            rule = (f"\t\t{ip} daddr @armed{fam}_{n} tcp flags ! syn {flow} != @local{fam}_{n} "
                    f"ether saddr != @{FORWARD_MACS}_{n} "
                    f"ether daddr set {ip} daddr map @armed{fam}_{n} ether saddr set {tunnel.mac if tunnel else mac} "
                    f'fwd to "{TUNNEL_DEVICE if tunnel else interface}"')
            lines.append(rule)
            forward_rules.append(rule)
        lines.append("\t}")
    if tunnel and forward_rules:
        lines.append("\tchain tunnel {")
        lines.append(f'\t\ttype filter hook ingress device "{TUNNEL_DEVICE}" priority {INGRESS_PRIORITY}; '
                     f"policy accept;")
        lines.extend(forward_rules)
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def interface_numbers(vips: Iterable[Vip]) -> dict[str, int]:
    """The suffix `_<n>` of each interface's chain and maps: interfaces numbered by sorted name,
    as `Forwarder.from_config` orders them."""
    return {name: n for n, name in enumerate(sorted({v.interface for v in vips}))}


def preempted_adverts(vips: Iterable[Vip], latest: Mapping[tuple[int, int], PeerAdvert], own_priority: int,
                      fresh_since: float) -> list[tuple[Vip, PeerAdvert]]:
    """The VIPs a peer holds that this VM will take by preemption once it advertises
    `own_priority`, each with that peer's latest advert (keyed by VRID and address family, as
    `LiveObserver.latest`): one that arrived at or after `fresh_since` and is below
    `own_priority` but above 0 (priority 0 resigns: that peer is leaving and arms us itself)."""
    found = []
    for vip in vips:
        advert = latest.get((vip.virtual_router_id, vip.family))
        if advert is not None and advert.seen_at >= fresh_since and 0 < advert.priority < own_priority:
            found.append((vip, advert))
    return found


def takeover_arms(preempted: Iterable[tuple[Vip, PeerAdvert]], tunnel: Tunnel | None = None,
                  peer_macs: Mapping[str, IPAddress] | None = None) -> list[tuple[Vip, str]]:
    """Each `preempted_adverts` VIP with the MAC its connections go back to: the peer's own
    (the one clients' packets go to now) at layer 2, its tunnel MAC with a `tunnel`.

    Through the tunnel the advert must name a peer: by its source address, or - an IPv6
    advert comes from a link-local address - by its MAC (`peer_macs`, `peers_by_mac`). A VIP
    whose peer cannot be named is left out: its connections are reset, as without preservation.
    """
    peer_macs = peer_macs or {}
    arms = []
    for vip, advert in preempted:
        if tunnel is None:
            if _MAC.match(advert.mac):
                arms.append((vip, advert.mac))
            continue
        peer = advert.source if advert.source in tunnel.peers else (
            peer_macs.get(advert.mac) if advert.source.is_link_local else None)
        if peer is not None:
            arms.append((vip, tunnel_mac(peer)))
    return arms


def arm_ruleset(arms: Iterable[tuple[Vip, str]], numbers: Mapping[str, int], timeout: float,
                flows: Iterable[Flow] = (), existing: Mapping[str, Collection[str]] | None = None) -> str:
    """The `nft -f` script that arms each VIP towards its MAC for `timeout` seconds, as a drain
    notice from that MAC would, and marks `flows` - this VM's own connections to the VIPs - as
    local: they stay here.

    `existing` (set or map name -> its keys, `existing_elements`) lists what is in the table
    already: those elements are deleted and added again in the same transaction. nftables 1.0
    keeps an element's old timeout on `add` (and refuses a new value for a map key), so an arm
    left from an earlier takeover would otherwise run out on its old clock, moments after this
    takeover, and reset the connections it was meant to keep.

    Every other local element of an armed VIP goes: it names a connection that ended here
    (remembered from an earlier arm). Clients reuse a port within seconds once the server closed
    first, and the new connection - on the peer - would then be kept here, in a TIME_WAIT socket
    that answers its packets with bare ACKs until the client times out (seen in CI).
    """
    arms = list(arms)
    existing = existing or {}
    interface_of = {vip.address: vip.interface for vip, _ in arms}
    lines = []
    kept: set[tuple[str, str]] = set()

    def put(name: str, key: str, element: str) -> None:
        if key in existing.get(name, ()):
            lines.append(f"delete element {TABLE_FAMILY} {TABLE} {name} {{ {key} }}")
        lines.append(f"add element {TABLE_FAMILY} {TABLE} {name} {{ {element} }}")

    for vip, mac in arms:
        n = numbers[vip.interface]
        put(f"armed{vip.family}_{n}", str(vip.address), f"{vip.address} timeout {_ms(timeout)} : {mac}")
        put(f"{FORWARD_MACS}_{n}", mac, f"{mac} timeout {_ms(timeout)}")
    for client, cport, address, vport in flows:
        if address in interface_of:
            n = numbers[interface_of[address]]
            key = f"{client} . {cport} . {address} . {vport}"
            put(f"local{address.version}_{n}", key, f"{key} timeout {_ms(timeout + LOCAL_FLOW_SLACK)}")
            kept.add((f"local{address.version}_{n}", key))
    armed_in: dict[str, set[str]] = {}
    for vip, _ in arms:
        armed_in.setdefault(f"local{vip.family}_{numbers[vip.interface]}", set()).add(str(vip.address))
    for name, addresses in sorted(armed_in.items()):
        for key in sorted(existing.get(name, ())):
            # key: client . client port . VIP . port
            if key.split(" . ")[2] in addresses and (name, key) not in kept:
                lines.append(f"delete element {TABLE_FAMILY} {TABLE} {name} {{ {key} }}")
    return "".join(line + "\n" for line in lines)


def _elements(listing: str) -> Iterator[tuple[str, str, str | None]]:
    """(set or map name, key, value or None) of every element in `nft -j list table ...`, the
    key written as `arm_ruleset` writes it."""
    for item in json.loads(listing).get("nftables", []):
        obj = item.get("set") or item.get("map")
        if not obj:
            continue
        name = str(obj.get("name", ""))
        for element in obj.get("elem", []):
            key, value = (element[0], str(element[1])) if isinstance(element, list) else (element, None)
            if isinstance(key, dict) and "elem" in key:  # {"elem": {"val": key, "timeout": ..., "expires": ...}}
                key = key["elem"]["val"]
            if isinstance(key, dict) and "concat" in key:
                key = " . ".join(str(part) for part in key["concat"])
            yield name, str(key), value


def existing_elements(listing: str) -> dict[str, set[str]]:
    """Set or map name -> the keys of its elements, written as `arm_ruleset` writes them, from
    `nft -j list table netdev vipdrain_preserve`."""
    found: dict[str, set[str]] = {}
    for name, key, _ in _elements(listing):
        found.setdefault(name, set()).add(key)
    return found


def parse_armed(listing: str) -> dict[str, str]:
    """VIP -> MAC its connections go back to, from `nft -j list table netdev vipdrain_preserve`:
    what this VM forwards right now (arms that expired are not listed)."""
    return {key: value for name, key, value in _elements(listing) if name.startswith("armed") and value is not None}


def run_command(argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `argv` (no shell), output captured; never raises for a non-zero exit."""
    try:
        return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=NFT_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(argv), 127, "", str(exc))


def program(name: str) -> str | None:
    """Where `name` is installed: on PATH, or in the sbin directories a lifecycle script's PATH may lack."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def _nft() -> str:
    return program("nft") or "/usr/sbin/nft"


def _run_tool(run: Runner, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run `argv`, its program found as `program` finds it (a lifecycle script's PATH may lack sbin)."""
    return run([program(argv[0]) or argv[0], *argv[1:]], None)


def install(cfg: JobConfig, run: Runner = run_command, mac_of: Callable[[str], str] = vrrp.local_mac,
            which: Callable[[str], str | None] = program, rp_filter: Callable[[], None] = loose_rp_filter,
            ) -> list[str]:
    """pre-start: (re)create the standing table (and the tunnel device, when forwarding is
    encapsulated) from `cfg`, or remove them when preservation is off.

    Logs what it did; returns warnings. Without the table this VM simply does not forward, as
    without the feature, so a failure is a warning naming what is missing, not a failed deploy;
    whatever was half made is removed.
    """
    if not cfg.drain.preserve_connections:
        remove_forwarder(run)
        return []
    if not cfg.peers:
        log.info("connection preservation: no peers, nothing to forward to")
        remove_forwarder(run)
        return []
    try:
        macs = {vip.interface: mac_of(vip.interface) for vip in cfg.vips}
        fw = Forwarder.from_config(cfg, macs)
        script = forwarder_ruleset(fw)
    except (OSError, ValueError) as exc:
        return [f"connection preservation is off on this VM: {exc}"]
    needed = ["nft", "ip", "bridge"] if fw.tunnel else ["nft"]
    missing = [name for name in needed if which(name) is None]
    if missing:
        remove_forwarder(run)
        return [f"connection preservation is off on this VM: {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not installed (packages nftables, iproute2)"]
    # The table goes first: its chain on the tunnel device must not outlive the device.
    remove_forwarder(run)
    if fw.tunnel:
        problem = _create_tunnel(fw.tunnel, any(v.family == 4 for v in cfg.vips), run, rp_filter)
        if problem:
            remove_forwarder(run)
            return [f"connection preservation is off on this VM: {problem}"]
    done = run([_nft(), "-f", "-"], script)
    if done.returncode != 0:
        remove_forwarder(run)
        return [f"connection preservation is off on this VM: nft -f failed: {done.stderr.strip()}"]
    log.info("connection preservation ready: nft table %s %s forwards the connections of a draining peer "
             "for %g s (drain notices on UDP port %d; %s)", TABLE_FAMILY, TABLE, cfg.drain.preserve_grace,
             cfg.drain.preserve_port,
             f"encapsulated in VXLAN on UDP port {fw.tunnel.port}, device {TUNNEL_DEVICE}" if fw.tunnel
             else "at layer 2")
    return []


def _create_tunnel(tunnel: Tunnel, ipv4_inside: bool, run: Runner, rp_filter: Callable[[], None]) -> str | None:
    """Create the tunnel device from nothing; a sentence saying what failed, or None."""
    problems = tunnel_problems(tunnel)
    if problems:
        return "; ".join(problems)
    for argv in tunnel_commands(tunnel, ipv4_inside):
        done = _run_tool(run, argv)
        if done.returncode != 0:
            error = done.stderr.strip()
            if "Unknown device type" in error or "not supported" in error.lower():
                error = "this kernel has no VXLAN support (module vxlan)"
            return f"cannot create the tunnel device {TUNNEL_DEVICE}: `{' '.join(argv)}` failed: {error}"
    try:
        rp_filter()
    except OSError as exc:
        return f"cannot set rp_filter of {TUNNEL_DEVICE} to 2: {exc}"
    return None


def remove_forwarder(run: Runner = run_command) -> None:
    """Delete the standing table and the tunnel device if they exist (only ours: addressed by name)."""
    done = run([_nft(), "delete", "table", TABLE_FAMILY, TABLE], None)
    if done.returncode == 0:
        log.info("removed nft table %s %s", TABLE_FAMILY, TABLE)
    done = _run_tool(run, remove_tunnel_argv())
    if done.returncode == 0:
        log.info("removed the tunnel device %s", TUNNEL_DEVICE)


@dataclass(frozen=True)
class Armed:
    """What `arm_takeover` did: each VIP armed, with the MAC of the master it expects to preempt."""

    arms: tuple[tuple[Vip, str], ...] = ()
    warnings: tuple[str, ...] = ()


def arm_takeover(cfg: JobConfig, latest: Mapping[tuple[int, int], PeerAdvert], own_priority: int,
                 fresh_since: float, run: Runner = run_command, read: Callable[[int], str] = read_proc_tcp,
                 ) -> Armed:
    """Before this VM releases a hold (post-start, undrain) and may take VIPs from a running peer
    by preemption: arm its own table for them, towards that peer. Never raises.

    Preemption is no drain: the peer keeps serving, sends no notice, and its clients' packets
    would follow this VM's gratuitous ARP into resets. Armed first, this VM sends them back to
    the peer (which keeps the VIP on `lo`, see vipdrain.vipaddr) for `preserve_grace` after the
    takeover, and keeps its own new connections. If the takeover does not happen, the caller
    takes the arm back (`disarm_takeover`): left armed, this VM would black-hole that peer's
    connections if it took the VIP over after a crash of that peer.
    """
    if not cfg.drain.preserve_connections or not cfg.peers:
        return Armed()
    preempted = preempted_adverts(cfg.vips, latest, own_priority, fresh_since)
    tunnel = Tunnel.from_config(cfg)
    peer_macs: dict[str, IPAddress] = {}
    if tunnel is not None:
        # One lookup per interface for every MAC of a link-local advert (IPv6): at most one ARP round each.
        wanted: dict[str, set[str]] = {}
        for vip, advert in preempted:
            if advert.source.is_link_local and advert.mac:
                wanted.setdefault(vip.interface, set()).add(advert.mac)
        for interface, macs in wanted.items():
            peer_macs |= peers_by_mac(tunnel, interface, macs)
    arms = takeover_arms(preempted, tunnel, peer_macs)
    if not arms:
        return Armed()
    timeout = cfg.drain.preserve_grace + takeover_bound(cfg.advert_int)
    # Connections this VM still has to the VIPs (served through a peer's forwarding since it
    # last held them) come straight here after the takeover: they must not be sent away. Not
    # TIME_WAIT ones: those are over, and a client reusing the port has its new connection on the peer.
    flows = own_flows([vip.address for vip, _ in arms], time_wait=False, read=read)
    # Twice at most: an element that runs out between the listing and the transaction fails its delete.
    for _ in range(2):
        listing = run(list_table_argv(), None)
        try:
            existing = existing_elements(listing.stdout) if listing.returncode == 0 else {}
        except (ValueError, KeyError, TypeError, IndexError):
            existing = {}
        done = run([_nft(), "-f", "-"], arm_ruleset(arms, interface_numbers(cfg.vips), timeout, flows, existing))
        if done.returncode == 0:
            break
    if done.returncode != 0:
        return Armed(warnings=(f"connection preservation: cannot arm the takeover of "
                               f"{', '.join(str(v.address) for v, _ in arms)}: nft -f failed: {done.stderr.strip()}",))
    log.info("this VM will take %s over by preemption: connections to it are sent back to %s for %g s "
             "(%d connections of its own stay here)",
             ", ".join(str(v.address) for v, _ in arms), ", ".join(sorted({m for _, m in arms})), timeout, len(flows))
    return Armed(arms=tuple(arms))


def disarm_argv(vip: Vip, numbers: Mapping[str, int]) -> list[str]:
    """The command that removes `vip`'s arm (fails when there is none)."""
    return [_nft(), "delete", "element", TABLE_FAMILY, TABLE, f"armed{vip.family}_{numbers[vip.interface]}",
            f"{{ {vip.address} }}"]


def disarm_takeover(cfg: JobConfig, arms: Iterable[tuple[Vip, str]], run: Runner = run_command) -> list[str]:
    """Take back the takeover arms of VIPs this VM did not take after all. Returns warnings; never raises.

    Only an arm still pointing at the MAC it was armed with goes: one that ran out is gone
    already, and one a drain notice set since (towards another VM) belongs to that drain.
    """
    arms = list(arms)
    if not arms:
        return []
    listing = run(list_table_argv(), None)
    try:
        now = parse_armed(listing.stdout) if listing.returncode == 0 else None
    except (ValueError, KeyError, TypeError):
        now = None
    if now is None:
        return [f"connection preservation: cannot read the table to disarm the takeover of "
                f"{', '.join(str(v.address) for v, _ in arms)}: {listing.stderr.strip() or 'unexpected listing'}"]
    numbers = interface_numbers(cfg.vips)
    warnings = []
    for vip, mac in arms:
        if now.get(str(vip.address)) != mac:
            continue
        done = run(disarm_argv(vip, numbers), None)
        if done.returncode != 0:
            warnings.append(f"connection preservation: cannot disarm the takeover of {vip.address}: "
                            f"nft failed: {done.stderr.strip()}")
        else:
            log.info("%s was not taken over: its connections are no longer sent back to %s", vip.address, mac)
    return warnings


def list_table_argv() -> list[str]:
    """The command that lists the standing table (arms included) as JSON."""
    return [_nft(), "-j", "list", "table", TABLE_FAMILY, TABLE]


def forwarding_now(cfg: JobConfig, run: Runner = run_command) -> dict[str, str]:
    """VIP -> where its old connections go right now (`vipdrain status`): the old master's MAC
    at layer 2, its address through the tunnel; {} when preservation is off or the table
    cannot be read."""
    if not cfg.drain.preserve_connections:
        return {}
    listing = run(list_table_argv(), None)
    try:
        armed = parse_armed(listing.stdout) if listing.returncode == 0 else {}
    except (ValueError, KeyError, TypeError):  # not the listing this nft version was expected to give
        return {}
    tunnel = Tunnel.from_config(cfg)
    peer_of = {mac: str(peer) for peer, mac in tunnel.peer_macs().items()} if tunnel else {}
    return {vip: peer_of.get(mac, mac) for vip, mac in armed.items()}
