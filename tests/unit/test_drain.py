"""The drain decision with a fake observer: no network, no keepalived, no sleeping."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
from fakes import FakeClock, job_config

from vipdrain.drain import Drain, DrainArgs, DrainCancelled, parse_drain_args
from vipdrain.errors import RuntimeFailure
from vipdrain.hold import read_hold, set_hold
from vipdrain.layout import Layout
from vipdrain.model import DrainSettings, HealthCheck, InstanceSpec, JobConfig, Peer, Vip
from vipdrain.verdicts import Candidate, PeerAdvert, VipView, choose_taker, takeover_order

SELF = ipaddress.ip_address("192.0.2.10")
PEER = ipaddress.ip_address("192.0.2.11")
SECOND = ipaddress.ip_address("192.0.2.12")
#: keepalived's check fences a peer after (fall + 1) x interval + timeout = 4 s of failures here.
CHECK = HealthCheck(command="", interval=1.0, timeout=1.0, fall=2, rise=2)


def make_cfg(n_vips: int = 1, peers: int = 1, healthcheck: HealthCheck | None = CHECK, **drain: object) -> JobConfig:
    """Without connection preservation unless `drain` turns it on (it would send notices for real)."""
    settings = {"timeout": 5.0, "poll_interval": 0.1, "preserve_connections": False, **drain}
    return job_config(n_vips, peers, priority=150, healthcheck=healthcheck,
                      drain=DrainSettings(**settings))  # type: ignore[arg-type]


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

    #: The peer that takes over at `takeover_at`, and (time, peer) when another one preempts it.
    taker: object = PEER
    moves_on: tuple[float, object] | None = None
    #: Things that happen at a time while the drain listens (e.g. an operator's undrain).
    events: list[tuple[float, Callable[[], None]]] = field(default_factory=list)

    def collect(self, seconds: float, *, until_first: bool = False) -> None:
        self.clock.now += seconds
        due = [e for e in self.events if e[0] <= self.clock.now]
        self.events = [e for e in self.events if e[0] > self.clock.now]
        for _, event in due:
            event()

    #: Our keepalived sends one advert at its old priority right after the first resign.
    outdated_once: bool = False

    def outdated_advert_since(self, priority: int, since: float) -> bool:
        return self.outdated_once and self.resigned == 1

    #: keepalived is dead here; the VIP it left stays on our interface until someone removes it.
    dead_keepalived: bool = False

    def keepalived_running(self) -> bool:
        return not self.dead_keepalived

    #: Peers whose haproxy does not answer (until the time given in `broken_until`, if any).
    broken: frozenset[str] = frozenset()
    broken_until: dict[str, float] = field(default_factory=dict)
    probed: list[str] = field(default_factory=list)

    def peer_problem(self, address) -> str | None:
        self.probed.append(str(address))
        if str(address) in self.broken_until:
            return "no answer" if self.clock.now < self.broken_until[str(address)] else None
        return "TCP connect refused" if str(address) in self.broken else None

    #: Where the resign adverts went (None: the group).
    resigned_to: list[object] = field(default_factory=list)

    def prepare_resign(self, to) -> str:
        return f"resign adverts go to {to} only"

    resign_times: list[float] = field(default_factory=list)

    def resign(self, to=None) -> list[str]:
        self.resigned += 1
        self.resigned_to.append(to)
        self.resign_times.append(self.clock.now)
        return ["sent priority 0"]

    def views(self, own_priority: int) -> list[VipView]:
        t = self.clock.now
        peer_up = self.takeover_at is not None and t >= self.takeover_at
        if self.peer_dies_at is not None and t >= self.peer_dies_at:
            peer_up = False
        out = []
        for vip in self.cfg.vips:
            mine = vip.name in self.held and (self.dead_keepalived or not peer_up)
            source = self.moves_on[1] if self.moves_on and t >= self.moves_on[0] else self.taker
            advert = PeerAdvert(vip.virtual_router_id, 3, self.peer_priority, source, t) if peer_up else None
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


def test_a_drain_retried_after_the_handoff_still_gives_the_grace_period(layout):
    """BOSH calls the drain again when the first call died after its resign: this VM holds
    nothing any more and, between two short requests, serves no connection, yet the peer
    forwards the ones it had back here for the grace period (CI: the retry printed 0)."""
    clock = FakeClock()
    cfg = make_cfg(preserve_connections=True, preserve_grace=7.5)
    drain = Drain(cfg, layout, FakeObserver(cfg, clock, held=set()), clock=clock, sleep=clock.sleep,
                  keep_copy=fake_copy, connections=lambda _vips: 0)
    assert drain.run(BOSH_CHANGED).value == 0  # the first call: nothing was handed over here
    assert drain.run(BOSH_CHANGED).value == 8  # a retry: the drain hold was already on


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
    [warning] = out.warnings  # returned for the CLI to log once
    assert warning.startswith("NO VERIFIED HANDOFF: no peer took over within")


def test_warnings_are_returned_in_the_outcome_and_logged_when_the_drain_fails(layout, caplog):
    """kubectl's drain habit: the BOSH arguments' warnings (and any later) come back with the outcome;
    a drain that raises logs them first, so they are not lost."""
    clock = FakeClock()
    odd = parse_drain_args(["job_changed", "weird_state"])
    out = run(make_cfg(), layout, FakeObserver(make_cfg(), clock, takeover_at=0.5), clock, args=odd)
    assert out.value == 0 and out.warnings == list(odd.warnings) and len(out.warnings) == 1
    cfg = make_cfg(no_peer_policy="fail")
    with caplog.at_level("WARNING", logger="vipdrain.drain"), pytest.raises(RuntimeFailure):
        run(cfg, layout, FakeObserver(cfg, clock, takeover_at=None), clock, args=odd)
    assert odd.warnings[0] in caplog.text


def test_no_takeover_fail_policy_restores_priority(layout):
    clock = FakeClock()
    cfg = make_cfg(no_peer_policy="fail")
    with pytest.raises(RuntimeFailure, match=r"handoff failed.*no_peer_policy is 'fail'"):
        run(cfg, layout, FakeObserver(cfg, clock, takeover_at=None), clock)
    assert read_hold(layout).track_value == 0


@pytest.mark.parametrize(("took_over", "died"), [(0.05, 0.05), (0.5, 1.5)], ids=["at-once", "in-the-window"])
def test_peer_dies_while_we_wait_reports_failure(layout, took_over, died):
    """The peer took over for a moment, then died: the VIP is back here, so no verified handoff -
    also when it dies after the handoff was verified, within the confirmation window (issue 18)."""
    clock = FakeClock()
    cfg = make_cfg(no_peer_policy="fail")
    obs = FakeObserver(cfg, clock, takeover_at=took_over, peer_dies_at=died)
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
    out = drain.run(BOSH_CHANGED)
    assert out.value == 0 and out.warnings == ["removed"]
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
    with pytest.raises(RuntimeFailure, match=r"no peer.s haproxy answers: 192\.0\.2\.11: TCP connect refused"):
        run(cfg, layout, obs, clock)
    assert obs.resigned == 0 and COPIES == [] and clock.now == 0.0
    assert not read_hold(layout).active


def test_peer_check_can_be_turned_off(layout):
    clock = FakeClock()
    cfg = make_cfg(peer_check=False)
    assert run(cfg, layout, FakeObserver(cfg, clock, broken=frozenset({"192.0.2.11"})), clock).value == 0


# --- issue 18: the taker, the confirmation window, undrain -------------------------------------


def test_resign_goes_to_the_peer_that_will_take_over(layout):
    """Preferred placement: index 1 (priority 150) outranks index 2 (125)."""
    clock = FakeClock()
    cfg = make_cfg(peers=2)
    obs = FakeObserver(cfg, clock, takeover_at=1.0)
    assert run(cfg, layout, obs, clock).value == 0
    assert obs.resigned_to == [PEER]


def test_a_taker_whose_haproxy_died_is_waited_for_until_fenced_then_the_next_takes_over(layout):
    """Issue 18, item 2: the best peer's haproxy just died; its keepalived is still BACKUP (its
    check has not failed `fall` times yet). Handing over now would give it the VIP."""
    clock = FakeClock()
    cfg = make_cfg(peers=2)
    obs = FakeObserver(cfg, clock, takeover_at=5.0, taker=SECOND, broken=frozenset({str(PEER)}))
    out = run(cfg, layout, obs, clock)
    assert out.value == 0 and f"handed over to {SECOND}" in out.summary
    assert obs.resigned_to == [SECOND]
    assert obs.resign_times[0] >= 4.0  # not before keepalived on vm1 has fenced it


def test_a_taker_whose_haproxy_answers_again_is_handed_the_vip(layout):
    clock = FakeClock()
    cfg = make_cfg(peers=2)
    obs = FakeObserver(cfg, clock, takeover_at=3.0, broken_until={str(PEER): 1.5})
    out = run(cfg, layout, obs, clock)
    assert out.value == 0 and obs.resigned_to == [PEER]
    assert 1.5 <= obs.resign_times[0] < 4.0


def test_without_a_health_check_an_unfit_taker_is_never_fenced(layout):
    clock = FakeClock()
    cfg = make_cfg(peers=2, healthcheck=None, no_peer_policy="fail")
    obs = FakeObserver(cfg, clock, taker=SECOND, broken=frozenset({str(PEER)}))
    with pytest.raises(RuntimeFailure, match=f"no fit peer within .*{PEER} would take over"):
        run(cfg, layout, obs, clock)
    assert obs.resigned == 0 and not read_hold(layout).active


def test_a_holder_that_is_preempted_within_the_window_is_the_one_reported(layout):
    """Issue 18, item 7: vm2 took the VIP first, vm1 preempted it a second later; the summary
    named vm2. The confirmation window waits out a backup still racing."""
    clock = FakeClock()
    cfg = make_cfg(peers=2)
    obs = FakeObserver(cfg, clock, takeover_at=0.5, taker=SECOND, moves_on=(1.5, PEER))
    out = run(cfg, layout, obs, clock)
    assert out.value == 0
    assert f"handed over to {PEER}" in out.summary and str(SECOND) not in out.summary


def test_the_confirmation_window_covers_a_racing_backup(layout):
    """It lasts until 3 x advert_int + 0.5 s after the resign (a backup whose timer ran then has
    fired by that time), and at least two adverts after the handoff."""
    clock = FakeClock()
    cfg = make_cfg()
    obs = FakeObserver(cfg, clock, takeover_at=0.5)
    out = run(cfg, layout, obs, clock)
    assert out.handoff_seconds is not None and out.handoff_seconds < 1.0
    assert clock.now >= 3.5 and "confirmed" in out.summary


@pytest.mark.parametrize("args", [BOSH_CHANGED, parse_drain_args([])], ids=["bosh", "manual"])
def test_undrain_while_waiting_cancels_the_drain(layout, args):
    """Issue 18, item 8: the drain went on resigning and returned "proceeding without handoff"."""
    clock = FakeClock()
    cfg = make_cfg()
    obs = FakeObserver(cfg, clock, takeover_at=None)
    obs.events = [(1.0, lambda: set_hold(layout, remove=("maintenance", "drain")))]
    with pytest.raises(DrainCancelled, match=r"drain cancelled: .* released \(vipdrain undrain\)"):
        run(cfg, layout, obs, clock, args)
    assert clock.now < 1.5 and obs.resigned == 1
    assert not read_hold(layout).active


def test_takeover_order_follows_the_priorities():
    me = InstanceSpec(name="h", index=0, id="a", bootstrap=True, ip=SELF)
    p1, p2 = Peer(PEER, index=1), Peer(SECOND, index=2)
    assert takeover_order(me, [p2, p1], "preferred") == [p1, p2]
    backup = InstanceSpec(name="h", index=2, id="c", bootstrap=False, ip=SECOND)
    boot = Peer(SELF, index=0, bootstrap=True)
    assert takeover_order(backup, [p1, boot], "sticky") == [boot, p1]
    unknown = Peer(ipaddress.ip_address("192.0.2.9"))
    assert takeover_order(me, [p1, unknown], "preferred")[0] == unknown  # may have any priority


def test_choose_taker():
    ok, bad = Candidate(PEER), Candidate(PEER, "no answer", 1.0)
    assert choose_taker([ok], 4.0).taker == PEER
    waiting = choose_taker([bad, Candidate(SECOND)], 4.0)
    assert waiting.wait and waiting.taker is None and "within 3.0 s" in waiting.reason
    fenced = choose_taker([replace(bad, failing_for=4.0), Candidate(SECOND)], 4.0)
    assert fenced.taker == SECOND and "out of the election" in fenced.reason
    assert choose_taker([bad, Candidate(SECOND)], None).wait
    none = choose_taker([bad, Candidate(SECOND, "refused")], 4.0)
    assert none.taker is None and not none.wait and "no peer's haproxy answers" in none.reason


@dataclass
class ChattyObserver(FakeObserver):
    """Adverts arrive every millisecond (many VIPs): a `collect` that may return at the first one does."""

    looks: list[float] = field(default_factory=list)

    def collect(self, seconds: float, *, until_first: bool = False) -> None:
        super().collect(min(seconds, 0.001) if until_first else seconds)

    def views(self, own_priority: int) -> list[VipView]:
        self.looks.append(self.clock.now)
        return super().views(own_priority)


def test_looks_come_at_most_every_half_poll_interval_however_many_adverts_arrive(layout):
    """With 50 VIPs a look per advert heard (100 a second) was most of the drain's CPU."""
    clock = FakeClock()
    cfg = make_cfg(poll_interval=0.1)
    obs = ChattyObserver(cfg, clock, takeover_at=1.0)
    out = run(cfg, layout, obs, clock)
    assert out.value == 0
    gaps = [b - a for a, b in zip(obs.looks[1:], obs.looks[2:], strict=False)]  # the first is the plan's
    assert gaps and min(gaps) >= 0.05 - 1e-9, min(gaps)
