"""post-start's wait for a takeover by preemption: which VIPs this VM will take (no sockets:
a LiveObserver with injected addresses and clock, adverts put in by hand)."""

from __future__ import annotations

import ipaddress

import pytest
from test_observe import make_cfg

from vipdrain.layout import Layout
from vipdrain.observe import LiveObserver
from vipdrain.preemption import to_take
from vipdrain.verdicts import PeerAdvert

V4 = ipaddress.ip_address


@pytest.fixture
def observer(tmp_path) -> LiveObserver:
    addresses = {"eth0": [V4("192.0.2.10")]}
    return LiveObserver(make_cfg(vips=3), Layout(root=tmp_path), addresses=lambda: addresses, clock=lambda: 10.0)


def test_vips_held_by_a_lower_master_are_taken_the_others_not(observer: LiveObserver) -> None:
    # vip_1: haproxy-boshrelease's master at 101 + 2; vip_2: a better master; vip_3: nobody heard.
    observer.latest[(1, 4)] = PeerAdvert(1, 2, 103, V4("192.0.2.11"), seen_at=9.5)
    observer.latest[(2, 4)] = PeerAdvert(2, 2, 250, V4("192.0.2.11"), seen_at=9.5)
    assert [v.name for v in to_take(observer, own_priority=200, now=10.0)] == ["vip_1"]


def test_stale_resigned_or_local_vips_are_not_waited_for(observer: LiveObserver) -> None:
    observer.latest[(1, 4)] = PeerAdvert(1, 2, 103, V4("192.0.2.11"), seen_at=1.0)  # gone quiet
    observer.latest[(2, 4)] = PeerAdvert(2, 2, 0, V4("192.0.2.11"), seen_at=9.5)  # resigned
    assert to_take(observer, own_priority=200, now=10.0) == []
    observer._addresses = lambda: {"eth0": [V4("192.0.2.10"), V4("192.0.2.100")]}
    observer.latest[(1, 4)] = PeerAdvert(1, 2, 103, V4("192.0.2.11"), seen_at=9.5)
    assert to_take(observer, own_priority=200, now=10.0) == []  # already here
