"""The lab's pure parts, without namespaces: summaries, VIP timelines, config merging, parsing."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from vipdrain import rtnl
from vipdrain.lab.client import classify
from vipdrain.lab.haproxy import HaproxyPaths, render_config
from vipdrain.lab.observer import Change, count_moves, intervals
from vipdrain.lab.plan import deep_merge, vip_addresses
from vipdrain.lab.records import Request, Stream, summarize


def req(t: float, outcome: str = "ok", vm: str | None = "vm0", latency: float = 0.001) -> Request:
    return Request(time=t, latency=latency, outcome=outcome, vm=vm if outcome == "ok" else None)


def test_summary_counts_failures_by_kind_and_finds_the_longest_gap() -> None:
    records = [req(0.0), req(0.1), req(0.2, "refused"), req(0.3, "timeout", latency=1.0), req(0.9, vm="vm1"),
               req(1.0, vm="vm1")]

    s = summarize(records, [Stream("http", 0.0, 1.0, "finished"), Stream("tcp", 0.0, 1.0, "broken")])

    assert (s.total, s.ok, s.failures) == (6, 4, 2)
    assert s.failed == {"refused": 1, "timeout": 1}
    assert s.longest_gap_ms == pytest.approx(800.0)  # answer at 0.101, next at 0.901
    assert s.vm_changes == [(0.9, "vm0", "vm1")]
    assert s.answering_vm_changes == 1
    assert s.by_vm == {"vm0": 2, "vm1": 2}
    assert s.streams == {"finished": 1, "broken": 1}
    assert "2 failed (refused 1, timeout 1)" in str(s)


def test_summary_window_and_no_success_at_all() -> None:
    records = [req(float(t), "timeout", latency=1.0) for t in range(3)]

    assert summarize(records).longest_gap_ms == pytest.approx(3000.0)
    assert summarize(records, start=1.0, end=1.5).total == 1
    assert summarize([]).total == 0


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [(ConnectionRefusedError(), "refused"), (ConnectionResetError(), "reset"), (TimeoutError(), "timeout"),
     (BrokenPipeError(), "reset"), (OSError(113, "No route to host"), "other")],
)
def test_request_errors_are_classified(exc: BaseException, outcome: str) -> None:
    assert classify(exc)[0] == outcome


def test_moves_count_changes_of_the_sole_holder() -> None:
    vm0, vm1, both, none = frozenset({"vm0"}), frozenset({"vm1"}), frozenset({"vm0", "vm1"}), frozenset()

    assert count_moves([Change(0, vm0), Change(1, none), Change(2, vm1)]) == 1
    assert count_moves([Change(0, vm0), Change(1, both), Change(2, vm1), Change(3, vm0)]) == 2
    assert count_moves([Change(0, none), Change(1, vm0)]) == 0
    spans = intervals([Change(0, vm0), Change(1, both), Change(2, vm1)], 0.5, 3.0)
    assert [(s.start, s.end, s.holders) for s in spans] == [(0.5, 1, vm0), (1, 2, both), (2, 3.0, vm1)]
    assert spans[1].duration == 1


def test_deep_merge_and_vip_addresses() -> None:
    base = {"keepalived": {"vips": ["192.0.2.100"], "advert_int": 1.0}, "vipdrain": {"drain": {"timeout": 30}}}

    merged = deep_merge(base, {"keepalived": {"advert_int": 0.2}, "vipdrain": {"placement": "sticky"}})

    assert merged == {"keepalived": {"vips": ["192.0.2.100"], "advert_int": 0.2},
                      "vipdrain": {"drain": {"timeout": 30}, "placement": "sticky"}}
    assert base["keepalived"]["advert_int"] == 1.0  # not modified
    assert vip_addresses({"keepalived": {"vips": [{"address": "2001:db8::100"}, "192.0.2.101/32"]}}) == [
        "2001:db8::100", "192.0.2.101"]
    assert vip_addresses({"keepalived": {"vip": "192.0.2.100"}}) == ["192.0.2.100"]


def test_rtnetlink_address_messages_are_parsed() -> None:
    def message(kind: int, family: int, address: bytes, index: int) -> bytes:
        attr = struct.pack("=HH", 4 + len(address), rtnl.IFA_LOCAL if family == socket.AF_INET else rtnl.IFA_ADDRESS)
        body = struct.pack("=BBBBI", family, 32, 0, 0, index) + attr + address
        return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body

    data = (message(rtnl.RTM_NEWADDR, socket.AF_INET, bytes([192, 0, 2, 100]), 2)
            + message(rtnl.RTM_DELADDR, socket.AF_INET6, socket.inet_pton(socket.AF_INET6, "2001:db8::100"), 1)
            + struct.pack("=IHHII", 16, rtnl.NLMSG_DONE, 0, 0, 0))

    events = list(rtnl.parse(data))

    assert events[0] == rtnl.AddrEvent(True, "192.0.2.100", 32, 2)
    assert events[1] == rtnl.AddrEvent(False, "2001:db8::100", 32, 1)
    assert events[1].on_loopback
    assert events[2] is None


def test_haproxy_config_names_the_vm(tmp_path: Path) -> None:
    text = render_config("vm3", HaproxyPaths(tmp_path), ipv6=True)

    assert 'lf-string "vm3\\n"' in text
    assert "bind :::80 v6only" in text
    assert "$" not in text
