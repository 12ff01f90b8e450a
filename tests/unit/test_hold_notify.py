"""Hold and notify files: what keepalived reads and what vipdrain records."""

from __future__ import annotations

import os

import pytest

from vipdrain.hold import read_hold, set_hold
from vipdrain.layout import Layout
from vipdrain.notify import follow_fifo, parse_fifo_line, read_state, recent_transitions, record_transition
from vipdrain.procs import alive, read_pid, running_pid


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
