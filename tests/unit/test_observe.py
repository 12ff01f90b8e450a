"""What the drain looks at many times a second, kept cheap: the rtnetlink messages for addresses,
keepalived's state files, and `LiveObserver.views` over them (no sockets: views needs none)."""

from __future__ import annotations

import errno
import ipaddress
import struct

import pytest
from fakes import job_config

from vipdrain import rtnl
from vipdrain.layout import Layout
from vipdrain.model import DrainSettings, JobConfig
from vipdrain.notify import read_state, read_state_file, record_transition
from vipdrain.observe import LiveObserver
from vipdrain.verdicts import PeerAdvert

V4 = ipaddress.ip_address


@pytest.mark.parametrize(("address", "prefixlen"), [("192.0.2.100", 32), ("2001:db8::100", 128)])
def test_an_address_request_carries_what_ip_addr_sends(address, prefixlen):
    ip = ipaddress.ip_address(address)

    added = rtnl.address_request(True, ip, prefixlen, ifindex=1, seq=7)
    removed = rtnl.address_request(False, ip, prefixlen, ifindex=3)

    assert list(rtnl.parse(added)) == [rtnl.AddrEvent(True, address, prefixlen, 1)]
    assert list(rtnl.parse(removed)) == [rtnl.AddrEvent(False, address, prefixlen, 3)]
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", added)
    assert (length, kind, seq) == (len(added), rtnl.RTM_NEWADDR, 7)
    # `ip addr replace`: create or replace, and answer either way (so a refusal is seen).
    assert flags == rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK | rtnl.NLM_F_CREATE | rtnl.NLM_F_REPLACE
    assert struct.unpack_from("=IHH", removed)[1:] == (rtnl.RTM_DELADDR, rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK)


def test_the_kernels_answer_gives_the_errno():
    def answer(error: int) -> bytes:
        return struct.pack("=IHHII", 36, rtnl.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", error) + bytes(16)

    assert rtnl.answer_errno(answer(0)) == 0
    assert rtnl.answer_errno(answer(-errno.EEXIST)) == errno.EEXIST
    assert rtnl.answer_errno(struct.pack("=IHHII", 16, rtnl.NLMSG_DONE, 0, 1, 0)) == errno.EPROTO


def test_the_interfaces_own_address_wins_over_its_peer():
    def message(attrs: list[tuple[int, str]]) -> bytes:
        body = struct.pack("=BBBBI", 2, 32, 0, 0, 2) + b"".join(
            struct.pack("=HH", 8, kind) + V4(text).packed for kind, text in attrs)
        return struct.pack("=IHHII", 16 + len(body), rtnl.RTM_NEWADDR, 0, 0, 0) + body

    # On a point-to-point link IFA_ADDRESS is the far end: IFA_LOCAL is ours, in either order.
    for attrs in ([(rtnl.IFA_ADDRESS, "198.51.100.1"), (rtnl.IFA_LOCAL, "192.0.2.10")],
                  [(rtnl.IFA_LOCAL, "192.0.2.10"), (rtnl.IFA_ADDRESS, "198.51.100.1")]):
        assert [e.address for e in rtnl.parse(message(attrs))] == ["192.0.2.10"]
    assert [e.address for e in rtnl.parse(message([(rtnl.IFA_ADDRESS, "192.0.2.11")]))] == ["192.0.2.11"]


@pytest.fixture
def layout(tmp_path) -> Layout:
    return Layout(root=tmp_path)


def test_a_rewritten_state_file_is_read_again(layout):
    # Parses are cached by the file's text: a new transition must never be answered from it.
    path = layout.state_file("vip_1")
    assert read_state_file(path) is None
    record_transition(layout, "INSTANCE", "vip_1", "MASTER", 150)
    assert read_state_file(path).state == "MASTER"
    record_transition(layout, "INSTANCE", "vip_1", "BACKUP", 150)
    assert read_state_file(path).state == "BACKUP"
    assert read_state_file(path) == read_state(layout, "vip_1")
    path.write_text("{garbage")
    assert read_state_file(path) is None


def make_cfg(vips: int = 2) -> JobConfig:
    return job_config(vips, peers=1, priority=150, drain=DrainSettings(peer_check=False))


def test_views_see_addresses_on_the_vips_interface_and_each_new_state(layout):
    addresses = {"eth0": [V4("192.0.2.10"), V4("192.0.2.100")], "lo": [V4("127.0.0.1"), V4("192.0.2.101")]}
    observer = LiveObserver(make_cfg(), layout, addresses=lambda: addresses, clock=lambda: 10.0)
    record_transition(layout, "INSTANCE", "vip_1", "MASTER", 150)

    first = observer.views(own_priority=1)
    assert [(v.vip.name, v.local, v.state) for v in first] == [("vip_1", True, "MASTER"), ("vip_2", False, None)]

    # The VIP leaves eth0 (a copy on lo does not count) and keepalived reports the change.
    addresses["eth0"].remove(V4("192.0.2.100"))
    addresses["lo"].append(V4("192.0.2.100"))
    record_transition(layout, "INSTANCE", "vip_1", "BACKUP", 150)
    assert [(v.local, v.state) for v in observer.views(own_priority=1)] == [(False, "BACKUP"), (False, None)]


def test_an_advert_from_any_address_of_this_vm_is_no_peers(layout):
    addresses = {"eth0": [V4("192.0.2.10")], "lo": [V4("127.0.0.1"), V4("192.0.2.101")]}
    observer = LiveObserver(make_cfg(), layout, addresses=lambda: addresses, clock=lambda: 10.0)
    observer.latest[(1, 4)] = PeerAdvert(1, 3, 200, V4("192.0.2.101"), seen_at=9.5)  # from lo: ours
    observer.latest[(2, 4)] = PeerAdvert(2, 3, 200, V4("192.0.2.11"), seen_at=9.5)

    views = observer.views(own_priority=1)
    assert [v.peer_master.source if v.peer_master else None for v in views] == [None, V4("192.0.2.11")]
