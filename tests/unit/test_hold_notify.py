"""Hold and notify files: what keepalived reads and what vipdrain records."""

from __future__ import annotations

import os
import shutil
from typing import ClassVar

import pytest
from fakes import job_config

from vipdrain.hold import read_hold, set_hold
from vipdrain.layout import Layout
from vipdrain.notify import follow_fifo, parse_fifo_line, read_state, recent_transitions, record_transition
from vipdrain.preserve import Armed
from vipdrain.procs import alive, read_pid, running_pid
from vipdrain.vrrp.timing import hear_every_master


@pytest.fixture
def layout(tmp_path) -> Layout:
    return Layout(root=tmp_path)


def test_reasons_are_independent(layout):
    set_hold(layout, add=("joining",), now=1.0)
    set_hold(layout, add=("maintenance",), now=2.0)
    assert layout.hold_track_file.read_text() == "1\n"
    hold = set_hold(layout, remove=("joining",))
    assert hold.reasons == ["maintenance"] and hold.track_value == 1
    hold = set_hold(layout, remove=("maintenance",))
    assert not hold.active and layout.hold_track_file.read_text() == "0\n"


def test_maintenance_is_on_disk_the_rest_on_the_tmpfs(layout):
    """A reboot wipes sys/run (the agent's tmpfs): maintenance survives it, drain and joining do not."""
    set_hold(layout, add=("maintenance", "drain", "joining"), now=5.0)
    assert layout.maintenance_track_file.read_text() == "1\n" and layout.hold_track_file.read_text() == "1\n"
    shutil.rmtree(layout.root / "sys" / "run")  # the reboot
    hold = read_hold(layout)
    assert hold.since == {"maintenance": 5.0} and hold.track_value == 1 and hold.warnings == ()
    layout.run_dir.mkdir(parents=True)
    cleared = set_hold(layout, remove=("maintenance",))
    assert not cleared.active and layout.maintenance_track_file.read_text() == "0\n"


def test_maintenance_recorded_on_the_tmpfs_moves_to_disk(layout):
    """A VM put in maintenance by an older vipdrain (reason in sys/run) keeps it on disk from then on."""
    layout.run_dir.mkdir(parents=True)
    layout.hold_state_file.write_text('{"maintenance": 3.0}\n')
    layout.hold_track_file.write_text("1\n")
    set_hold(layout, add=("joining",), now=4.0)
    assert layout.maintenance_state_file.read_text() == '{"maintenance": 3.0}\n'
    assert layout.hold_state_file.read_text() == '{"joining": 4.0}\n'


def test_readding_a_reason_keeps_its_start_time(layout):
    set_hold(layout, add=("drain",), now=10.0)
    assert set_hold(layout, add=("drain",), now=20.0).since == {"drain": 10.0}


def test_corrupt_reasons_are_reported_and_can_be_cleared(layout):
    layout.run_dir.mkdir(parents=True)
    layout.hold_state_file.write_text("{not json")
    layout.hold_track_file.write_text("1\n")
    hold = read_hold(layout)
    assert hold.active and any("corrupt" in w for w in hold.warnings)
    assert any("no reason is recorded" in w for w in hold.warnings)
    cleared = set_hold(layout, remove=("drain", "maintenance", "joining"))
    assert not cleared.active and layout.hold_track_file.read_text() == "0\n"


def test_missing_files_mean_no_hold(layout):
    hold = read_hold(layout)
    assert not hold.active and hold.warnings == ()


def test_notify_records_state_transitions_and_holder(layout):
    record_transition(layout, "INSTANCE", "vip_1", "MASTER", "150")
    assert read_state(layout, "vip_1").state == "MASTER"
    assert layout.holder_track_file("vip_1").read_text() == "1\n"
    record_transition(layout, "INSTANCE", "vip_1", "BACKUP", "1")
    assert layout.holder_track_file("vip_1").read_text() == "0\n"
    assert [t.state for t in recent_transitions(layout)] == ["MASTER", "BACKUP"]


def test_notify_ignores_groups_and_survives_bad_priority(layout):
    record_transition(layout, "GROUP", "g", "MASTER", "x")
    assert read_state(layout, "g") is None
    t = record_transition(layout, "INSTANCE", "vip_2", "fault", "x")
    assert t.state == "FAULT" and t.priority == -1


