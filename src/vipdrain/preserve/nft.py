"""Connection-preserving handoff: streams open on a draining VM finish there after the VIP moved.

When the VIP moves, clients' packets follow the new master's MAC. For a connection the old master
accepted, the new master has no socket and answers with a reset. This module keeps such
connections alive for a grace period:

- The **old master** (the drain, once the VIP also sits on `lo`, see vipdrain.vipaddr) sends
  every peer a small *drain notice* - a UDP datagram `VDP1` + the VIP's address bytes, from its
  own address, TTL 255 - and keeps repeating it (a detached `keep` process) while the VIP is still
  on its interface. It stops as soon as the VIP has left: a notice that reached a peer already
  serving the VIP unarmed would make it forward the connections it accepted itself.
- Every **peer** carries one standing nftables table (`netdev vipdrain_preserve`, an ingress chain
  per VIP interface), installed by pre-start. The kernel itself is the listener: a notice from a
  known peer address, with TTL 255 (sent on-link, never routed), *arms* the VIP for
  `preserve_grace` seconds and records the sender's MAC. While a VIP is armed, the VM
    * remembers every connection to it that starts here (a SYN without ACK) and
    * sends every other TCP packet for the VIP - one that is not a SYN and belongs to no
      connection started here - straight back to the old master's MAC (`fwd`, layer 2),
  so its own new connections stay local and the old ones reach the VM whose haproxy has them.
  Arms expire in the kernel: nothing to remove when the grace period ends, no process to leak.

Why not a listener started by keepalived's notify hook on MASTER (and forwarding by policy
routing)? The first packets of the old connections reach the new master within milliseconds of
its gratuitous ARP, and the notify hook alone takes ~90 ms before a listener could even start.
Measured in the lab (2 VMs, 3 raw TCP streams, 50 req/s), arming the forwarding 250 ms after the
takeover: all 3 old streams reset, and 3 connections the new master accepted in those 250 ms were
then forwarded to the old master and reset too; 50 ms after: the streams survived, one short
request did not. Here the notice travels before the resign advert that makes the peer take over
(same sender, same link: wire order), so arming always precedes the takeover. Layer-2 `fwd` in
the ingress hook also needs no `ip_forward`, no ICMP-redirect or rp_filter change, no policy
routing table or moved `local` rule, and works the same for IPv6 VIPs (no global IPv6
forwarding, which would purge RA-learned default routes).

A VIP also moves without a drain when a VM outranks the master (placement `preferred`: the
bootstrap VM after its update or `undrain`). That master keeps serving and sends no notice, so
the VM about to take over arms itself (`arm_takeover`, before it releases its hold) towards the
master's MAC, seen in its adverts, and marks its own connections to the VIP as local. Frames
from a MAC this VM forwards to are never forwarded again: two VMs armed towards each other
(a drain soon after such a takeover) would otherwise bounce a packet between them forever.

A crash failover sends no notice: nothing is armed and clients get a reset at once, as before.
Requirements: the `nft` binary (nftables) with netdev `fwd` (Linux >= 4.5; tested on 6.x), the
old and new master on the same layer-2 segment as the VIP (as VRRP needs anyway), and a network
that lets a VM send frames carrying a client's source address (no anti-spoofing port security).

Entry points (run by vipdrain itself): `python -m vipdrain.preserve keep ...` (the repeater the
drain spawns), `python -m vipdrain.preserve cleanup --root DIR` (stop the repeater, remove the table).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vipdrain import netstate, vrrp
from vipdrain.errors import RuntimeFailure
from vipdrain.layout import Layout
from vipdrain.model import IPAddress, JobConfig, Peer, Vip
from vipdrain.names import INTERFACE_NAME
from vipdrain.procs import read_pid
from vipdrain.verdicts import PeerAdvert

log = logging.getLogger("vipdrain.preserve")

#: The standing nftables table on every VM with preserve_connections on (netdev family: ingress).
TABLE = "vipdrain_preserve"
TABLE_FAMILY = "netdev"
#: Ingress hook priority of our chains; ingress chains of other tables order around it.
INGRESS_PRIORITY = -100
#: First 4 bytes of a drain notice ("VDP" + format version); the VIP's address bytes follow.
MAGIC = b"VDP1"
#: Notices are sent with TTL / hop limit 255 and accepted only so: a routed copy cannot arm.
NOTICE_TTL = 255
#: Copies of the notice sent at once by the drain (the repeater follows every NOTICE_INTERVAL).
NOTICE_BURST = 3
NOTICE_INTERVAL = 0.2
#: Connections started on the new master during the grace period it remembers at most; beyond
#: that, a new local connection would be taken for an old one (about 13,000 new connections a
#: second over a 30 s grace period).
LOCAL_FLOWS_MAX = 524288
#: How much longer than the grace period a remembered local connection is kept: arms are only
#: refreshed while the old master still holds the VIP, so they end within the grace period of
#: the takeover, before any connection started after it is forgotten.
LOCAL_FLOW_SLACK = 10.0
#: Per-interface set of the MACs this VM forwards to (see `forwarder_ruleset`).
FORWARD_MACS = "fwdmacs"
#: TCP states in /proc/net/tcp* without a connection to keep: LISTEN (0A) and CLOSE (07).
_NOT_CONNECTED = {"0A", "07"}
_TIME_WAIT = "06"
#: The repeater announces for the drain's deadline plus this, then gives up.
ANNOUNCE_SLACK = 5.0
NFT_TIMEOUT = 10.0

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

Runner = Callable[[Sequence[str], str | None], subprocess.CompletedProcess[str]]
Sender = Callable[[IPAddress, Sequence[IPAddress], Sequence[IPAddress], int], list[str]]


# ------------------------------------------------------------------------------------------
# Pure: the notice and the standing table
# ------------------------------------------------------------------------------------------


def encode_notice(vip: IPAddress) -> bytes:
    """The drain notice for `vip`: MAGIC then the address bytes (4 or 16), nothing else.

    Fixed offsets, because nftables matches it in the kernel: UDP payload bytes 0-3 are the
    magic (`@th,64,32`), the address starts at byte 4 (`@th,96,...`).
    """
    return MAGIC + vip.packed


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
        )


def forwarder_ruleset(fw: Forwarder) -> str:
    """The `nft -f` script that (re)creates the standing table in one transaction.

    It starts with `table ...; delete table ...` so that it replaces any older version atomically
    (the first line makes the delete succeed when there is none). Sets and maps are per
    interface (suffix `_<n>`): a VIP is armed only by a notice that came in on its own
    interface, so the MAC recorded is the old master's on the segment the packets go back to.
    """
    peer_families = sorted({p.version for p in fw.peers})
    lines = [f"table {TABLE_FAMILY} {TABLE} {{}}", f"delete table {TABLE_FAMILY} {TABLE}",
             f"table {TABLE_FAMILY} {TABLE} {{"]
    for fam in peer_families:
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
        for vip in vips:
            for nf in peer_families:
                lines.append(
                    f"\t\tudp dport {fw.port} {_ip_keyword(nf)} saddr @peers{nf} {_ttl_keyword(nf)} {NOTICE_TTL} "
                    f"@th,64,32 {_hex(MAGIC)} @th,96,{8 * len(vip.address.packed)} {_hex(vip.address.packed)} "
                    f"update @armed{vip.family}_{n} {{ {vip.address} timeout {_ms(fw.grace)} : ether saddr }} "
                    f"update @{FORWARD_MACS}_{n} {{ ether saddr timeout {_ms(fw.grace)} }} drop"
                )
        for fam in families:
            ip = _ip_keyword(fam)
            flow = f"{ip} saddr . tcp sport . {ip} daddr . tcp dport"
            lines.append(f"\t\t{ip} daddr @armed{fam}_{n} tcp flags & (syn | ack) == syn "
                         f"update @local{fam}_{n} {{ {flow} timeout {_ms(fw.grace + LOCAL_FLOW_SLACK)} }}")
            # The map lookup comes first among the statements: no rewrite unless the VIP is armed.
            lines.append(f"\t\t{ip} daddr @armed{fam}_{n} tcp flags ! syn {flow} != @local{fam}_{n} "
                         f"ether saddr != @{FORWARD_MACS}_{n} "
                         f"ether daddr set {ip} daddr map @armed{fam}_{n} ether saddr set {mac} "
                         f'fwd to "{interface}"')
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def interface_numbers(vips: Iterable[Vip]) -> dict[str, int]:
    """The suffix `_<n>` of each interface's chain and maps: interfaces numbered by sorted name,
    as `Forwarder.from_config` orders them."""
    return {name: n for n, name in enumerate(sorted({v.interface for v in vips}))}


def takeover_bound(advert_int: float) -> float:
    """Seconds from a hold's release until keepalived here may take a VIP by preemption: a
    backup that outranks the master ignores its adverts and waits Master_Down_Interval
    (3 x advert_int + skew, skew < advert_int), plus a second for the hold to reach it."""
    return 4 * advert_int + 1.0


def takeover_arms(vips: Iterable[Vip], latest: Mapping[tuple[int, int], PeerAdvert], own_priority: int,
                  fresh_since: float) -> list[tuple[Vip, str]]:
    """The VIPs a peer holds that this VM will take by preemption once it advertises
    `own_priority`, each with that peer's MAC (the one clients' packets go to now).

    A peer counts when its latest advert for the VIP (keyed by VRID and address family, as
    `LiveObserver.latest`) arrived at or after `fresh_since`, came with a MAC, and is below
    `own_priority` but above 0 (priority 0 resigns: it is leaving and arms us itself).
    """
    arms = []
    for vip in vips:
        advert = latest.get((vip.virtual_router_id, vip.family))
        if (advert is not None and advert.seen_at >= fresh_since and _MAC.match(advert.mac)
                and 0 < advert.priority < own_priority):
            arms.append((vip, advert.mac))
    return arms


Flow = tuple[IPAddress, int, IPAddress, int]


def local_flows(proc_net_tcp: str, vips: Iterable[IPAddress], *, time_wait: bool = True) -> list[Flow]:
    """Connections this VM has to `vips`, from /proc/net/tcp or /proc/net/tcp6 text, as the
    local set keys them: (client address, client port, VIP, VIP port). `time_wait=False` leaves
    out connections that are over (TIME_WAIT: the kernel only absorbs stray packets for them).

    Addresses there are 32-bit words printed in host byte order; ports are plain hex.
    """
    wanted = set(vips)
    skip = _NOT_CONNECTED if time_wait else _NOT_CONNECTED | {_TIME_WAIT}
    flows = []
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] in skip:
            continue
        (local, lport), (remote, rport) = (f.split(":") for f in fields[1:3])
        vip, client = _proc_address(local), _proc_address(remote)
        if vip in wanted:
            flows.append((client, int(rport, 16), vip, int(lport, 16)))
    return flows


def _proc_address(word_hex: str) -> IPAddress:
    raw = b"".join(int(word_hex[i:i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(word_hex), 8))
    address = ipaddress.ip_address(raw)
    # An IPv4 connection accepted by an IPv6 socket is listed in tcp6 as ::ffff:a.b.c.d.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return mapped or address


def arm_ruleset(arms: Iterable[tuple[Vip, str]], numbers: Mapping[str, int], timeout: float,
                flows: Iterable[Flow] = ()) -> str:
    """The `nft -f` script that arms each VIP towards its MAC for `timeout` seconds, as a drain
    notice from that MAC would (an arm that is already there gets the new timeout), and marks
    `flows` - this VM's own connections to the VIPs - as local: they stay here."""
    arms = list(arms)
    interface_of = {vip.address: vip.interface for vip, _ in arms}
    lines = []
    for vip, mac in arms:
        n = numbers[vip.interface]
        lines.append(f"add element {TABLE_FAMILY} {TABLE} armed{vip.family}_{n} "
                     f"{{ {vip.address} timeout {_ms(timeout)} : {mac} }}")
        lines.append(f"add element {TABLE_FAMILY} {TABLE} {FORWARD_MACS}_{n} {{ {mac} timeout {_ms(timeout)} }}")
    for client, cport, address, vport in flows:
        if address in interface_of:
            n = numbers[interface_of[address]]
            lines.append(f"add element {TABLE_FAMILY} {TABLE} local{address.version}_{n} "
                         f"{{ {client} . {cport} . {address} . {vport} timeout {_ms(timeout + LOCAL_FLOW_SLACK)} }}")
    return "".join(line + "\n" for line in lines)


