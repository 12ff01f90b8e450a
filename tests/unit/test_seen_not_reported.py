"""What this VM is comes from what is seen (own adverts, keepalived alive, the VIP on eth0);
keepalived's report through the notify FIFO is a hint only (issue 18, item 3 and 6)."""

from __future__ import annotations

import ipaddress

import pytest
from test_observe import make_cfg

from vipdrain.layout import Layout
from vipdrain.model import Vip
from vipdrain.notify import Reader, reader_problem, record_transition
from vipdrain.observe import LiveObserver
from vipdrain.survey import VipSurvey, keepalived_down, keepalived_problem
from vipdrain.verdicts import PeerAdvert, VipView, holds_vip, local_not_master, master_here

V4 = ipaddress.ip_address
VIP = Vip(name="vip_1", address=V4("192.0.2.100"), virtual_router_id=1, interface="eth0")
OWN = PeerAdvert(1, 3, 150, V4("192.0.2.10"), seen_at=10.0)


def judge(**kw):
    args = {"keepalived_running": True, "own": OWN, "now": 10.5, "listened": 5.0, "window": 1.7,
            "hint": None, "hint_age": None}
    args.update(kw)
    return master_here(VIP, **args)


def test_keepalived_not_running_is_not_master_whatever_it_last_reported():
    here, why = judge(keepalived_running=False, hint="MASTER", hint_age=1.0)
    assert here is False and "keepalived is not running here" in why


def test_a_fresh_own_advert_is_master_even_if_the_report_says_backup():
    # The reader died while this VM was BACKUP, then it became master: the report is older.
    here, why = judge(hint="BACKUP", hint_age=60.0)
    assert here is True and "still advertises VRID 1 (priority 150, 0.5 s ago)" in why


def test_a_report_after_the_last_advert_is_the_fast_path_to_not_master():
    here, why = judge(hint="BACKUP", hint_age=0.2)
    assert here is False and "reported after this VM's last advert" in why


def test_silent_for_a_whole_window_is_not_master_whatever_it_last_reported():
    here, why = judge(now=12.0, hint="MASTER", hint_age=300.0)
    assert here is False and "has not advertised VRID 1 for 2.0 s" in why
    here, why = judge(own=None, listened=1.8, hint="MASTER")
    assert here is False and "in the 1.8 s listened" in why


def test_silent_but_not_listened_long_enough_cannot_tell():
    assert judge(own=None, listened=0.5, hint="MASTER") == (None, "")


def view(**kw) -> VipView:
    args = {"vip": VIP, "local": False, "state": "MASTER", "peer_master": None, "own_priority": 1}
    args.update(kw)
    return VipView(**args)


def test_a_stale_master_report_neither_holds_nor_blocks_the_handoff():
    stale = view(master_here=False, here="this VM has not advertised VRID 1 for 2.0 s: not master of vip_1 here")
    assert not holds_vip(stale)
    assert local_not_master(stale).ok
    # Without any observation the report is all there is (as before), but it never makes a VIP held.
    assert not local_not_master(view()).ok
    assert not holds_vip(view())
    assert holds_vip(view(local=True, state=None)) and holds_vip(view(master_here=True, state="BACKUP"))


def test_views_judge_by_own_adverts_not_by_the_state_file(tmp_path):
    layout = Layout(root=tmp_path)
    now = [100.0]
    observer = LiveObserver(make_cfg(1), layout, addresses=lambda: {"eth0": [V4("192.0.2.10")]},
                            clock=lambda: now[0], wall=lambda: 1_000_000.0, keepalived_alive=lambda _l: True)
    observer.opened_at = 99.9
    record_transition(layout, "INSTANCE", "vip_1", "MASTER", 150)  # then the reader died
    assert observer.views(1)[0].master_here is None  # 0.1 s listened: cannot tell yet
    observer.own_latest[(1, 4)] = PeerAdvert(1, 3, 150, V4("192.0.2.10"), seen_at=100.0)
    assert observer.views(1)[0].master_here is True
    now[0] = 102.0  # keepalived went BACKUP (the VIP left): no advert since, nothing recorded
    (v,) = observer.views(1)
    assert (v.state, v.master_here, holds_vip(v), local_not_master(v).ok) == ("MASTER", False, False, True)


def test_a_dead_or_stopped_reader_is_a_problem_only_while_keepalived_runs():
    assert "is not running" in reader_problem(True, [])
    assert "pid 7) is stopped" in reader_problem(True, [Reader(7, "T")])
    assert reader_problem(True, [Reader(7, "S")]) is None
    assert reader_problem(False, []) is None


@pytest.mark.parametrize(("states", "text"), [
    ({"parent": None, "vrrp": None}, "keepalived is not running here (parent and vrrp process gone)"),
    ({"parent": "S", "vrrp": None}, "keepalived is not running here (vrrp process gone)"),
    ({"parent": "T", "vrrp": "T"}, "keepalived is stopped here (parent and vrrp process in state T)"),
])
def test_keepalived_not_heard_here(states, text):
    assert text in keepalived_problem(states)


def test_keepalived_running_is_no_problem():
    assert keepalived_problem({"parent": "S", "vrrp": "R"}) is None


def test_status_shows_the_seen_role_and_calls_a_contradicted_report_stale():
    s = VipSurvey(vip=VIP, local=False, state="MASTER", master_here=False, here="this VM has not advertised")
    assert s.seen_state == "not master"
    assert s.stale_report == "keepalived last reported vip_1 as MASTER here, but this VM has not advertised"
    agreed = VipSurvey(vip=VIP, local=False, state="BACKUP", master_here=False, here="x")
    assert (agreed.seen_state, agreed.stale_report) == ("BACKUP", None)
    unknown = VipSurvey(vip=VIP, local=False, state="MASTER")
    assert (unknown.seen_state, unknown.stale_report) == ("MASTER", None)
    gone = VipSurvey(vip=VIP, local=False, state="BACKUP", master_here=False, down="keepalived not running")
    assert gone.seen_state == "keepalived not running"


@pytest.mark.parametrize(("states", "down"), [
    ({"parent": None, "vrrp": "S"}, "keepalived not running"),
    ({"parent": "T", "vrrp": "S"}, "keepalived stopped"),
    ({"parent": "S", "vrrp": "R"}, None),
])
def test_keepalived_down(states, down):
    assert keepalived_down(states) == down
