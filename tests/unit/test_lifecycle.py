"""The lifecycle decisions without root: pre-start's hold, post-start's readiness and its wait for
the takeover it causes, post-deploy's settling (one fake observer, `fakes.FakeObserver`)."""

from __future__ import annotations

import functools

import pytest
from fakes import FakeClock, FakeObserver, job_config
from test_survey import MAC_HERE, MAC_PEER, survey_with_effects

from vipdrain.errors import RuntimeFailure
from vipdrain.hold import read_hold, set_hold
from vipdrain.layout import Layout
from vipdrain.lifecycle import join_held, post_deploy, post_start
from vipdrain.model import DrainSettings, HaproxySettings
from vipdrain.notify import record_transition
from vipdrain.preemption import await_preemption, settle_arms
from vipdrain.preserve import Armed


@pytest.fixture
def layout(tmp_path) -> Layout:
    for d in Layout(root=tmp_path).dirs():
        d.mkdir(parents=True, exist_ok=True)
    return Layout(root=tmp_path)


# --- pre-start ---------------------------------------------------------------------------------


def test_pre_start_joins_held_and_ends_the_last_drain(layout):
    set_hold(layout, add=("drain",))
    assert join_held(job_config(), layout) == []
    hold = read_hold(layout)
    assert hold.reasons == ["joining"] and hold.track_value == 1


def test_pre_start_keeps_maintenance_and_says_so(layout):
    set_hold(layout, add=("maintenance",))
    [warning] = join_held(job_config(), layout)
    assert "maintenance is on" in warning and read_hold(layout).reasons == ["joining", "maintenance"]


def test_pre_start_warns_when_haproxy_would_drain_before_the_vip_left(layout):
    cfg = job_config(drain=DrainSettings(timeout=30.0), haproxy=HaproxySettings(drain_grace_time=10.0))
    [warning] = join_held(cfg, layout)
    assert "drain_grace_time is 10 s, shorter than vipdrain.drain.timeout (30 s)" in warning


# --- post-start --------------------------------------------------------------------------------


def test_post_start_keeps_the_hold_until_haproxy_and_keepalived_are_ready(layout):
    cfg = job_config(vips=2)
    set_hold(layout, add=("joining",))
    record_transition(layout, "INSTANCE", "vip_1", "BACKUP", 100)
    clock = FakeClock()
    with pytest.raises(RuntimeFailure) as failed:
        post_start(cfg, layout, lambda: "connection refused", timeout=5.0, sleep=clock.sleep,
                   keepalived_since=lambda _: None, clock=clock)
    message = str(failed.value)
    assert "not ready after 5 s, keeping this VM held" in message
    for reason in ("haproxy: connection refused", "keepalived is not running",
                   "vip_2 is not reported yet by the running keepalived"):
        assert reason in message
    assert read_hold(layout).reasons == ["joining"]


def test_post_start_releases_the_hold_once_ready(layout):
    cfg = job_config()
    set_hold(layout, add=("joining", "drain"))
    clock = FakeClock()
    answers = iter(["connection refused", None])
    record_transition(layout, "INSTANCE", "vip_1", "BACKUP", 100)
    started = post_start(cfg, layout, lambda: next(answers), timeout=5.0, sleep=clock.sleep,
                         keepalived_since=lambda _: 0.0, clock=clock)
    assert started.waited == pytest.approx(0.2) and not read_hold(layout).active


def test_post_start_ignores_the_state_an_earlier_keepalived_reported(layout):
    """The state file outlives a restart: the old keepalived's BACKUP stays there while the new
    one starts in FAULT (init_fail). Released on that stale BACKUP, the VM was reported ready
    while it could not take the VIP (CI: a split brain that post-deploy then did not see)."""
    cfg = job_config()
    set_hold(layout, add=("joining",))
    stale = record_transition(layout, "INSTANCE", "vip_1", "BACKUP", 100)
    clock = FakeClock()
    with pytest.raises(RuntimeFailure) as failed:
        post_start(cfg, layout, lambda: None, timeout=2.0, sleep=clock.sleep,
                   keepalived_since=lambda _: stale.time + 3.0, clock=clock)
    assert "vip_1 is not reported yet by the running keepalived" in str(failed.value)
    assert read_hold(layout).reasons == ["joining"]


def test_post_start_waits_for_the_preemption_its_release_causes(layout):
    cfg = job_config(priority=200)
    obs = FakeObserver(cfg, FakeClock(100.0))
    obs.masters.append((cfg.vips[0], "192.0.2.11", 150, MAC_PEER))  # a lower master: this VM takes over
    obs.events.append((103.5, lambda o: o.here.add("vip_1")))
    assert await_preemption(cfg, layout, obs, clock=obs.clock) == []
    assert obs.clock.now >= 103.5


def test_post_start_warns_when_the_takeover_does_not_come(layout):
    cfg = job_config(priority=200)
    obs = FakeObserver(cfg, FakeClock(100.0))
    obs.masters.append((cfg.vips[0], "192.0.2.11", 150, MAC_PEER))
    [warning] = await_preemption(cfg, layout, obs, clock=obs.clock)
    assert "outranks the master of vip_1 but did not take it within 6 s" in warning