def parse_armed(listing: str) -> dict[str, str]:
    """VIP -> MAC its connections go back to, from `nft -j list table netdev vipdrain_preserve`:
    what this VM forwards right now (arms that expired are not listed)."""
    found = {}
    for item in json.loads(listing).get("nftables", []):
        armed = item.get("map")
        if not armed or not armed.get("name", "").startswith("armed"):
            continue
        for key, mac in armed.get("elem", []):
            # A plain address, or {"elem": {"val": address, "timeout": ..., "expires": ...}}.
            found[str(key["elem"]["val"] if isinstance(key, dict) else key)] = str(mac)
    return found


def notice_targets(source: IPAddress, peers: Iterable[Peer]) -> list[IPAddress]:
    """Peers a notice can reach from `source`: those of its address family."""
    return [p.address for p in peers if p.address.version == source.version]


def notice_source(cfg: JobConfig) -> IPAddress:
    """The address notices come from: the one peers know this VM by (as for VRRP adverts)."""
    return cfg.source_address or cfg.instance.ip


# ------------------------------------------------------------------------------------------
# Edges: nft, the notice sender, the repeater process
# ------------------------------------------------------------------------------------------


def run_command(argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `argv` (no shell), output captured; never raises for a non-zero exit."""
    try:
        return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=NFT_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(argv), 127, "", str(exc))


def _nft() -> str:
    return shutil.which("nft") or "/usr/sbin/nft"


def install(cfg: JobConfig, run: Runner = run_command, mac_of: Callable[[str], str] = vrrp.local_mac) -> list[str]:
    """pre-start: (re)create the standing table from `cfg`, or remove it when preservation is off.

    Logs what it did; returns warnings. Without the table this VM simply does not forward, as
    without the feature, so a failure is a warning, not a failed deploy.
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
        script = forwarder_ruleset(Forwarder.from_config(cfg, macs))
    except (OSError, ValueError) as exc:
        return [f"connection preservation is off on this VM: {exc}"]
    done = run([_nft(), "-f", "-"], script)
    if done.returncode != 0:
        return [f"connection preservation is off on this VM: nft -f failed: {done.stderr.strip()}"]
    log.info("connection preservation ready: nft table %s %s forwards the connections of a draining peer "
             "for %g s (drain notices on UDP port %d)", TABLE_FAMILY, TABLE, cfg.drain.preserve_grace,
             cfg.drain.preserve_port)
    return []


def remove_forwarder(run: Runner = run_command) -> None:
    """Delete the standing table if it exists (only ours: addressed by family and name)."""
    done = run([_nft(), "delete", "table", TABLE_FAMILY, TABLE], None)
    if done.returncode == 0:
        log.info("removed nft table %s %s", TABLE_FAMILY, TABLE)


def read_proc_tcp(version: int) -> str:
    """/proc/net/tcp (4) or /proc/net/tcp6 (6) of this network namespace; "" when unreadable."""
    try:
        return Path(f"/proc/net/tcp{'6' if version == 6 else ''}").read_text()
    except OSError:
        return ""


def arm_takeover(cfg: JobConfig, latest: Mapping[tuple[int, int], PeerAdvert], own_priority: int,
                 fresh_since: float, run: Runner = run_command, read: Callable[[int], str] = read_proc_tcp,
                 ) -> list[str]:
    """Before this VM releases a hold (post-start, undrain) and may take VIPs from a running peer
    by preemption: arm its own table for them, towards that peer. Returns warnings; never raises.

    Preemption is no drain: the peer keeps serving, sends no notice, and its clients' packets
    would follow this VM's gratuitous ARP into resets. Armed first, this VM sends them back to
    the peer (which keeps the VIP on `lo`, see vipdrain.vipaddr) for `preserve_grace` after the
    takeover, and keeps its own new connections. If the peer crashes within that window, its
    old connections time out instead of being reset.
    """
    if not cfg.drain.preserve_connections or not cfg.peers:
        return []
    arms = takeover_arms(cfg.vips, latest, own_priority, fresh_since)
    if not arms:
        return []
    timeout = cfg.drain.preserve_grace + takeover_bound(cfg.advert_int)
    # Connections this VM still has to the VIPs (served through a peer's forwarding since it
    # last held them) come straight here after the takeover: they must not be sent away.
    flows = own_flows([vip.address for vip, _ in arms], read=read)
    done = run([_nft(), "-f", "-"], arm_ruleset(arms, interface_numbers(cfg.vips), timeout, flows))
    if done.returncode != 0:
        return [f"connection preservation: cannot arm the takeover of {', '.join(str(v.address) for v, _ in arms)}: "
                f"nft -f failed: {done.stderr.strip()}"]
    log.info("this VM will take %s over by preemption: connections to it are sent back to %s for %g s "
             "(%d connections of its own stay here)",
             ", ".join(str(v.address) for v, _ in arms), ", ".join(sorted({m for _, m in arms})), timeout, len(flows))
    return []


def own_flows(vips: Iterable[IPAddress], *, time_wait: bool = True,
              read: Callable[[int], str] = read_proc_tcp) -> list[Flow]:
    """This VM's connections to `vips`, over IPv4 and IPv6 (see `local_flows`)."""
    wanted = list(vips)
    return [f for version in (4, 6) for f in local_flows(read(version), wanted, time_wait=time_wait)]


def open_connections(vips: Iterable[IPAddress], read: Callable[[int], str] = read_proc_tcp) -> int:
    """How many connections to `vips` this VM still serves (TIME_WAIT ones are over)."""
    return len(own_flows(vips, time_wait=False, read=read))


def list_table_argv() -> list[str]:
    """The command that lists the standing table (arms included) as JSON."""
    return [_nft(), "-j", "list", "table", TABLE_FAMILY, TABLE]


def forwarding_now(cfg: JobConfig, run: Runner = run_command) -> dict[str, str]:
    """VIP -> MAC for every VIP whose old connections this VM sends to another VM right now
    (`vipdrain status`); {} when preservation is off or the table cannot be read."""
    if not cfg.drain.preserve_connections:
        return {}
    listing = run(list_table_argv(), None)
    try:
        return parse_armed(listing.stdout) if listing.returncode == 0 else {}
    except (ValueError, KeyError, TypeError):  # not the listing this nft version was expected to give
        return {}


def send_notices(source: IPAddress, targets: Sequence[IPAddress], vips: Sequence[IPAddress], port: int) -> list[str]:
    """Send one notice per VIP to every target, from `source`, TTL 255; returns problems (never raises)."""
    family = socket.AF_INET if source.version == 4 else socket.AF_INET6
    problems = []
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            if source.version == 4:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, NOTICE_TTL)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, NOTICE_TTL)
            sock.bind((str(source), 0))
            for vip in vips:
                payload = encode_notice(vip)
                for target in targets:
                    try:
                        sock.sendto(payload, (str(target), port))
                    except OSError as exc:
                        problems.append(f"notice for {vip} to {target}: {exc.strerror or exc}")
    except OSError as exc:
        problems.append(f"cannot send notices from {source}: {exc.strerror or exc}")
    return problems


