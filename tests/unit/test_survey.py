"""The survey's verdicts (what fails `vipdrain post-deploy` and `status`), without root: one fake
observer for the wire, and the survey's other effects (ARP, MACs, processes) replaced by hand."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from fakes import FakeClock, FakeObserver, job_config

from vipdrain.layout import Layout
from vipdrain.notify import Reader
from vipdrain.survey import Survey, take_survey

MAC_HERE = "02:00:00:00:00:10"
MAC_PEER = "02:00:00:00:00:11"
MAC_SECOND = "02:00:00:00:00:12"
RUNNING = {"parent": "S", "vrrp": "S"}


def who_has(answers: dict[str, list[str]]):
    """`vrrp.who_has` on a segment where the peers answer for their own address (one MAC each)
    and `answers` maps VIP addresses to the MACs that answer for them."""
    def probe(interface, targets, sender, timeout) -> dict[Any, list[str]]:
        own = {"192.0.2.11": [MAC_PEER], "192.0.2.12": [MAC_SECOND]}
        return {t: (answers.get(str(t)) or own.get(str(t), [])) for t in targets}
    return probe


def survey(observer: FakeObserver, layout: Layout, *, arp: dict[str, list[str]] | None = None,
           states: dict[str, str | None] | None = None) -> Survey:
    return take_survey(observer.cfg, layout, observer, listen=1.7, probe=who_has(arp or {}),
                       mac_of=lambda interface: MAC_HERE, forwarding=lambda cfg: {},
                       readers=lambda layout: [Reader(4242, "S")],
                       process_states=lambda layout: RUNNING if states is None else states, clock=observer.clock)


@pytest.fixture
def layout(tmp_path) -> Layout:
    return Layout(root=tmp_path)


def test_one_holder_heard_from_every_peer_is_no_problem(layout):
    cfg = job_config(peers=2)
    obs = FakeObserver(cfg, FakeClock(100.0), here={"vip_1"})
    # haproxy/1 is a silent backup; haproxy/2 resigned (priority 0 claims nothing).
    obs.masters.append((cfg.vips[0], "192.0.2.12", 0, MAC_SECOND))
    result = survey(obs, layout, arp={"192.0.2.100": [MAC_HERE]})
    assert [s.verdict for s in result.vips] == ["ok"]
    assert result.vips[0].holders[0].how == "here" and result.vips[0].holders[0].name == "haproxy/0"
    assert result.not_heard == ["haproxy/1 (192.0.2.11)"]
    assert result.problems == []


def test_split_brain_names_both_holders(layout):
    cfg = job_config(peers=1)
    obs = FakeObserver(cfg, FakeClock(100.0), here={"vip_1"})
    obs.masters.append((cfg.vips[0], "192.0.2.11", 100, MAC_PEER))
    result = survey(obs, layout, arp={"192.0.2.100": [MAC_HERE]})
    assert result.vips[0].verdict == "split brain"
    [problem] = result.problems
    assert "SPLIT BRAIN: vip_1 (192.0.2.100) is held by 2 VMs" in problem
    assert "haproxy/0 (192.0.2.10)" in problem and "haproxy/1 (192.0.2.11)" in problem
    assert result.not_heard == []


def test_an_advert_older_than_a_master_sends_them_no_longer_counts(layout):
    """A master advertises every advert_int: one heard 1.5 intervals (+ slack) ago stopped."""
    cfg = job_config(peers=1)
    obs = FakeObserver(cfg, FakeClock(100.0), here={"vip_1"})
    obs.hear(cfg.vips[0], "192.0.2.11", 100, MAC_PEER)  # once, then silent
    obs.clock.now += 0.05  # heard 1.75 s before the survey looks (it listens 1.7 s first)
    result = survey(obs, layout, arp={"192.0.2.100": [MAC_HERE]})
    assert result.vips[0].verdict == "ok" and result.problems == []
    assert result.not_heard == []  # heard it is, holder it is not


def test_a_vip_nobody_holds_is_a_problem(layout):
    cfg = job_config(vips=2, peers=1)
    obs = FakeObserver(cfg, FakeClock(100.0))
    obs.masters.append((cfg.vips[1], "192.0.2.11", 100, MAC_PEER))
    result = survey(obs, layout)
    assert [s.verdict for s in result.vips] == ["unowned", "ok"]
    assert result.problems == ["vip_1 (192.0.2.100) has NO holder: clients get no answer"]


def test_a_stranger_answering_arp_for_the_vip_is_a_holder(layout):
    cfg = job_config(peers=1)
    obs = FakeObserver(cfg, FakeClock(100.0), here={"vip_1"})
    result = survey(obs, layout, arp={"192.0.2.100": ["02:00:00:00:00:99"]})
    assert result.vips[0].verdict == "split brain"
    assert "a machine outside the group (02:00:00:00:00:99)" in result.problems[0]


@pytest.mark.parametrize(("states", "role", "said"), [
    ({"parent": None, "vrrp": None}, "keepalived not running", "keepalived is not running here"),
    ({"parent": "S", "vrrp": "T"}, "keepalived stopped", "keepalived is stopped here (vrrp process in state T)"),
])
def test_keepalived_not_running_here_fails_the_survey(layout, states, role, said):
    cfg = job_config(peers=1)
    obs = FakeObserver(cfg, FakeClock(100.0))
    obs.masters.append((cfg.vips[0], "192.0.2.11", 100, MAC_PEER))
    result = survey(obs, layout, states=states)
    assert result.vips[0].verdict == "ok" and result.vips[0].seen_state == role
    assert result.problems[0].startswith(said)
    assert result.reader_problem is None  # no keepalived: no reader expected


def test_the_survey_listens_long_enough_to_hear_every_master(layout):
    from vipdrain.lifecycle import post_deploy

    cfg = job_config(peers=1, advert_int=2.0)
    obs = FakeObserver(cfg, FakeClock(100.0), here={"vip_1"})
    post_deploy(cfg, layout, obs, budget=0.0, clock=obs.clock,
                survey=functools.partial(survey_with_effects, arp={"192.0.2.100": [MAC_HERE]}))
    assert obs.listened == [pytest.approx(3.2)]  # 1.5 x 2 s + 0.2 s


def survey_with_effects(cfg, layout, observer, listen, *, arp):
    return take_survey(cfg, layout, observer, listen, probe=who_has(arp), mac_of=lambda i: MAC_HERE,
                       forwarding=lambda cfg: {}, readers=lambda layout: [Reader(4242, "S")],
                       process_states=lambda layout: RUNNING, clock=observer.clock)
