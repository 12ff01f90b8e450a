"""vipdrain.preserve without root: the notice, the nftables script, the drain's step and the
repeater, with the network and processes replaced by fakes (except where a real child is cheap)."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from fakes import FakeClock, job_config

from vipdrain import preserve, rtnl
from vipdrain.errors import RuntimeFailure
from vipdrain.layout import Layout
from vipdrain.model import DrainSettings, IPAddress, JobConfig, Vip
from vipdrain.verdicts import PeerAdvert

SELF = ipaddress.ip_address("192.0.2.10")
VIP4 = ipaddress.ip_address("192.0.2.100")
VIP6 = ipaddress.ip_address("2001:db8::100")
MAC = "02:00:00:00:00:0a"


def vip(address: IPAddress, vrid: int = 1, interface: str = "eth0") -> Vip:
    return Vip(name=f"vip_{vrid}", address=address, virtual_router_id=vrid, interface=interface)


def make_cfg(vips: Sequence[Vip] = (vip(VIP4),), peers: Sequence[str] = ("192.0.2.11", "192.0.2.12"),
             **drain: object) -> JobConfig:
    # Layer 2 unless a test says otherwise: the encapsulated tests below name it.
    settings = {"preserve_connections": True, "preserve_grace": 30.0, "preserve_forwarding": "layer2", **drain}
    return job_config(vips, peers, drain=DrainSettings(timeout=30.0, **settings))  # type: ignore[arg-type]


def ruleset(cfg: JobConfig, macs: dict[str, str] | None = None) -> str:
    return preserve.forwarder_ruleset(preserve.Forwarder.from_config(cfg, macs or {"eth0": MAC}))


# --- the notice --------------------------------------------------------------------------------


@pytest.mark.parametrize("address", [VIP4, VIP6])
def test_a_notice_is_the_magic_then_the_address_at_the_offsets_the_rule_matches(address: IPAddress) -> None:
    payload = preserve.encode_notice(address)
    # The rule reads `@th,64,32` (UDP payload bytes 0-3) and `@th,96,n` (bytes 4 on): 8-byte UDP header.
    assert payload[:4] == preserve.MAGIC == b"VDP1"
    assert payload[4:] == address.packed
    line = next(ln for ln in ruleset(make_cfg([vip(address)])).splitlines() if "udp dport" in ln)
    assert f"@th,64,32 0x{payload[:4].hex()}" in line
    assert f"@th,96,{8 * len(address.packed)} 0x{address.packed.hex()}" in line


# --- the standing table ------------------------------------------------------------------------


def test_the_table_is_replaced_atomically_and_names_only_what_is_ours() -> None:
    text = ruleset(make_cfg())
    first = text.splitlines()[:3]
    assert first == ["table netdev vipdrain_preserve {}", "delete table netdev vipdrain_preserve",
                     "table netdev vipdrain_preserve {"]
    assert text.count("\ntable ") == 1 and "flush" not in text


def test_an_ipv4_vip_is_armed_by_a_known_peer_on_link_and_forwarded_back_by_mac() -> None:
    lines = [ln.strip() for ln in ruleset(make_cfg()).splitlines()]
    assert "set peers4 { type ipv4_addr; elements = { 192.0.2.11, 192.0.2.12 }; }" in lines
    assert 'type filter hook ingress device "eth0" priority -100; policy accept;' in lines
    assert ("udp dport 7112 ip saddr @peers4 ip ttl 255 @th,64,32 0x56445031 @th,96,32 0xc0000264 "
            "update @armed4_0 { 192.0.2.100 timeout 30000ms : ether saddr } "
            "update @fwdmacs_0 { ether saddr timeout 30000ms } drop") in lines
    assert "set fwdmacs_0 { type ether_addr; flags timeout; }" in lines
    # Connections that start here (SYN without ACK) are remembered past the grace period...
    assert ("ip daddr @armed4_0 tcp flags & (syn | ack) == syn update @local4_0 "
            "{ ip saddr . tcp sport . ip daddr . tcp dport timeout 40000ms }") in lines
    # ... until the client closes or resets them: then for 2 s more (a port reused for a
    # connection elsewhere must not be kept here), and only if remembered (a lookup first) ...
    assert ("ip daddr @armed4_0 tcp flags & (fin | rst) != 0 ip saddr . tcp sport . ip daddr . tcp dport @local4_0 "
            "update @local4_0 { ip saddr . tcp sport . ip daddr . tcp dport timeout 2000ms }") in lines
    # ... every other TCP packet for an armed VIP goes back to the old master, from our MAC,
    # unless it came from a VM we forward to (never bounced back: two VMs armed towards each
    # other would pass it back and forth).
    assert ("ip daddr @armed4_0 tcp flags ! syn ip saddr . tcp sport . ip daddr . tcp dport != @local4_0 "
            "ether saddr != @fwdmacs_0 ether daddr set ip daddr map @armed4_0 "
            "ether saddr set 02:00:00:00:00:0a fwd to \"eth0\"") in lines


def test_an_ipv6_vip_with_ipv4_peers_is_armed_by_an_ipv4_notice() -> None:
    text = ruleset(make_cfg([vip(VIP6)], preserve_grace=12.5, preserve_port=9000))
    assert "set peers6" not in text and "armed4" not in text
    assert ("udp dport 9000 ip saddr @peers4 ip ttl 255 @th,64,32 0x56445031 "
            "@th,96,128 0x20010db8000000000000000000000100 "
            "update @armed6_0 { 2001:db8::100 timeout 12500ms : ether saddr } "
            "update @fwdmacs_0 { ether saddr timeout 12500ms } drop") in text
    assert "ip6 daddr @armed6_0 tcp flags ! syn ip6 saddr . tcp sport . ip6 daddr . tcp dport != @local6_0" in text


def test_ipv6_peers_send_notices_checked_by_hop_limit() -> None:
    text = ruleset(make_cfg([vip(VIP6)], peers=["2001:db8::11"]))
    assert "set peers6 { type ipv6_addr; elements = { 2001:db8::11 }; }" in text
    assert "udp dport 7112 ip6 saddr @peers6 ip6 hoplimit 255 " in text


def test_each_interface_has_its_own_chain_and_maps() -> None:
    other = ipaddress.ip_address("192.0.2.101")
    text = ruleset(make_cfg([vip(VIP4, 1, "eth0"), vip(other, 2, "eth1")]),
                   {"eth0": MAC, "eth1": "02:00:00:00:00:0b"})
    chains = text.split("\tchain ")[1:]
    assert [c.split(" ", 1)[0] for c in chains] == ["ingress_0", "ingress_1"]
    assert 'device "eth0"' in chains[0] and "192.0.2.100 timeout" in chains[0] and "192.0.2.101" not in chains[0]
    assert 'device "eth1"' in chains[1] and "@armed4_1 { 192.0.2.101" in chains[1]
    assert 'ether saddr set 02:00:00:00:00:0b fwd to "eth1"' in chains[1]


@pytest.mark.parametrize(("interface", "mac"), [('eth0" accept', MAC), ("eth0", "02:00:00:00:00:0a; drop")])
def test_names_that_do_not_fit_in_a_rule_are_refused(interface: str, mac: str) -> None:
    with pytest.raises(ValueError):
        ruleset(make_cfg([vip(VIP4, interface=interface)]), {interface: mac})


# --- install (pre-start) -----------------------------------------------------------------------


@dataclass
class FakeRunner:
    returncode: int = 0
    stderr: str = ""
    stdout: str = ""
    calls: list[tuple[list[str], str | None]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(argv), stdin))
        return subprocess.CompletedProcess(list(argv), self.returncode, self.stdout, self.stderr)


def installed(cfg: JobConfig, run: FakeRunner, **options: object) -> list[str]:
    """`preserve.install` with every program present and rp_filter not touched, unless `options` say otherwise."""
    settings = {"mac_of": lambda _dev: MAC, "which": lambda name: f"/usr/sbin/{name}", "rp_filter": lambda: None,
                **options}
    return preserve.install(cfg, run=run, **settings)  # type: ignore[arg-type]


REMOVALS = [["delete", "table", "netdev", "vipdrain_preserve"], ["link", "delete", "vipdrain-tun"]]


def test_install_applies_the_ruleset_in_one_nft_call() -> None:
    run = FakeRunner()
    assert installed(make_cfg(), run) == []
    # Whatever an earlier version left goes first (the table, then a tunnel of the other mode).
    assert [argv[1:] for argv, _ in run.calls[:2]] == REMOVALS
    [(argv, stdin)] = run.calls[2:]
    assert argv[1:] == ["-f", "-"]
    assert stdin == ruleset(make_cfg())


@pytest.mark.parametrize("cfg", [make_cfg(preserve_connections=False), make_cfg(peers=())], ids=["off", "no-peers"])
def test_install_removes_the_table_when_nothing_is_to_forward(cfg: JobConfig) -> None:
    run = FakeRunner(returncode=1, stderr="No such file or directory")
    assert installed(cfg, run) == []
    assert [argv[1:] for argv, _ in run.calls] == REMOVALS


def test_install_problems_are_warnings_not_failures() -> None:
    failing = FakeRunner(returncode=1, stderr="Error: Could not process rule: No such file or directory")
    [warning] = installed(make_cfg(), failing)
    assert "preservation is off" in warning and "Could not process rule" in warning

    def no_mac(dev: str) -> str:
        raise OSError(19, f"No such device: {dev}")

    [warning] = installed(make_cfg(), FakeRunner(), mac_of=no_mac)
    assert "No such device" in warning


@pytest.mark.parametrize(("mode", "absent", "sentence"), [
    ("encapsulated", {"bridge"}, "bridge is not installed (packages nftables, iproute2)"),
    ("encapsulated", {"nft", "ip"}, "nft and ip are not installed"),
    ("layer2", {"nft"}, "nft is not installed"),
])
def test_install_names_the_missing_programs_in_one_sentence(mode: str, absent: set[str], sentence: str) -> None:
    run = FakeRunner()
    [warning] = installed(make_cfg(preserve_forwarding=mode), run,
                          which=lambda name: None if name in absent else f"/usr/sbin/{name}")
    assert warning.startswith("connection preservation is off on this VM: ")
    assert sentence in warning
    assert not any(argv[1:] == ["-f", "-"] for argv, _ in run.calls)


# --- encapsulated forwarding (the default) ------------------------------------------------------

ENCAP = {"preserve_forwarding": "encapsulated", "preserve_tunnel_port": 7113}


def test_a_tunnel_mac_is_the_same_on_every_vm_local_and_unicast() -> None:
    mac = preserve.tunnel_mac(ipaddress.ip_address("192.0.2.11"))
    assert mac == preserve.tunnel_mac(ipaddress.ip_address("192.0.2.11"))
    assert mac.startswith("02:") and len(mac.split(":")) == 6
    others = {preserve.tunnel_mac(ipaddress.ip_address(f"192.0.2.{i}")) for i in range(256)}
    others |= {preserve.tunnel_mac(ipaddress.ip_address(f"2001:db8::{i:x}")) for i in range(256)}
    assert len(others) == 512


def test_encapsulated_notices_arm_towards_the_senders_tunnel_mac_and_frames_go_into_the_tunnel() -> None:
    cfg = make_cfg(**ENCAP)
    lines = [ln.strip() for ln in ruleset(cfg).splitlines()]
    peer11, peer12 = (preserve.tunnel_mac(ipaddress.ip_address(p)) for p in ("192.0.2.11", "192.0.2.12"))
    own = preserve.tunnel_mac(SELF)
    # One notice rule per peer: the arm's value is that peer's tunnel MAC, a constant.
    for address, mac in (("192.0.2.11", peer11), ("192.0.2.12", peer12)):
        assert (f"udp dport 7112 ip saddr {address} ip ttl 255 @th,64,32 0x56445031 @th,96,32 0xc0000264 "
                f"update @armed4_0 {{ 192.0.2.100 timeout 30000ms : {mac} }} "
                f"update @fwdmacs_0 {{ {mac} timeout 30000ms }} drop") in lines
    assert not any(ln.startswith("set peers") for ln in lines)
    forward = ("ip daddr @armed4_0 tcp flags ! syn ip saddr . tcp sport . ip daddr . tcp dport != @local4_0 "
               "ether saddr != @fwdmacs_0 ether daddr set ip daddr map @armed4_0 "
               f'ether saddr set {own} fwd to "vipdrain-tun"')
    # Frames arriving on the interface, and frames arriving through the tunnel (a second move in
    # a row), go on into the tunnel; the SYN rule is on the interface only.
    assert lines.count(forward) == 2
    chains = ruleset(cfg).split("\tchain ")[1:]
    assert [c.split(" ", 1)[0] for c in chains] == ["ingress_0", "tunnel"]
    assert 'device "vipdrain-tun"' in chains[1] and "(syn | ack) == syn" not in chains[1]


def test_the_tunnel_is_created_from_nothing_towards_each_peer_without_learning() -> None:
    tunnel = preserve.Tunnel.from_config(make_cfg(**ENCAP))
    assert tunnel is not None and tunnel.local == SELF
    assert [str(p) for p in tunnel.peers] == ["192.0.2.11", "192.0.2.12"]
    commands = preserve.tunnel_commands(tunnel, ipv4_inside=True)
    assert commands[0] == ["ip", "link", "add", "vipdrain-tun", "type", "vxlan", "id", "7112", "local", "192.0.2.10",
                           "dstport", "7113", "nolearning"]
    assert commands[1] == ["ip", "link", "set", "vipdrain-tun", "address", preserve.tunnel_mac(SELF),
                           "addrgenmode", "none"]
    assert ["ip", "address", "add", "192.0.0.8/32", "dev", "vipdrain-tun", "scope", "host", "noprefixroute"] in commands
    fdb = ["bridge", "fdb", "append", preserve.tunnel_mac(PEER), "dev", "vipdrain-tun", "dst", "192.0.2.11"]
    assert fdb in commands
    assert commands[-1] == ["ip", "link", "set", "vipdrain-tun", "up"]
    # IPv6 inside only: no IPv4 address on the device.
    assert not any("192.0.0.8/32" in c for c in preserve.tunnel_commands(tunnel, ipv4_inside=False))
    assert preserve.Tunnel.from_config(make_cfg()) is None  # layer 2


def test_install_creates_the_tunnel_before_the_table_and_loosens_its_rp_filter() -> None:
    run = FakeRunner()
    loosened = []
    cfg = make_cfg(**ENCAP)
    assert installed(cfg, run, rp_filter=lambda: loosened.append(True)) == []
    names = [argv[0].rsplit("/", 1)[-1] + " " + " ".join(argv[1:3]) for argv, _ in run.calls]
    assert names[:2] == ["nft delete table", "ip link delete"]
    assert names[2] == "ip link add" and names[-1] == "nft -f -"
    assert loosened == [True]
    tunnel = preserve.Tunnel.from_config(cfg)
    assert tunnel is not None
    assert [argv[1:] for argv, _ in run.calls[2:-1]] == [c[1:] for c in preserve.tunnel_commands(tunnel, True)]


def test_a_kernel_without_vxlan_leaves_nothing_half_made_and_says_so() -> None:
    @dataclass
    class NoVxlan(FakeRunner):
        def __call__(self, argv: Sequence[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
            self.calls.append((list(argv), stdin))
            failed = "vxlan" in argv
            return subprocess.CompletedProcess(list(argv), 2 if failed else 0, "",
                                               "Error: Unknown device type." if failed else "")

    run = NoVxlan()
    [warning] = installed(make_cfg(**ENCAP), run)
    assert "this kernel has no VXLAN support (module vxlan)" in warning
    assert not any(argv[1:] == ["-f", "-"] for argv, _ in run.calls)
    assert [argv[1:] for argv, _ in run.calls[-2:]] == REMOVALS


def test_an_rp_filter_that_cannot_be_set_turns_preservation_off() -> None:
    def refused() -> None:
        raise PermissionError(13, "Permission denied")

    run = FakeRunner()
    [warning] = installed(make_cfg(**ENCAP), run, rp_filter=refused)
    assert "rp_filter" in warning and "Permission denied" in warning
    assert [argv[1:] for argv, _ in run.calls[-2:]] == REMOVALS


def test_with_a_tunnel_status_names_the_vm_the_connections_go_to() -> None:
    listing = ('{"nftables": [{"map": {"family": "netdev", "name": "armed4_0", "table": "vipdrain_preserve", '
               '"type": "ipv4_addr", "map": "ether_addr", "elem": [["192.0.2.100", "'
               + preserve.tunnel_mac(PEER) + '"]]}}]}')
    assert preserve.forwarding_now(make_cfg(**ENCAP), run=FakeRunner(stdout=listing)) == {"192.0.2.100": "192.0.2.11"}


def test_a_takeover_through_the_tunnel_arms_towards_the_masters_tunnel_mac() -> None:
    cfg = make_cfg(**ENCAP)
    tunnel = preserve.Tunnel.from_config(cfg)
    arms = takeover_arms(cfg.vips, {(1, 4): advert(mac="")}, 254, 0.0, tunnel)
    assert arms == [(cfg.vips[0], preserve.tunnel_mac(PEER))]
    # A master the tunnel does not reach (not a configured peer) is not armed towards, whatever its MAC.
    stranger = advert(source=ipaddress.ip_address("192.0.2.99"))
    assert takeover_arms(cfg.vips, {(1, 4): stranger}, 254, 0.0, tunnel, {PEER_MAC: PEER}) == []


def test_an_ipv6_advert_from_a_link_local_address_is_tied_to_its_peer_by_its_mac() -> None:
    """RFC 5798 5.1.2.1: IPv6 adverts come from the link-local address, which names no peer."""
    cfg = make_cfg(**ENCAP)
    tunnel = preserve.Tunnel.from_config(cfg)
    v6 = vip(VIP6, vrid=2)
    seen = {(2, 6): advert(vrid=2, source=ipaddress.ip_address("fe80::200:ff:fe00:b"))}
    assert takeover_arms([v6], seen, 254, 0.0, tunnel, {PEER_MAC: PEER}) == [(v6, preserve.tunnel_mac(PEER))]
    # A MAC that names no peer: nothing is armed (its connections are reset, as without preservation).
    assert takeover_arms([v6], seen, 254, 0.0, tunnel, {"02:00:00:00:00:99": PEER}) == []


def neighbour(address: str, mac: str, state: int = 0x02, ifindex: int = 1) -> rtnl.Neighbour:
    return rtnl.Neighbour(address=address, mac=mac, ifindex=ifindex, state=state)


def test_peers_by_mac_reads_the_neighbour_table_and_asks_the_link_only_for_a_mac_it_lacks() -> None:
    tunnel = preserve.Tunnel(local=ipaddress.ip_address("192.0.2.10"), peers=(PEER, ipaddress.ip_address("192.0.2.12")),
                             port=7113)
    table = [neighbour("192.0.2.11", PEER_MAC), neighbour("192.0.2.12", "02:00:00:00:00:0c", state=0x20),  # FAILED
             neighbour("192.0.2.99", "02:00:00:00:00:63")]
    asked: list[tuple[str, list[IPAddress], IPAddress | None]] = []

    def ask(interface: str, targets: list[IPAddress], sender: IPAddress | None, timeout: float
            ) -> dict[IPAddress, list[str]]:
        asked.append((interface, targets, sender))
        return {ipaddress.ip_address("192.0.2.12"): ["02:00:00:00:00:0d"]}

    lo = "lo"  # an interface that exists everywhere; ifindex 1
    assert preserve.peers_by_mac(tunnel, lo, [PEER_MAC], table=lambda _: table, ask=ask) == {PEER_MAC: PEER}
    assert asked == []
    found = preserve.peers_by_mac(tunnel, lo, ["02:00:00:00:00:0d"], table=lambda _: table, ask=ask)
    assert found == {PEER_MAC: PEER, "02:00:00:00:00:0d": ipaddress.ip_address("192.0.2.12")}
    assert asked == [(lo, [ipaddress.ip_address("192.0.2.12")], tunnel.local)]  # only the peer it could not name


def test_peers_by_mac_never_raises() -> None:
    tunnel = preserve.Tunnel(local=ipaddress.ip_address("192.0.2.10"), peers=(PEER,), port=7113)

    def broken(*_: object) -> dict[IPAddress, list[str]]:
        raise PermissionError(1, "Operation not permitted")

    assert preserve.peers_by_mac(tunnel, "no-such-if0", [PEER_MAC], ask=broken) == {}


# --- the takeover by preemption (post-start, undrain) -------------------------------------------

PEER = ipaddress.ip_address("192.0.2.11")
PEER_MAC = "02:00:00:00:00:0b"


def takeover_arms(vips: list[Vip], latest: dict[tuple[int, int], PeerAdvert], own_priority: int,
                  fresh_since: float, tunnel: preserve.Tunnel | None = None,
                  peer_macs: dict[str, IPAddress] | None = None) -> list[tuple[Vip, str]]:
    preempted = preserve.preempted_adverts(vips, latest, own_priority, fresh_since)
    return preserve.takeover_arms(preempted, tunnel, peer_macs)


def advert(vrid: int = 1, priority: int = 150, seen_at: float = 100.0, mac: str = PEER_MAC,
           source: IPAddress = PEER) -> PeerAdvert:
    return PeerAdvert(vrid=vrid, version=3, priority=priority, source=source, seen_at=seen_at, mac=mac)


def test_a_vip_is_armed_towards_the_master_this_vm_will_outrank() -> None:
    v4, v6 = vip(VIP4, vrid=1), vip(VIP6, vrid=2)
    latest = {(1, 4): advert(vrid=1), (2, 6): advert(vrid=2, source=ipaddress.ip_address("2001:db8::11"))}
    assert takeover_arms([v4, v6], latest, own_priority=200, fresh_since=99.0) == [
        (v4, PEER_MAC), (v6, PEER_MAC)]


@pytest.mark.parametrize(("seen", "why"), [
    (advert(priority=200), "equal priority: keepalived does not preempt"),
    (advert(priority=220), "the master outranks us"),
    (advert(priority=0), "priority 0: the master resigns and arms us by its own notice"),
    (advert(seen_at=90.0), "too old: that master may be gone"),
    (advert(mac=""), "no MAC: nowhere to send its packets"),
    (advert(vrid=2), "another VRRP instance"),
])
def test_no_arm_unless_a_live_master_will_be_preempted(seen: PeerAdvert, why: str) -> None:
    latest = {(seen.vrid, 4): seen}
    assert takeover_arms([vip(VIP4)], latest, own_priority=200, fresh_since=99.0) == [], why


def test_the_arm_script_names_each_vips_own_map_and_outlasts_the_takeover() -> None:
    a, b = vip(VIP4, vrid=1, interface="eth1"), vip(VIP6, vrid=2, interface="eth0")
    numbers = preserve.interface_numbers([a, b])
    assert numbers == {"eth0": 0, "eth1": 1}
    script = preserve.arm_ruleset([(a, PEER_MAC), (b, PEER_MAC)], numbers, timeout=34.5)
    assert script.splitlines() == [
        f"add element netdev vipdrain_preserve armed4_1 {{ {VIP4} timeout 34500ms : {PEER_MAC} }}",
        f"add element netdev vipdrain_preserve fwdmacs_1 {{ {PEER_MAC} timeout 34500ms }}",
        f"add element netdev vipdrain_preserve armed6_0 {{ {VIP6} timeout 34500ms : {PEER_MAC} }}",
        f"add element netdev vipdrain_preserve fwdmacs_0 {{ {PEER_MAC} timeout 34500ms }}",
    ]
    # The same numbering as the standing table's maps.
    table = ruleset(make_cfg([a, b]), {"eth0": MAC, "eth1": MAC})
    assert "map armed4_1 " in table and "map armed6_0 " in table


#: `nft -j list table netdev vipdrain_preserve` (nftables 1.0.6) with two VIPs armed.
NFT_LISTING = (
    '{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, '
    '{"table": {"family": "netdev", "name": "vipdrain_preserve", "handle": 1}}, '
    '{"map": {"family": "netdev", "name": "armed4_0", "table": "vipdrain_preserve", "type": "ipv4_addr", '
    '"handle": 1, "map": "ether_addr", "flags": ["timeout"], "elem": [[{"elem": {"val": "192.0.2.100", '
    '"timeout": 30, "expires": 29}}, "02:00:00:00:00:0b"]]}}, '
    '{"map": {"family": "netdev", "name": "armed6_0", "table": "vipdrain_preserve", "type": "ipv6_addr", '
    '"handle": 2, "map": "ether_addr", "flags": ["timeout"], "elem": [[{"elem": {"val": "2001:db8::100", '
    '"timeout": 30, "expires": 29}}, "02:00:00:00:00:0c"]]}}, '
    '{"set": {"family": "netdev", "name": "local4_0", "table": "vipdrain_preserve", "type": '
    '["ipv4_addr", "inet_service", "ipv4_addr", "inet_service"], "handle": 3, "flags": ["timeout"]}}]}'
)


def test_the_armed_vips_are_read_from_nfts_json_listing() -> None:
    assert preserve.parse_armed(NFT_LISTING) == {"192.0.2.100": "02:00:00:00:00:0b",
                                                  "2001:db8::100": "02:00:00:00:00:0c"}
    assert preserve.parse_armed('{"nftables": [{"map": {"name": "armed4_0"}}]}') == {}


#: /proc/net/tcp on little-endian x86: a listener on VIP4:80, one established connection to it
#: from 198.51.100.7:40000, one to another address, one in TIME_WAIT (06) to VIP4:81.
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 640200C0:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 640200C0:0050 076433C6:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
   2: 0A0200C0:0050 086433C6:9C41 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1
   3: 640200C0:0051 096433C6:9C42 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0
"""
#: /proc/net/tcp6: an IPv6 connection to VIP6:443 and an IPv4 one accepted by an IPv6 socket.
PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: B80D0120000000000000000000010000:01BB B80D0120000000000000000007000000:A000 01 00000000:00000000
   1: 0000000000000000FFFF0000640200C0:0050 0000000000000000FFFF0000076433C6:A001 01 00000000:00000000