def keeper_pid_file(layout: Layout) -> Path:
    """Pid file of the notice repeater (`python -m vipdrain.preserve keep`)."""
    return layout.run_dir / "preserve-keeper.pid"


def is_keeper_cmdline(args: Sequence[str], root: Path) -> bool:
    """Is `args` (a /proc/PID/cmdline, split) our repeater for the job under `root`?"""
    try:
        i = list(args).index("vipdrain.preserve")
    except ValueError:
        return False
    rest = list(args[i + 1:])
    return rest[:1] == ["keep"] and "--root" in rest and rest[rest.index("--root") + 1:][:1] == [str(root)]


def running_keeper(layout: Layout) -> int | None:
    """The live repeater's pid, checked by its command line (pids are reused)."""
    pid = read_pid(keeper_pid_file(layout))
    if pid is None:
        return None
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    return pid if is_keeper_cmdline(args, layout.root) else None


def _stop_keeper(layout: Layout, timeout: float = 2.0) -> None:
    """SIGTERM the repeater, if it runs, and wait (briefly) until it is gone."""
    pid = running_keeper(layout)
    keeper_pid_file(layout).unlink(missing_ok=True)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and not _is_zombie(pid):
        time.sleep(0.02)
    log.info("stopped the drain-notice repeater (pid %d)", pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2:].startswith(("Z", "X"))