def test_the_wait_ends_when_a_vm_that_outranks_this_one_takes_the_vip(layout):
    """Two releases at once (post-start here, undrain of the bootstrap VM there): the better VM
    preempts the master first; this one stops waiting, without a warning."""
    cfg = job_config(priority=150)
    obs = FakeObserver(cfg, FakeClock(100.0))
    obs.masters.append((cfg.vips[0], "192.0.2.11", 100, MAC_PEER))
    obs.events.append((103.0, lambda o: o.masters.__setitem__(0, (cfg.vips[0], "192.0.2.12", 200, MAC_PEER))))
    assert await_preemption(cfg, layout, obs, clock=obs.clock) == []
    assert obs.clock.now < 104.5


def test_post_start_does_not_wait_for_a_better_master(layout):
    cfg = job_config(priority=100)
    obs = FakeObserver(cfg, FakeClock(100.0))
    obs.masters.append((cfg.vips[0], "192.0.2.11", 150, MAC_PEER))
    assert await_preemption(cfg, layout, obs, clock=obs.clock) == []
    assert obs.listened == [pytest.approx(1.7)]  # one look, long enough to hear every master


def settle(cfg, layout, obs, armed):
    disarmed = []
    warnings = settle_arms(cfg, layout, obs, armed, disarm=lambda _cfg, arms: disarmed.extend(arms) or [])
    return warnings, disarmed


def test_the_takeover_arm_stays_when_the_vip_was_taken(layout):
    cfg = job_config(priority=200)
    obs = FakeObserver(cfg, FakeClock(100.0))
    obs.here.add("vip_1")
    assert settle(cfg, layout, obs, Armed(arms=((cfg.vips[0], MAC_PEER),))) == ([], [])


def test_the_takeover_arm_goes_when_another_vm_won_the_election(layout):
    """The defect this fixes: the arm stayed for grace + 4 x advert_int + 1 s, and a crash of the
    master in that time was black-holed on this VM (its old connections forwarded to a dead MAC)."""
    cfg = job_config(priority=200, vips=2)
    obs = FakeObserver(cfg, FakeClock(100.0))
    obs.here.add("vip_1")
    armed = Armed(arms=((cfg.vips[0], MAC_PEER), (cfg.vips[1], MAC_PEER)))
    assert settle(cfg, layout, obs, armed) == ([], [(cfg.vips[1], MAC_PEER)])


def test_nothing_armed_nothing_to_settle(layout):
    cfg = job_config(priority=200)
    assert settle(cfg, layout, FakeObserver(cfg, FakeClock(100.0)), Armed()) == ([], [])


# --- post-deploy -------------------------------------------------------------------------------


def deploy_end(layout, obs, budget=10.0):
    return post_deploy(obs.cfg, layout, obs, budget=budget, clock=obs.clock,
                       survey=functools.partial(survey_with_effects, arp={"192.0.2.100": [MAC_HERE]}))


def test_post_deploy_passes_after_two_clean_looks_and_clears_leftover_holds(layout):
    set_hold(layout, add=("drain",))
    obs = FakeObserver(job_config(), FakeClock(100.0), here={"vip_1"})
    report = deploy_end(layout, obs)
    assert report.problems == [] and report.warnings == ["cleared a leftover hold (drain)"]
    assert len(obs.listened) == 2 and not read_hold(layout).active


def test_post_deploy_waits_out_a_split_brain_that_heals(layout):
    obs = FakeObserver(job_config(), FakeClock(100.0), here={"vip_1"})
    obs.masters.append((obs.cfg.vips[0], "192.0.2.11", 100, MAC_PEER))  # a second master...
    obs.events.append((105.0, lambda o: o.masters.clear()))  # ...that steps down
    report = deploy_end(layout, obs)
    assert report.problems == [] and obs.clock.now > 105.0


def test_post_deploy_fails_on_a_split_brain_that_stays(layout):
    obs = FakeObserver(job_config(), FakeClock(100.0), here={"vip_1"})
    obs.masters.append((obs.cfg.vips[0], "192.0.2.11", 100, MAC_PEER))
    report = deploy_end(layout, obs)
    assert [p[:11] for p in report.problems] == ["SPLIT BRAIN"]
    assert obs.clock.now >= 110.0  # the whole budget


def test_post_deploy_warns_when_the_bootstrap_vm_does_not_hold_the_vip(layout):
    obs = FakeObserver(job_config(), FakeClock(100.0))
    obs.masters.append((obs.cfg.vips[0], "192.0.2.11", 100, MAC_PEER))
    report = post_deploy(obs.cfg, layout, obs, budget=3.0, clock=obs.clock,
                         survey=functools.partial(survey_with_effects, arp={}))
    assert report.problems == []
    assert report.warnings == ["vip_1 is held by haproxy/1 (192.0.2.11), not by the bootstrap VM 192.0.2.10"]
