"""bench/run.py's "streams survived": which long-lived streams had to outlive a VIP move."""

from __future__ import annotations

import pytest
from benchmod import load_bench

from vipdrain.lab.bosh import Step
from vipdrain.lab.client import Stream
from vipdrain.lab.observer import Interval

streams_across_moves = load_bench().streams_across_moves

SECONDS = 6.0


def held(*spans: tuple[float, float, str]) -> list[Interval]:
    return [Interval(a, b, frozenset(h.split("+")) if h else frozenset()) for a, b, h in spans]


def stream(opened: float, vm: str, outcome: str = "finished") -> Stream:
    return Stream(mode="tcp", time=opened, end=opened + SECONDS, outcome=outcome, vm=vm)


# vm0 holds the VIP until 10 s; its stop side begins at 9 s; vm1 takes over at 10 s.
STOP_SIDE = [Step("vm0", "unmonitor", 9.0, 9.0), Step("vm0", "drain", 9.0, 9.8)]
HANDOFF = held((0, 10, "vm0"), (10, 30, "vm1"))


@pytest.mark.parametrize(("s", "at_risk"), [
    (stream(5.0, "vm0"), True),        # open when the stop side began, due at 11 s, after the move
    (stream(3.5, "vm0"), False),       # due at 9.5 s: ended by itself before the move
    (stream(9.5, "vm0"), False),       # opened after the stop side began (the drain's own business)
    (stream(5.0, "vm1"), False),       # not on the VM that lost the VIP
    (stream(5.0, None), False),        # never served a line: on no VM
])
def test_a_stream_is_at_risk_when_it_spans_its_vms_stop_side_and_the_move(s: Stream, at_risk: bool) -> None:
    assert streams_across_moves([s], SECONDS, HANDOFF, STOP_SIDE) == ([s] if at_risk else [])


def test_a_gap_without_holder_still_counts_as_a_move_from_the_last_holder() -> None:
    s = stream(5.0, "vm0", "broken")
    ivs = held((0, 10, "vm0"), (10, 10.5, ""), (10.5, 30, "vm1"))
    assert streams_across_moves([s], SECONDS, ivs, STOP_SIDE) == [s]


def test_a_stale_copy_on_the_old_holder_does_not_hide_the_move() -> None:
    # naive-stop: kill -9 leaves the VIP on vm0's interface while vm1 takes it.
    s = stream(5.0, "vm0", "broken")
    ivs = held((0, 10, "vm0"), (10, 14, "vm0+vm1"), (14, 30, "vm1"))
    assert streams_across_moves([s], SECONDS, ivs, STOP_SIDE) == [s]


def test_a_naive_stop_counts_from_its_stop_side_even_if_the_vm_restarted_before_the_move() -> None:
    # kill -9 of keepalived, an instant update: vm0 runs again at 9.5 s, vm1 takes over at 12 s.
    steps = [*STOP_SIDE, Step("vm0", "start", 9.5, 9.6)]
    ivs = held((0, 12, "vm0"), (12, 14, "vm0+vm1"), (14, 30, "vm1"))
    s = stream(7.0, "vm0", "broken")
    assert streams_across_moves([s], SECONDS, ivs, steps) == [s]


def test_a_preemption_counts_from_the_move_itself() -> None:
    # vm1 holds the VIP since vm0's drain; vm0, back, takes it again at 22 s: no stop side of vm1.
    ivs = held((0, 10, "vm0"), (10, 22, "vm1"), (22, 22.02, "vm0+vm1"), (22.02, 40, "vm0"))
    assert streams_across_moves([stream(19.0, "vm1")], SECONDS, ivs, STOP_SIDE) == [stream(19.0, "vm1")]
    assert streams_across_moves([stream(23.0, "vm1")], SECONDS, ivs, STOP_SIDE) == []
    # vm1's own stop side later (VIP back on vm1 at 31 s, its unmonitor at 38 s, the move at 40 s)
    # counts from its unmonitor, not from the earlier preemption.
    steps = [*STOP_SIDE, Step("vm0", "unmonitor", 30.0, 30.0), Step("vm1", "unmonitor", 38.0, 38.0)]
    ivs = held((0, 10, "vm0"), (10, 22, "vm1"), (22, 31, "vm0"), (31, 40, "vm1"), (40, 50, "vm0"))
    assert streams_across_moves([stream(35.0, "vm1")], SECONDS, ivs, steps) == [stream(35.0, "vm1")]
    assert streams_across_moves([stream(38.5, "vm1")], SECONDS, ivs, steps) == []