def keeper_argv(cfg: JobConfig, layout: Layout, vips: Sequence[Vip], targets: Sequence[IPAddress]) -> list[str]:
    """Command line of the repeater for `vips` (everything it needs is on it: no config load)."""
    argv = [sys.executable, "-m", "vipdrain.preserve", "keep", "--root", str(layout.root), "--job", layout.job,
            "--source", str(notice_source(cfg)), "--port", str(cfg.drain.preserve_port),
            "--announce-for", f"{cfg.drain.timeout + ANNOUNCE_SLACK:g}"]
    for target in targets:
        argv += ["--peer", str(target)]
    for vip in vips:
        argv += ["--vip", f"{vip.address},{vip.interface}"]
    return argv


def _spawn_detached(argv: Sequence[str]) -> int:
    """Start `argv` in its own session with no inherited descriptors: BOSH reads the drain's
    stdout until it closes, so the repeater must not hold it."""
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
    return proc.pid


def start_handoff(
    cfg: JobConfig,
    layout: Layout,
    vips: Sequence[Vip],
    send: Sender = send_notices,
    spawn: Callable[[Sequence[str]], int] = _spawn_detached,
) -> list[str]:
    """Old master, in the drain: announce that `vips` (held here, already copied to `lo`) are
    about to be handed over gracefully. Call it after the `lo` copies exist and BEFORE the resign
    advert: a peer must be armed before it takes over. Logs what it did; returns warnings.

    Sends NOTICE_BURST notices at once, then leaves a detached repeater that sends one every
    NOTICE_INTERVAL while a VIP is still on its interface (the peers' arms then last
    `preserve_grace` from the takeover). Never raises: the handoff itself does not depend on it.
    """
    if not cfg.drain.preserve_connections or not vips:
        return []
    source = notice_source(cfg)
    targets = notice_targets(source, cfg.peers)
    if not targets:
        return [f"connection preservation: no IPv{source.version} peer to notify; connections will not be kept"]
    addresses = [v.address for v in vips]
    warnings: list[str] = []
    for _ in range(NOTICE_BURST):
        warnings += [p for p in send(source, targets, addresses, cfg.drain.preserve_port) if p not in warnings]
    log.info("drain notice for %s sent to %s: their connections are forwarded here for %g s after the handoff",
             ", ".join(map(str, addresses)), ", ".join(map(str, targets)), cfg.drain.preserve_grace)
    _stop_keeper(layout)
    try:
        pid = spawn(keeper_argv(cfg, layout, vips, targets))
    except OSError as exc:
        return [*warnings, f"drain-notice repeater not started ({exc}); the grace period counts from now"]
    keeper_pid_file(layout).parent.mkdir(parents=True, exist_ok=True)
    keeper_pid_file(layout).write_text(f"{pid}\n")
    return warnings


