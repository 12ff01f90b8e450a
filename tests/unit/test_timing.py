"""How the VRRP timing rules relate: every wait and deadline in vipdrain is derived from these,
so the relations (not the numbers) are what the product relies on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vipdrain.vrrp import timing

#: VRRPv3 intervals (centiseconds 1..4095) and VRRPv2 ones (whole seconds 1..255), with a priority.
v3 = st.tuples(st.integers(1, 4095).map(lambda c: c / 100), st.just(3))
v2 = st.tuples(st.integers(1, 255).map(float), st.just(2))


@given(timing_=st.one_of(v3, v2), priority=st.integers(1, 254))
def test_the_rules_relate(timing_: tuple[float, int], priority: int) -> None:
    a, version = timing_
    s = timing.skew(priority, a, version)
    down = timing.master_down_interval(priority, a, version)
    assert 0 < s < a  # RFC 5798 6.1: Skew_Time is below one interval
    assert 3 * a < down < timing.master_down_bound(a) < timing.takeover_bound(a) < timing.post_start_takeover_wait(a)
    # Listening long enough to hear every master is shorter than a master going down.
    assert a < timing.hear_every_master(a) < 3 * a + 0.2 and timing.hear_every_master(a) < timing.advert_freshness(a)
    # The resign advert is the fast path: after the skew, well before the Master_Down route.
    resign = timing.handoff_bound(priority, a, version=version)
    assert s < resign < timing.handoff_bound(priority, a, resign=False, version=version)
    assert timing.handoff_bound(priority, a, resign=False, version=version) > down
    # post-deploy's budget covers more than one takeover; pre-start hears at least two adverts.
    assert timing.settle_budget(a) > 2 * timing.master_down_bound(a)
    assert timing.foreign_listen(a) >= 2 * a
    assert timing.recall_seconds(a) >= a
    assert timing.lab_converge_deadline(a) > timing.elections_settle(a) > 2 * timing.master_down_bound(a)


def test_the_confirmation_window_outlasts_a_racing_backup() -> None:
    """At least two adverts after the handoff, and until a backup whose timer ran at the resign fired."""
    assert timing.confirmation_end(since=10.0, resigned_at=9.9, advert_int=1.0) == pytest.approx(13.4)
    assert timing.confirmation_end(since=20.0, resigned_at=9.9, advert_int=1.0) == pytest.approx(22.0)


def test_skew_follows_keepalived() -> None:
    """keepalived/include/vrrp.h VRRP_TIMER_SKEW_CALC: v3 scales the master's interval, v2 uses 1 s."""
    assert timing.skew(150, 1.0) == pytest.approx(106 / 256)
    assert timing.skew(150, 0.1) == pytest.approx(10.6 / 256)
    assert timing.skew(150, 5.0, version=2) == pytest.approx(106 / 256)
    assert timing.fencing_wait(fall=3, interval=1.0, timeout=0.5) == pytest.approx(4.5)