"""


@pytest.mark.skipif(sys.byteorder != "little", reason="the samples are from a little-endian machine")
def test_own_connections_to_the_vips_are_read_from_proc_net_tcp() -> None:
    client = ipaddress.ip_address("198.51.100.7")
    assert preserve.local_flows(PROC_NET_TCP, [VIP4]) == [(client, 40000, VIP4, 80), (
        ipaddress.ip_address("198.51.100.9"), 40002, VIP4, 81)]
    assert preserve.local_flows(PROC_NET_TCP6, [VIP4, VIP6]) == [
        (ipaddress.ip_address("2001:db8::7"), 40960, VIP6, 443), (client, 40961, VIP4, 80)]


@pytest.mark.skipif(sys.byteorder != "little", reason="the samples are from a little-endian machine")
def test_open_connections_count_what_is_still_served_not_what_is_over() -> None:
    samples = {4: PROC_NET_TCP, 6: PROC_NET_TCP6}
    # tcp: one established to VIP4 (the TIME_WAIT one is over); tcp6: one to VIP4 (v4-mapped).
    assert preserve.open_connections([VIP4], read=samples.__getitem__) == 2
    assert preserve.open_connections([VIP6], read=samples.__getitem__) == 1
    assert preserve.open_connections([ipaddress.ip_address("192.0.2.200")], read=samples.__getitem__) == 0


def test_own_connections_are_marked_local_for_as_long_as_the_arm_and_then_some() -> None:
    script = preserve.arm_ruleset([(vip(VIP4), PEER_MAC)], {"eth0": 0}, timeout=6.0,
                                  flows=[(ipaddress.ip_address("198.51.100.7"), 40000, VIP4, 80),
                                         (ipaddress.ip_address("2001:db8::7"), 40000, VIP6, 80)])
    assert ("add element netdev vipdrain_preserve local4_0 { 198.51.100.7 . 40000 . 192.0.2.100 . 80 "
            "timeout 16000ms }") in script.splitlines()
    assert "2001:db8::7" not in script  # not a VIP being armed


@pytest.mark.skipif(sys.byteorder != "little", reason="the samples are from a little-endian machine")
def test_arm_takeover_arms_for_the_grace_period_plus_the_takeover_keeping_own_connections() -> None:
    cfg = replace(make_cfg(), advert_int=1.0)
    run = FakeRunner()
    samples = {4: PROC_NET_TCP, 6: ""}
    armed = preserve.arm_takeover(cfg, {(1, 4): advert()}, 200, 99.0, run=run, read=samples.__getitem__)
    assert armed == preserve.Armed(arms=((vip(VIP4), PEER_MAC),))
    [(listing, _), (argv, stdin)] = run.calls
    assert listing[1:] == ["-j", "list", "table", "netdev", "vipdrain_preserve"]
    assert argv[1:] == ["-f", "-"]
    assert stdin is not None and "armed4_0 { 192.0.2.100 timeout 35000ms" in stdin  # 30 s + 4 x 1 s + 1 s
    assert "local4_0 { 198.51.100.7 . 40000 . 192.0.2.100 . 80 timeout 45000ms }" in stdin
    assert "198.51.100.9" not in stdin  # the TIME_WAIT connection is over: its port may be reused


@pytest.mark.parametrize("cfg", [make_cfg(preserve_connections=False), make_cfg(peers=())], ids=["off", "no-peers"])
def test_arm_takeover_does_nothing_without_preservation_or_peers(cfg: JobConfig) -> None:
    run = FakeRunner()
    assert preserve.arm_takeover(cfg, {(1, 4): advert()}, 200, 99.0, run=run, read=lambda _v: "") == preserve.Armed()
    assert run.calls == []


#: `nft -j list table` (nftables 1.0.6, captured) with an arm, its MAC and one local connection.
ARMED_LISTING = (
    '{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, '
    '{"map": {"family": "netdev", "name": "armed4_0", "table": "vipdrain_preserve", "type": "ipv4_addr", '
    '"handle": 1, "map": "ether_addr", "flags": ["timeout"], "elem": [[{"elem": {"val": "192.0.2.100", '
    '"timeout": 3, "expires": 2}}, "02:00:00:00:00:0b"]]}}, '
    '{"set": {"family": "netdev", "name": "fwdmacs_0", "table": "vipdrain_preserve", "type": "ether_addr", '
    '"handle": 2, "flags": ["timeout"], "elem": [{"elem": {"val": "02:00:00:00:00:0b", "timeout": 3, '
    '"expires": 2}}]}}, '
    '{"set": {"family": "netdev", "name": "local4_0", "table": "vipdrain_preserve", "type": '
    '["ipv4_addr", "inet_service", "ipv4_addr", "inet_service"], "handle": 3, "flags": ["timeout"], '
    '"elem": [{"elem": {"val": {"concat": ["198.51.100.7", 40000, "192.0.2.100", 80]}, "timeout": 3, '
    '"expires": 2}}]}}]}'
)


def test_the_elements_in_the_table_are_read_as_the_ruleset_writes_them() -> None:
    assert preserve.existing_elements(ARMED_LISTING) == {
        "armed4_0": {"192.0.2.100"}, "fwdmacs_0": {PEER_MAC}, "local4_0": {"198.51.100.7 . 40000 . 192.0.2.100 . 80"}}


def test_an_arm_already_there_is_replaced_not_left_on_its_old_clock() -> None:
    """nftables 1.0 keeps an element's timeout on `add` (and refuses another value for a map
    key): the undrain right after a drain re-armed an arm left from the start-up takeover, which
    ran out 0.4 s after the take-back and reset a connection (captured in the lab)."""
    flows = [(ipaddress.ip_address("198.51.100.7"), 40000, VIP4, 80)]
    script = preserve.arm_ruleset([(vip(VIP4), PEER_MAC)], {"eth0": 0}, timeout=6.0, flows=flows,
                                  existing=preserve.existing_elements(ARMED_LISTING)).splitlines()
    assert script == [
        "delete element netdev vipdrain_preserve armed4_0 { 192.0.2.100 }",
        f"add element netdev vipdrain_preserve armed4_0 {{ 192.0.2.100 timeout 6000ms : {PEER_MAC} }}",
        f"delete element netdev vipdrain_preserve fwdmacs_0 {{ {PEER_MAC} }}",
        f"add element netdev vipdrain_preserve fwdmacs_0 {{ {PEER_MAC} timeout 6000ms }}",
        "delete element netdev vipdrain_preserve local4_0 { 198.51.100.7 . 40000 . 192.0.2.100 . 80 }",
        "add element netdev vipdrain_preserve local4_0 { 198.51.100.7 . 40000 . 192.0.2.100 . 80 timeout 16000ms }",
    ]


def test_a_remembered_connection_that_ended_here_is_forgotten_when_the_vip_is_armed_again() -> None:
    """A local element left from an earlier arm names a connection that is over here. The client
    reused its port for a new connection to the peer (ports came round within 10 s at 200 req/s
    in the lab); kept local, that connection's packets went to a TIME_WAIT socket here after the
    take-back and its stream timed out (CI). Elements of VIPs not being armed stay."""
    other = "198.51.100.8 . 40001 . 192.0.2.101 . 80"
    existing = {**preserve.existing_elements(ARMED_LISTING),
                "local4_0": {"198.51.100.7 . 40000 . 192.0.2.100 . 80", other}}
    script = preserve.arm_ruleset([(vip(VIP4), PEER_MAC)], {"eth0": 0}, timeout=6.0, flows=[],
                                  existing=existing).splitlines()
    assert "delete element netdev vipdrain_preserve local4_0 { 198.51.100.7 . 40000 . 192.0.2.100 . 80 }" in script
    assert not any("local4_0" in line and line.startswith("add") for line in script)
    assert not any(other in line for line in script)


def test_a_failed_arm_is_a_warning_naming_the_vip() -> None:
    run = FakeRunner(returncode=1, stderr="Error: No such file or directory")
    armed = preserve.arm_takeover(make_cfg(), {(1, 4): advert()}, 200, 99.0, run=run, read=lambda _v: "")
    [warning] = armed.warnings
    assert str(VIP4) in warning and "No such file" in warning
    assert armed.arms == ()  # nothing to take back


@dataclass
class Scripted:
    """A runner answering `nft -j list` with `listing` and every other command with `returncode`."""

    listing: str
    returncode: int = 0
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        out = self.listing if "list" in argv else ""
        return subprocess.CompletedProcess(list(argv), 0 if "list" in argv else self.returncode, out, "Error: boom")


def test_disarm_takes_back_an_arm_still_pointing_where_it_was_armed() -> None:
    run = Scripted(NFT_LISTING)
    assert preserve.disarm_takeover(make_cfg(), [(vip(VIP4), PEER_MAC)], run=run) == []
    assert run.calls[-1][1:] == ["delete", "element", "netdev", "vipdrain_preserve", "armed4_0", "{ 192.0.2.100 }"]


@pytest.mark.parametrize("now", ['{"nftables": []}', NFT_LISTING.replace(PEER_MAC, "02:00:00:00:00:99")],
                         ids=["ran out", "re-armed by a drain notice"])
def test_disarm_leaves_an_arm_that_is_not_the_takeovers_own(now: str) -> None:
    run = Scripted(now)
    assert preserve.disarm_takeover(make_cfg(), [(vip(VIP4), PEER_MAC)], run=run) == []
    assert not [argv for argv in run.calls if "delete" in argv]


def test_a_failed_disarm_is_a_warning_naming_the_vip() -> None:
    run = Scripted(NFT_LISTING, returncode=1)
    [warning] = preserve.disarm_takeover(make_cfg(), [(vip(VIP4), PEER_MAC)], run=run)
    assert "cannot disarm the takeover of 192.0.2.100" in warning and "boom" in warning


# --- start_handoff (the drain) -----------------------------------------------------------------


@dataclass
class Sent:
    calls: list[tuple[IPAddress, list[IPAddress], list[IPAddress], int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def __call__(self, source: IPAddress, targets: Sequence[IPAddress], vips: Sequence[IPAddress],
                 port: int) -> list[str]:
        self.calls.append((source, list(targets), list(vips), port))
        return list(self.problems)


@dataclass
class Spawned:
    argv: list[list[str]] = field(default_factory=list)
    error: OSError | None = None

    def __call__(self, argv: Sequence[str]) -> int:
        if self.error:
            raise self.error
        self.argv.append(list(argv))
        return 4242


def test_the_drain_notifies_every_peer_at_once_then_leaves_a_repeater(tmp_path: Path) -> None:
    layout = Layout(root=tmp_path)
    cfg = make_cfg(peers=["192.0.2.11", "2001:db8::11", "192.0.2.12"])
    send, spawn = Sent(), Spawned()
    assert preserve.start_handoff(cfg, layout, cfg.vips, send=send, spawn=spawn) == []
    peers4 = [ipaddress.ip_address("192.0.2.11"), ipaddress.ip_address("192.0.2.12")]
    assert send.calls == [(SELF, peers4, [VIP4], 7112)] * preserve.NOTICE_BURST
    [argv] = spawn.argv
    args = preserve.build_parser().parse_args(argv[argv.index("keep"):])
    assert (args.root, args.source, args.port, args.announce_for) == (str(tmp_path), "192.0.2.10", 7112, 35.0)
    assert (args.peer, args.vip) == (["192.0.2.11", "192.0.2.12"], ["192.0.2.100,eth0"])
    assert preserve.keeper_pid_file(layout).read_text() == "4242\n"


def test_the_drain_says_why_it_cannot_preserve(tmp_path: Path) -> None:
    layout = Layout(root=tmp_path)
    send, spawn = Sent(problems=["notice for 192.0.2.100 to 192.0.2.11: Network is unreachable"]), Spawned()
    off = make_cfg(preserve_connections=False)
    assert preserve.start_handoff(off, layout, off.vips, send=send, spawn=spawn) == []
    v6_only = make_cfg(peers=["2001:db8::11"])
    [why] = preserve.start_handoff(v6_only, layout, v6_only.vips, send=send, spawn=spawn)
    assert "no IPv4 peer" in why
    assert send.calls == [] and spawn.argv == []
    cfg = make_cfg()
    assert preserve.start_handoff(cfg, layout, cfg.vips, send=send, spawn=spawn) == send.problems
    spawn.error = OSError(12, "Cannot allocate memory")
    warnings = preserve.start_handoff(cfg, layout, cfg.vips, send=Sent(), spawn=spawn)
    assert warnings and "repeater not started" in warnings[0]


# --- the repeater ------------------------------------------------------------------------------


def test_the_repeater_stops_as_soon_as_the_vip_has_left() -> None:
    clock, sent = FakeClock(), []
    here = {"eth0": [SELF, VIP4]}

    def addresses() -> dict[str, list[IPAddress]]:
        if clock.now >= 0.5:  # the peer took over; keepalived dropped the VIP
            here["eth0"] = [SELF]
        return here

    def send(vips: Sequence[IPAddress]) -> list[str]:
        sent.append((clock.now, list(vips)))
        return []

    left = preserve.announce([(VIP4, "eth0")], send, addresses, budget=35, clock=clock, sleep=clock.sleep)
    assert left == []
    assert [v for _, v in sent] == [[VIP4]] * 3 and max(t for t, _ in sent) < 0.5


def test_the_repeater_gives_up_after_its_budget_and_survives_a_failed_look() -> None:
    clock, sent = FakeClock(), []
    looks = iter([RuntimeFailure("ip -j addr failed")])

    def addresses() -> dict[str, list[IPAddress]]:
        for failure in looks:
            raise failure
        return {"eth0": [VIP4]}

    left = preserve.announce([(VIP4, "eth0")], lambda v: sent.append(v) or [], addresses, budget=1.0,
                             clock=clock, sleep=clock.sleep)
    assert left == [VIP4] and len(sent) == 5


@pytest.mark.skipif(shutil.which("ip") is None, reason="the repeater looks at addresses with `ip -j addr`")
def test_the_keep_command_exits_at_once_when_no_vip_is_here(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "vipdrain.preserve", "keep", "--root", str(tmp_path), "--source", "192.0.2.10",
         "--port", "7112", "--announce-for", "30", "--peer", "192.0.2.11", "--vip", "192.0.2.100,vdp-nosuchif"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 10
    assert "every announced VIP has left this VM" in Layout(root=tmp_path).vipdrain_log.read_text()


def test_only_our_repeater_is_recognised_by_its_command_line(tmp_path: Path) -> None:
    ours = [sys.executable, "-m", "vipdrain.preserve", "keep", "--root", str(tmp_path), "--source", "x"]
    assert preserve.is_keeper_cmdline(ours, tmp_path)
    assert not preserve.is_keeper_cmdline(ours, tmp_path / "other")
    assert not preserve.is_keeper_cmdline([sys.executable, "-m", "vipdrain.preserve", "cleanup", "--root",
                                           str(tmp_path)], tmp_path)
    assert not preserve.is_keeper_cmdline(["sleep", "30"], tmp_path)


def _child(*argv: str) -> subprocess.Popen[bytes]:
    """A sleeping python whose command line carries `argv`, once the kernel shows it."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", *argv])
    deadline = time.monotonic() + 5
    while not Path(f"/proc/{proc.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


def test_end_handoff_stops_our_repeater_and_leaves_any_other_process_alone(tmp_path: Path) -> None:
    layout = Layout(root=tmp_path)
    layout.run_dir.mkdir(parents=True)
    stranger = _child("-m", "vipdrain.preserve", "keep", "--root", str(tmp_path / "elsewhere"))
    keeper = _child("-m", "vipdrain.preserve", "keep", "--root", str(tmp_path))
    try:
        preserve.keeper_pid_file(layout).write_text(f"{stranger.pid}\n")
        assert preserve.running_keeper(layout) is None
        preserve.end_handoff(layout)
        assert stranger.poll() is None and not preserve.keeper_pid_file(layout).exists()

        preserve.keeper_pid_file(layout).write_text(f"{keeper.pid}\n")
        assert preserve.running_keeper(layout) == keeper.pid
        preserve.end_handoff(layout)
        assert keeper.wait(timeout=5) != 0
    finally:
        for proc in (stranger, keeper):
            proc.kill()
            proc.wait()


def test_a_new_handoff_replaces_a_running_repeater(tmp_path: Path) -> None:
    layout = Layout(root=tmp_path)
    layout.run_dir.mkdir(parents=True)
    old = _child("-m", "vipdrain.preserve", "keep", "--root", str(tmp_path))
    try:
        preserve.keeper_pid_file(layout).write_text(f"{old.pid}\n")
        cfg = replace(make_cfg(), vips=(vip(VIP4),))
        assert preserve.start_handoff(cfg, layout, cfg.vips, send=Sent(), spawn=Spawned()) == []
        assert old.wait(timeout=5) != 0
        assert preserve.keeper_pid_file(layout).read_text() == "4242\n"
    finally:
        old.kill()
        old.wait()


# --- what status shows ---------------------------------------------------------------------------


def test_status_lists_what_this_vm_forwards_right_now() -> None:
    run = FakeRunner(stdout=NFT_LISTING)
    assert preserve.forwarding_now(make_cfg(), run=run) == {"192.0.2.100": "02:00:00:00:00:0b",
                                                             "2001:db8::100": "02:00:00:00:00:0c"}
    assert run.calls[0][0][1:] == ["-j", "list", "table", "netdev", "vipdrain_preserve"]


@pytest.mark.parametrize(("cfg", "run"), [
    (make_cfg(preserve_connections=False), FakeRunner(stdout=NFT_LISTING)),
    (make_cfg(), FakeRunner(returncode=1, stderr="Error: No such file or directory")),
    (make_cfg(), FakeRunner(stdout="not json")),
], ids=["off", "no table", "garbage"])
def test_status_shows_no_forwarding_when_there_is_nothing_to_read(cfg: JobConfig, run: FakeRunner) -> None:
    assert preserve.forwarding_now(cfg, run=run) == {}