def test_corrupt_state_file_reads_as_unknown(layout):
    layout.run_dir.mkdir(parents=True)
    layout.state_file("vip_1").write_text("garbage")
    assert read_state(layout, "vip_1") is None


def test_pid_files(tmp_path):
    f = tmp_path / "x.pid"
    assert read_pid(f) is None
    f.write_text("abc")
    assert read_pid(f) is None
    f.write_text(f"{os.getpid()}\n")
    assert running_pid(f) == os.getpid()
    assert running_pid(f, "keepalived") is None  # pid reuse: alive, but not ours
    assert not alive(2**22 + 12345)


def test_fifo_lines_are_recorded_in_order(layout):
    lines = ['INSTANCE "vip_1" BACKUP 1\n', 'INSTANCE "vip_1" MASTER 150\n', "garbage\n",
             'INSTANCE "vip_1" BACKUP 1\n']
    assert follow_fifo(layout, lines) == 3
    assert read_state(layout, "vip_1").state == "BACKUP"
    assert [t.state for t in recent_transitions(layout)] == ["BACKUP", "MASTER", "BACKUP"]


def test_parse_fifo_line():
    assert parse_fifo_line('INSTANCE "vip_2" FAULT 0') == ("INSTANCE", "vip_2", "FAULT", "0")
    assert parse_fifo_line('GROUP "g" MASTER') == ("GROUP", "g", "MASTER", "-1")
    assert parse_fifo_line('INSTANCE "unclosed') is None
    # An event, not a state: the master stays MASTER (it re-announces after a split brain).
    assert parse_fifo_line('INSTANCE "vip_1" MASTER_RX_LOWER_PRI 200') is None


class FakeObserver:
    """Stands in for LiveObserver in release_hold: records that it listened, has no adverts."""

    listened: ClassVar[list[float]] = []

    def __init__(self, cfg, layout) -> None:
        self.latest: dict = {}
        self.freshness = 3.5

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def collect(self, seconds: float) -> None:
        FakeObserver.listened.append(seconds)


def preserving_cfg(preserve_connections: bool = True):
    from vipdrain.model import DrainSettings

    return job_config(priority=200, drain=DrainSettings(preserve_connections=preserve_connections))


def test_release_hold_arms_the_takeover_while_still_held_then_releases(layout):
    from vipdrain.lifecycle import release_hold

    FakeObserver.listened = []
    seen = []

    def arm(cfg, latest, own_priority, fresh_since):
        seen.append((own_priority, read_hold(layout).reasons))
        return Armed(warnings=("could not arm",))

    set_hold(layout, add=("joining",))
    hold = release_hold(preserving_cfg(), layout, ("joining", "drain"), observer=FakeObserver, arm=arm).hold
    # Armed with the priority it will advertise once free, before keepalived could preempt.
    assert seen == [(200, ["joining"])]
    assert FakeObserver.listened == [pytest.approx(hear_every_master(1.0))]  # long enough to hear every master
    assert not hold.active and "could not arm" in hold.warnings


@pytest.mark.parametrize(("preserving", "other_reason"), [(False, None), (True, "maintenance")],
                         ids=["preservation off", "still held by maintenance"])
def test_release_hold_arms_nothing_when_no_takeover_can_follow(layout, preserving, other_reason):
    from vipdrain.lifecycle import release_hold

    def arm(*args):
        raise AssertionError("armed a takeover that cannot happen")

    set_hold(layout, add=("joining",) + ((other_reason,) if other_reason else ()))
    hold = release_hold(preserving_cfg(preserving), layout, ("joining",), observer=FakeObserver, arm=arm).hold
    assert hold.reasons == ([other_reason] if other_reason else [])


def test_release_hold_releases_even_when_it_cannot_listen(layout):
    from vipdrain.lifecycle import release_hold

    class Deaf(FakeObserver):
        def __enter__(self):
            raise PermissionError(1, "Operation not permitted")

    set_hold(layout, add=("joining",))
    hold = release_hold(preserving_cfg(), layout, ("joining",), observer=Deaf).hold
    assert not hold.active and any("cannot listen" in w for w in hold.warnings)
