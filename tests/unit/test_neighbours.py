"""IPv6 holders by neighbour discovery, and holders named by VM (issue 18 items 5 and 10): the
pure parts (packets, MAC -> member)."""

from __future__ import annotations

import ipaddress
import struct
import time

from fakes import job_config

from vipdrain import rtnl, vrrp
from vipdrain.model import JobConfig, Vip
from vipdrain.survey import Holder, Member, members_by_mac

V6 = ipaddress.IPv6Address


def test_the_solicited_node_group_keeps_the_last_24_bits():
    # RFC 4291 2.7.1 example shape: ff02::1:ffXX:XXXX.
    assert vrrp.solicited_node(V6("2001:db8::1:2345:6789")) == V6("ff02::1:ff45:6789")


def test_a_neighbour_solicitation_asks_for_the_target_with_our_mac():
    msg = vrrp.build_neighbour_solicitation(V6("2001:db8::100"), bytes.fromhex("02005e100001"))
    assert msg[:4] == bytes([135, 0, 0, 0]) and msg[4:8] == bytes(4)
    assert msg[8:24] == V6("2001:db8::100").packed
    assert msg[24:] == bytes([1, 1]) + bytes.fromhex("02005e100001")  # source link-layer address option


def advert(target: str, *, hops: int = 255, kind: int = 136) -> bytes:
    icmp = struct.pack("!BBHI", kind, 0, 0, 0x60000000) + V6(target).packed
    header = struct.pack("!IHBB16s16s", 6 << 28, len(icmp), 58, hops, V6("fe80::1").packed, V6("ff02::1").packed)
    return header + icmp


def test_a_neighbour_advert_gives_its_target():
    assert vrrp.parse_neighbour_advert(advert("2001:db8::100")) == V6("2001:db8::100")


def test_anything_else_is_no_neighbour_advert():
    assert vrrp.parse_neighbour_advert(advert("2001:db8::100", hops=64)) is None  # RFC 4861 7.1.2
    assert vrrp.parse_neighbour_advert(advert("2001:db8::100", kind=135)) is None
    assert vrrp.parse_neighbour_advert(b"\x45" + bytes(80)) is None
    assert vrrp.parse_neighbour_advert(advert("2001:db8::100")[:50]) is None


def cfg() -> JobConfig:
    return job_config([Vip("vip_1", V6("2001:db8::100"), 1, "eth0")], peers=3)


def test_members_are_told_by_the_mac_that_answers_for_their_address():
    answers = {ipaddress.ip_address("192.0.2.11"): ["02:00:00:00:00:11"],
               # Two answers for one address: who is who cannot be told, nobody is named.
               ipaddress.ip_address("192.0.2.12"): ["02:00:00:00:00:12", "02:00:00:00:00:99"]}
    members = members_by_mac(cfg(), {"eth0": "02:00:00:00:00:10"}, answers)
    assert members == {"02:00:00:00:00:10": Member("192.0.2.10", "haproxy/0"),
                       "02:00:00:00:00:11": Member("192.0.2.11", "haproxy/1")}


def test_a_holder_reads_as_its_vm_or_as_a_stranger():
    assert Holder("02:00:00:00:00:11", "192.0.2.11", "ARP", "haproxy/1").label == "haproxy/1 (192.0.2.11)"
    assert Holder("02:00:00:00:00:99", "", "neighbour discovery").label == (
        "a machine outside the group (02:00:00:00:00:99)")


def test_a_survey_names_holders_and_peers_by_vm_and_lists_the_silent_ones(tmp_path):
    from vipdrain.layout import Layout
    from vipdrain.observe import LiveObserver
    from vipdrain.survey import take_survey
    from vipdrain.verdicts import PeerAdvert

    job = cfg()
    asked = []

    def probe(interface, targets, sender, timeout):
        asked.append((interface, targets, sender))
        return {V6("2001:db8::100"): ["02:00:00:00:00:12"],  # vm2 still answers for it: a leftover
                ipaddress.ip_address("192.0.2.11"): ["02:00:00:00:00:11"],
                ipaddress.ip_address("192.0.2.12"): ["02:00:00:00:00:12"],
                ipaddress.ip_address("192.0.2.13"): ["02:00:00:00:00:13"]}

    observer = LiveObserver(job, Layout(root=tmp_path), addresses=lambda: {"eth0": []},
                            keepalived_alive=lambda _l: False)
    # The survey judges advert age by time.monotonic (the observer's default clock).
    heard = PeerAdvert(1, 3, 150, V6("fe80::11"), time.monotonic(), "02:00:00:00:00:11")
    observer.sources[(1, 6)] = {V6("fe80::11"): heard}
    survey = take_survey(job, Layout(root=tmp_path), observer, listen=0, probe=probe,
                         mac_of=lambda _i: "02:00:00:00:00:10", forwarding=lambda _c: {}, readers=lambda _l: [])

    assert asked == [("eth0", [V6("2001:db8::100"), *(p.address for p in job.peers)], job.instance.ip)]
    (s,) = survey.vips
    assert [(h.label, h.how) for h in s.holders] == [("haproxy/1 (192.0.2.11)", "adverts at priority 150"),
                                                     ("haproxy/2 (192.0.2.12)", "neighbour discovery")]
    assert s.peers_heard == {"192.0.2.11": 150}
    assert survey.not_heard == ["haproxy/2 (192.0.2.12)", "haproxy/3 (192.0.2.13)"]
    assert survey.problems[0].startswith("keepalived is not running here")
    assert any(p.startswith("SPLIT BRAIN: vip_1") for p in survey.problems)


