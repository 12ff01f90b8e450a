"""The drain decision with a fake observer: no network, no keepalived, no sleeping."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

import pytest

from vipdrain.drain import Drain, DrainArgs, parse_drain_args
from vipdrain.errors import RuntimeFailure
from vipdrain.hold import read_hold
from vipdrain.layout import Layout
from vipdrain.model import DrainSettings, InstanceSpec, JobConfig, Peer, Vip
from vipdrain.verdicts import PeerAdvert, VipView

SELF = ipaddress.ip_address("192.0.2.10")
PEER = ipaddress.ip_address("192.0.2.11")


def make_cfg(n_vips: int = 1, peers: int = 1, **drain: object) -> JobConfig:
    vips = tuple(
        Vip(name=f"vip_{i + 1}", address=ipaddress.ip_address(f"192.0.2.{100 + i}"), virtual_router_id=1 + i,
            interface="eth0")
        for i in range(n_vips)
    )
    return JobConfig(
        instance=InstanceSpec(name="haproxy", index=0, id="a", bootstrap=True, ip=SELF),
        vips=vips,
        priority=150,
        peers=tuple(Peer(address=ipaddress.ip_address(f"192.0.2.{11 + i}"), index=1 + i) for i in range(peers)),
        drain=DrainSettings(timeout=5.0, poll_interval=0.1, **drain),  # type: ignore[arg-type]
    )


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


@dataclass
class FakeObserver:
    """A cluster in a script: `takeover_at` seconds after the drain starts, a peer becomes master."""

    cfg: JobConfig
    clock: FakeClock
    takeover_at: float | None = 1.0
    held: set[str] = field(default_factory=lambda: {"vip_1"})
    resigned: int = 0
    #: The peer dies this long after taking over (adverts stop, VIP comes back to us).
    peer_dies_at: float | None = None
    #: What the peer advertises once master (1: it is held, i.e. draining too).
    peer_priority: int = 100

    def collect(self, seconds: float, *, until_first: bool = False) -> None:
        self.clock.now += seconds

    #: Our keepalived sends one advert at its old priority right after the first resign.
    outdated_once: bool = False

    def outdated_advert_since(self, priority: int, since: float) -> bool:
        return self.outdated_once and self.resigned == 1

    #: keepalived is dead here; the VIP it left stays on our interface until someone removes it.
    dead_keepalived: bool = False

    def keepalived_running(self) -> bool:
        return not self.dead_keepalived

    #: Peers whose haproxy does not answer.
    broken: frozenset[str] = frozenset()

    def peer_problem(self, address) -> str | None:
        return "TCP connect refused" if str(address) in self.broken else None

    def resign(self) -> list[str]:
        self.resigned += 1
        return ["sent priority 0"]

    def views(self, own_priority: int) -> list[VipView]:
        t = self.clock.now
        peer_up = self.takeover_at is not None and t >= self.takeover_at
        if self.peer_dies_at is not None and t >= self.peer_dies_at:
            peer_up = False
        out = []
        for vip in self.cfg.vips:
            mine = vip.name in self.held and (self.dead_keepalived or not peer_up)
            advert = PeerAdvert(vip.virtual_router_id, 3, self.peer_priority, PEER, t) if peer_up else None
            healthy = advert if advert and advert.priority > own_priority else None
            out.append(VipView(vip, local=mine, state="MASTER" if mine else "BACKUP", peer_master=healthy,
                               own_priority=own_priority, draining_peer=advert if advert and not healthy else None))
        return out


@pytest.fixture
def layout(tmp_path) -> Layout:
    return Layout(root=tmp_path)


BOSH_CHANGED = DrainArgs(manual=False, action="job_changed")


COPIES: list[str] = []


def fake_copy(vip: Vip) -> str:
    COPIES.append(vip.name)
    return f"{vip.address} on lo"


def run(cfg, layout, obs, clock, args=BOSH_CHANGED):
    COPIES.clear()
    return Drain(cfg, layout, obs, clock=clock, sleep=clock.sleep, keep_copy=fake_copy).run(args)


def test_master_hands_over_and_keeps_hold(layout):
    clock = FakeClock()
    cfg = make_cfg()
    obs = FakeObserver(cfg, clock, takeover_at=1.0)
    out = run(cfg, layout, obs, clock)
    assert out.value == 0
    assert out.handoff_seconds is not None and 0.9 <= out.handoff_seconds <= 1.3
    assert "handed over to 192.0.2.11" in out.summary
    assert read_hold(layout).reasons == ["drain"]
    assert obs.resigned == 1
    assert COPIES == ["vip_1"]  # the VIP stays reachable here for packets already on their way


def test_backup_returns_at_once(layout):
    clock = FakeClock()
    cfg = make_cfg()
    obs = FakeObserver(cfg, clock, held=set())
    out = run(cfg, layout, obs, clock)
    assert out.value == 0 and "nothing to hand over" in out.summary
    assert clock.now == 0.0
    assert obs.resigned == 0 and COPIES == []
    assert read_hold(layout).track_value == 1


@pytest.mark.parametrize(("preserving", "open_here", "printed"), [
    (True, 2, 8),    # the VIP was taken from it by preemption: the new master forwards these here
    (True, 0, 0),    # nothing to keep: haproxy may stop at once
    (False, 2, 0),   # without preservation nobody forwards anything here
], ids=["serving", "idle", "off"])
def test_a_backup_waits_the_grace_period_only_while_it_serves_connections(layout, preserving, open_here, printed):
    clock = FakeClock()
    cfg = make_cfg(preserve_connections=preserving, preserve_grace=7.5)
    asked = []

    def connections(vips):
        asked.append(vips)
        return open_here

    drain = Drain(cfg, layout, FakeObserver(cfg, clock, held=set()), clock=clock, sleep=clock.sleep,
                  keep_copy=fake_copy, connections=connections)
    assert drain.run(BOSH_CHANGED).value == printed
    assert asked == ([[ipaddress.ip_address("192.0.2.100")]] if preserving else [])
    assert drain.run(DrainArgs(manual=True, action="manual")).value == 0  # an operator is never kept waiting


def test_single_instance_does_not_wait(layout):
    clock = FakeClock()
    cfg = make_cfg(peers=0)
    out = run(cfg, layout, FakeObserver(cfg, clock, takeover_at=None), clock)
    assert out.value == 0 and "single instance" in out.summary
    assert clock.now == 0.0


def test_no_takeover_proceed_policy_after_deadline(layout):
    clock = FakeClock()
    cfg = make_cfg()
    out = run(cfg, layout, FakeObserver(cfg, clock, takeover_at=None), clock)
    assert out.value == 0
    assert "proceeding without handoff" in out.summary and "no peer has advertised VRID 1" in out.summary
    assert 4.5 <= clock.now <= 5.2


def test_no_takeover_fail_policy_restores_priority(layout):
    clock = FakeClock()
    cfg = make_cfg(no_peer_policy="fail")
    with pytest.raises(RuntimeFailure, match=r"handoff failed.*no_peer_policy is 'fail'"):
        run(cfg, layout, FakeObserver(cfg, clock, takeover_at=None), clock)
    assert read_hold(layout).track_value == 0


def test_peer_dies_while_we_wait_reports_failure(layout):
    """The peer took over for a moment, then died: the VIP is back here, so no verified handoff."""
    clock = FakeClock()
    cfg = make_cfg(no_peer_policy="fail")
    obs = FakeObserver(cfg, clock, takeover_at=0.05, peer_dies_at=0.05)
    with pytest.raises(RuntimeFailure, match="handoff failed"):
        run(cfg, layout, obs, clock)


def test_all_vips_handed_over_together(layout):
    clock = FakeClock()
    cfg = make_cfg(n_vips=20)
    obs = FakeObserver(cfg, clock, takeover_at=1.0, held={f"vip_{i + 1}" for i in range(20)})
    out = run(cfg, layout, obs, clock)
    assert out.value == 0 and len(out.verdicts) == 20
    assert out.handoff_seconds is not None and out.handoff_seconds < 1.3


def test_dynamic_drain_prints_negative_then_zero(layout):
    clock = FakeClock()
    cfg = make_cfg(dynamic=True)
    obs = FakeObserver(cfg, clock, takeover_at=4.0)
    first = run(cfg, layout, obs, clock)
    assert first.value is not None and first.value < 0
    check = DrainArgs(manual=False, action="job_check_status")
    clock.now = 0.5
    assert run(cfg, layout, obs, clock, check).value == first.value
    assert clock.now >= 0.5 + 1.5  # each call-back listens long enough to hear a master's advert
    clock.now = 4.0
    assert run(cfg, layout, obs, clock, check).value == 0


def test_check_status_without_drain_in_progress_restarts_drain(layout):
    clock = FakeClock()
    cfg = make_cfg(dynamic=True)
    obs = FakeObserver(cfg, clock, takeover_at=10.0)
    out = run(cfg, layout, obs, clock, DrainArgs(manual=False, action="job_check_status"))
    assert out.value is not None and out.value < 0
    assert read_hold(layout).reasons == ["drain"]


def test_second_call_is_idempotent(layout):
    clock = FakeClock()
    cfg = make_cfg()
    obs = FakeObserver(cfg, clock, takeover_at=1.0)
    assert run(cfg, layout, obs, clock).value == 0
    assert run(cfg, layout, obs, clock).value == 0
    assert read_hold(layout).reasons == ["drain"]


def test_disabled_drain_does_nothing(layout):
    clock = FakeClock()
    cfg = make_cfg(enabled=False)
    out = run(cfg, layout, FakeObserver(cfg, clock), clock)
    assert out.value == 0 and "disabled" in out.summary
    assert not read_hold(layout).active


def test_manual_drain_sets_maintenance_and_reports_progress(layout):
    clock = FakeClock()
    cfg = make_cfg()
    lines: list[str] = []
    drain = Drain(cfg, layout, FakeObserver(cfg, clock, takeover_at=2.5), clock=clock, sleep=clock.sleep,
                  progress=lines.append, keep_copy=fake_copy)
    assert drain.run(parse_drain_args([])).value == 0
    assert read_hold(layout).reasons == ["maintenance"]
    assert lines and "no peer has advertised" in lines[0] and "/ 5s]" in lines[0]


def test_resign_advert_can_be_turned_off(layout):
    clock = FakeClock()
    cfg = make_cfg(resign_advert=False)
    obs = FakeObserver(cfg, clock)
    run(cfg, layout, obs, clock)
    assert obs.resigned == 0


@pytest.mark.parametrize(
    ("argv", "action", "warns"),
    [
        (["job_changed", "hash_changed", "haproxy"], "job_changed", 0),
        (["job_shutdown", "hash_unchanged"], "job_shutdown", 0),
        (["job_check_status", "hash_unchanged"], "job_check_status", 0),
        (["job_exploded", "hash_changed"], "job_changed", 1),
        (["job_changed", "hash_weird"], "job_changed", 1),
    ],
)
def test_parse_bosh_args(argv, action, warns):
    args = parse_drain_args(argv)
    assert not args.manual and args.action == action and len(args.warnings) == warns


def test_parse_manual():
    assert parse_drain_args([]).manual
    assert parse_drain_args([]).reason == "maintenance"
    assert replace(parse_drain_args(["job_changed"])).reason == "drain"


def test_resign_is_repeated_when_keepalived_advertised_its_old_priority_after_it(layout):
    clock = FakeClock()
    cfg = make_cfg()
    obs = FakeObserver(cfg, clock, takeover_at=1.0, outdated_once=True)
    assert run(cfg, layout, obs, clock).value == 0
    assert obs.resigned == 2


def test_vip_left_by_a_dead_keepalived_is_removed_once_a_peer_holds_it(layout):
    clock = FakeClock()
    cfg = make_cfg()
    obs = FakeObserver(cfg, clock, takeover_at=0.5, dead_keepalived=True)
    dropped: list[str] = []

    def drop(vip: Vip) -> str:
        dropped.append(vip.name)
        obs.held.discard(vip.name)
        return "removed"

    drain = Drain(cfg, layout, obs, clock=clock, sleep=clock.sleep, keep_copy=fake_copy, drop_stale=drop)
    assert drain.run(BOSH_CHANGED).value == 0
    assert dropped == ["vip_1"] and clock.now >= 0.5  # never before the peer was proven


def test_vip_taken_by_a_peer_that_drains_too_ends_the_wait_at_once(layout):
    """max_in_flight covering the group: the other VM is held as well; no need to wait 5 s."""
    clock = FakeClock()
    cfg = make_cfg()
    out = run(cfg, layout, FakeObserver(cfg, clock, takeover_at=0.5, peer_priority=1), clock)
    assert out.value == 0 and "draining too" in out.summary
    assert clock.now < 1.0


def test_no_peer_that_can_serve_means_no_handoff_attempt(layout):
    clock = FakeClock()
    cfg = make_cfg(no_peer_policy="fail")
    obs = FakeObserver(cfg, clock, broken=frozenset({"192.0.2.11"}))
    with pytest.raises(RuntimeFailure, match="no peer's haproxy answers: TCP connect refused"):
        run(cfg, layout, obs, clock)
    assert obs.resigned == 0 and COPIES == [] and clock.now == 0.0
    assert not read_hold(layout).active


def test_peer_check_can_be_turned_off(layout):
    clock = FakeClock()
    cfg = make_cfg(peer_check=False)
    assert run(cfg, layout, FakeObserver(cfg, clock, broken=frozenset({"192.0.2.11"})), clock).value == 0