def end_handoff(layout: Layout) -> None:
    """Undrain, pre-start, or a handoff that failed: stop announcing at once.

    Arms already set on peers run out by themselves within their grace period.
    """
    _stop_keeper(layout)


# ------------------------------------------------------------------------------------------
# The repeater
# ------------------------------------------------------------------------------------------


def announce(
    vips: Sequence[tuple[IPAddress, str]],
    send: Callable[[Sequence[IPAddress]], list[str]],
    addresses: Callable[[], Mapping[str, Sequence[IPAddress]]],
    budget: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = NOTICE_INTERVAL,
) -> list[IPAddress]:
    """Repeat notices for the VIPs still on their interface, until none is or `budget` runs out.

    Returns the VIPs still here at the end (a handoff that did not happen). A VIP that left is
    never announced again: a notice reaching a peer that already serves the VIP could make it
    forward connections it accepted itself.
    """
    deadline = clock() + budget
    pending = list(vips)
    while pending:
        try:
            here = addresses()
        except RuntimeFailure as exc:
            log.warning("cannot list addresses (%s); announcing as before", exc)
        else:
            pending = [(vip, dev) for vip, dev in pending if vip in here.get(dev, ())]
        if not pending or clock() >= deadline:
            break
        for problem in send([vip for vip, _ in pending]):
            log.warning(problem)
        sleep(interval)
    return [vip for vip, _ in pending]


