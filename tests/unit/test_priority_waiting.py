"""Priorities (who is preferred, how far a hold lowers) and the deadline helper."""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vipdrain.model import InstanceSpec, Peer
from vipdrain.priority import HELD_PRIORITY, base_priority, effective_priority
from vipdrain.waiting import wait_until

IP = ipaddress.ip_address("192.0.2.10")


def spec(index: int, bootstrap: bool = False) -> InstanceSpec:
    return InstanceSpec(name="lb", index=index, id=str(index), bootstrap=bootstrap, ip=IP)


def peers(*indexes: int, bootstrap: int | None = None) -> list[Peer]:
    return [Peer(address=IP, index=i, bootstrap=(i == bootstrap)) for i in indexes]


def test_preferred_bootstrap_wins_then_index_order():
    group = peers(0, 1, 2, bootstrap=0)
    prios = [base_priority(spec(i, i == 0), [p for p in group if p.index != i], "preferred") for i in range(3)]
    assert prios == [200, 150, 125]


def test_bootstrap_need_not_be_index_zero():
    group = peers(1, 2, 3, bootstrap=2)
    prio = {i: base_priority(spec(i, i == 2), [p for p in group if p.index != i], "preferred") for i in (1, 2, 3)}
    assert prio[2] == 200 and prio[1] > prio[3]


@given(st.integers(min_value=1, max_value=200), st.sampled_from(["preferred", "sticky"]))
def test_held_vm_is_below_every_unheld_vm(rank_index: int, placement: str):
    group = peers(*range(rank_index + 1), bootstrap=0)
    me = spec(rank_index)
    base = base_priority(me, [p for p in group if p.index != rank_index], placement)  # type: ignore[arg-type]
    assert effective_priority(base, held=False) > HELD_PRIORITY
    # Even a sticky holder that is held drops to the floor, and nobody unheld is that low.
    assert effective_priority(base, held=True, holder=True) == HELD_PRIORITY


def test_sticky_holder_beats_every_other_base():
    group = peers(0, 1, 2, 3, bootstrap=0)
    bases = [base_priority(spec(i, i == 0), [p for p in group if p.index != i], "sticky") for i in range(4)]
    lowest_holder = effective_priority(min(bases), held=False, holder=True)
    assert all(lowest_holder > b for b in bases)


def test_wait_until_respects_budget_with_fake_clock():
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    assert not wait_until(lambda: False, budget=3.0, step=0.5, clock=lambda: now[0], sleep=sleep)
    assert now[0] <= 3.0


def test_wait_until_returns_as_soon_as_true():
    calls = iter([False, False, True])
    assert wait_until(lambda: next(calls), budget=10, step=0.0)


@pytest.mark.parametrize("budget", [0.0, 0.01])
def test_wait_until_calls_at_least_once(budget):
    seen = []
    wait_until(lambda: seen.append(1) or False, budget=budget, step=0.0)
    assert seen


@pytest.mark.parametrize("size", [2, 3, 5, 10, 50, 120])
def test_neighbours_are_far_apart_and_in_band(size):
    group = peers(*range(size), bootstrap=0)
    for placement in ("preferred", "sticky"):
        prios = [base_priority(spec(i, i == 0), [p for p in group if p.index != i], placement) for i in range(size)]
        assert all(51 <= p <= 254 for p in prios)
        assert prios == sorted(prios, reverse=True)
        if size <= 5:  # small groups (the usual case) get steps of ~25: backups never tie
            assert min(a - b for a, b in itertools.pairwise(prios)) >= 24


def test_wait_until_returns_the_last_observation():
    """Like tenacity's RetryError.last_attempt: the caller gets what was seen last, done or not."""
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    seen = iter(range(100))
    timed_out = wait_until(lambda: next(seen), done=lambda n: n >= 50, budget=2.0, step=0.5,
                           clock=lambda: now[0], sleep=sleep)
    assert not timed_out.ok and not timed_out and timed_out.last == 3  # calls at 0, 0.5, 1.0, 1.5 s
    reached = wait_until(lambda: next(seen), done=lambda n: n >= 5, budget=10.0, step=0.0)
    assert reached.ok and reached.last == 5