# --- the kernel's neighbour table (the resign's taker MAC without an ARP round) ---------------


def _neighbour_message(address: str, mac: str | None, ifindex: int, state: int, confirmed_ticks: int = 0) -> bytes:
    """An RTM_NEWNEIGH message as the kernel sends it in a dump (struct ndmsg, then NDA_DST,
    NDA_LLADDR and NDA_CACHEINFO attributes; include/uapi/linux/neighbour.h, net/core/neighbour.c
    neigh_fill_info: the ages are clock ticks since confirmed, used, updated)."""

    def attribute(kind: int, value: bytes) -> bytes:
        data = struct.pack("=HH", 4 + len(value), kind) + value
        return data + bytes(-len(data) % 4)

    body = struct.pack("=BxxxiHBB", 2, ifindex, state, 0, 1) + attribute(1, ipaddress.ip_address(address).packed)
    if mac is not None:
        body += attribute(2, bytes.fromhex(mac.replace(":", "")))
    body += attribute(3, struct.pack("=IIII", confirmed_ticks, 5, 5, 1))
    return struct.pack("=IHHII", 16 + len(body), 28, 2, 1, 0) + body


def test_neighbour_entries_are_read_from_a_dump_and_those_without_a_mac_skipped():
    done = struct.pack("=IHHII", 20, 3, 2, 1, 0) + bytes(4)
    data = (_neighbour_message("192.0.2.11", "02:00:00:00:00:0b", 4, 0x08, confirmed_ticks=25)
            + _neighbour_message("192.0.2.12", None, 4, 0x20) + done)
    assert list(rtnl.parse_neighbours(data)) == [
        rtnl.Neighbour("192.0.2.11", "02:00:00:00:00:0b", 4, 0x08, 0.25), None]


def test_only_a_recently_confirmed_or_fixed_entry_names_the_mac(monkeypatch):
    """Confirmed just now: the drain's probe of that peer was answered through it (the state may
    still read DELAY, seen in the lab). Confirmed long ago, or failed, it may be a VM recreated
    with the same address and a new MAC: ask the link instead."""
    monkeypatch.setattr("socket.if_nametoindex", lambda name: {"eth0": 4, "eth1": 5}[name])
    table = [rtnl.Neighbour("192.0.2.11", "02:00:00:00:00:0b", 4, rtnl.NUD_STALE, 40.0),
             rtnl.Neighbour("192.0.2.12", "02:00:00:00:00:0c", 4, rtnl.NUD_DELAY, 0.01),
             rtnl.Neighbour("192.0.2.13", "02:00:00:00:00:0d", 5, rtnl.NUD_PERMANENT, 900.0),
             rtnl.Neighbour("192.0.2.14", "02:00:00:00:00:0e", 4, 0x20, 0.01),  # FAILED
             rtnl.Neighbour("192.0.2.15", "02:00:00:00:00:0f", 4, rtnl.NUD_REACHABLE, None)]

    def mac(interface: str, address: str) -> str | None:
        return vrrp.confirmed_mac(interface, ipaddress.ip_address(address), table=lambda _family: table)

    assert mac("eth0", "192.0.2.11") is None
    assert mac("eth0", "192.0.2.12") == "02:00:00:00:00:0c"
    assert mac("eth0", "192.0.2.13") is None and mac("eth1", "192.0.2.13") == "02:00:00:00:00:0d"
    assert mac("eth0", "192.0.2.14") is None
    assert mac("eth0", "192.0.2.15") is None  # no age given: not trusted
    assert mac("eth0", "192.0.2.99") is None