def _keep(args: argparse.Namespace) -> int:
    layout = Layout(root=Path(args.root), job=args.job)
    source = ipaddress.ip_address(args.source)
    targets = [ipaddress.ip_address(p) for p in args.peer]
    vips = []
    for item in args.vip:
        address, _, dev = item.partition(",")
        vips.append((ipaddress.ip_address(address), dev))
    log.info("announcing the drain of %s to %s", ", ".join(str(v) for v, _ in vips), ", ".join(args.peer))
    left = announce(vips, lambda these: send_notices(source, targets, these, args.port),
                    netstate.local_addresses, args.announce_for)
    if left:
        log.warning("gave up announcing after %g s: %s still here (no handoff)", args.announce_for,
                    ", ".join(map(str, left)))
    else:
        log.info("every announced VIP has left this VM; the peers forward its connections for their grace period")
    if read_pid(keeper_pid_file(layout)) == os.getpid():
        keeper_pid_file(layout).unlink(missing_ok=True)
    return 0


def _cleanup(args: argparse.Namespace) -> int:
    end_handoff(Layout(root=Path(args.root), job=args.job))
    remove_forwarder()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """`keep` (the repeater the drain starts) and `cleanup` (undo everything now)."""
    parser = argparse.ArgumentParser(prog="python -m vipdrain.preserve", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("keep", help="repeat drain notices while the VIPs are still here (started by the drain)")
    p.add_argument("--root", required=True)
    p.add_argument("--job", default="keepalived")
    p.add_argument("--source", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--announce-for", type=float, required=True, help="give up after this many seconds")
    p.add_argument("--peer", action="append", required=True)
    p.add_argument("--vip", action="append", required=True, metavar="ADDRESS,INTERFACE")
    p.set_defaults(handler=_keep)
    p = sub.add_parser("cleanup", help="stop the repeater and remove the nft table (undo everything now)")
    p.add_argument("--root", required=True)
    p.add_argument("--job", default="keepalived")
    p.set_defaults(handler=_cleanup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m vipdrain.preserve keep|cleanup ...`."""
    args = build_parser().parse_args(argv)
    layout = Layout(root=Path(args.root), job=args.job)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=_log_handlers(layout))
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


def _log_handlers(layout: Layout) -> list[logging.Handler]:
    """stderr (an operator's cleanup) and the job's vipdrain.log when writable (the repeater has
    no terminal: its stderr is /dev/null)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    try:
        layout.log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(layout.vipdrain_log))
    except OSError:
        pass
    return handlers


if __name__ == "__main__":
    raise SystemExit(main())
