"""The foreign-group check: which adverts mean another VRRP group announces our VIP (pure), and
what pre-start does with them (fake listeners: no packet socket needed)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from vipdrain import vrrp
from vipdrain.errors import RuntimeFailure
from vipdrain.foreign import ForeignWatch, Heard, foreign_groups, refuse_foreign_groups
from vipdrain.layout import Layout
from vipdrain.model import JobConfig

IP = ipaddress.ip_address
VIP = IP("192.0.2.100")


def heard(vrid: int, version: int, source: str = "192.0.2.11", addresses: tuple[str, ...] = ("192.0.2.100",)) -> Heard:
    return Heard(vrid, version, IP(source), tuple(IP(a) for a in addresses))


@pytest.fixture
def cfg(parse: Callable[[Mapping[str, Any]], JobConfig], make_raw: Callable[..., dict[str, Any]]) -> JobConfig:
    """vrid 1, VRRPv2: the migration settings."""
    return parse(make_raw({"keepalived.vrrp_version": 2, "keepalived.virtual_router_id": 1}))


def test_our_own_group_is_not_foreign(cfg: JobConfig) -> None:
    assert foreign_groups(cfg, [heard(1, 2)]) == []


@pytest.mark.parametrize(("vrid", "version"), [(1, 3), (51, 2), (51, 3)])
def test_another_vrid_or_version_for_our_vip_is_foreign(cfg: JobConfig, vrid: int, version: int) -> None:
    [found] = foreign_groups(cfg, [heard(vrid, version)])
    assert (found.ours, found.theirs.vrid, found.theirs.version) == ((1, 2), vrid, version)
    sentence = found.sentence()
    assert f"vrid {vrid}, VRRPv{version} from 192.0.2.11, while this job runs vrid 1, VRRPv2" in sentence
    assert sentence.count(". ") == 0, "one sentence"


def test_other_addresses_and_our_own_adverts_do_not_count(cfg: JobConfig) -> None:
    assert foreign_groups(cfg, [heard(7, 3, addresses=("192.0.2.7",)), heard(51, 3, source="192.0.2.10")]) == []


def test_one_finding_per_group_and_vip(cfg: JobConfig) -> None:
    found = foreign_groups(cfg, [heard(1, 3), heard(1, 3, source="192.0.2.12"), heard(51, 2)])
    assert [(f.theirs.vrid, f.theirs.version, str(f.theirs.source)) for f in found] == [
        (1, 3, "192.0.2.11"), (51, 2, "192.0.2.11")]


class FakeObserver:
    """Stands in for LiveObserver: `collect` hands the queued packets to the taps."""

    def __init__(self, packets: list[vrrp.Packet]) -> None:
        self.packets = packets
        self.taps: list[Callable[[vrrp.Packet], None]] = []

    def __enter__(self) -> FakeObserver:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def collect(self, seconds: float) -> None:
        for p in self.packets:
            for tap in self.taps:
                tap(p)


def packet(vrid: int, version: int, outgoing: bool = False) -> vrrp.Packet:
    advert = vrrp.Advert(version, vrid, 100, 1.0, (VIP,), src=IP("192.0.2.11"), dst=IP("224.0.0.18"))
    return vrrp.Packet(advert, 255, 0xc0, outgoing=outgoing)


def observing(*packets: vrrp.Packet) -> Callable[[JobConfig, Layout], Any]:
    return lambda _cfg, _layout: FakeObserver(list(packets))


def test_pre_start_refuses_with_both_groups_named(cfg: JobConfig, tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure) as err:
        refuse_foreign_groups(cfg, Layout(tmp_path), 0, observer=observing(packet(1, 2), packet(51, 3)))
    assert "refusing to start keepalived" in str(err.value)
    assert "vrid 51, VRRPv3 from 192.0.2.11, while this job runs vrid 1, VRRPv2" in str(err.value)


def test_pre_start_goes_on_when_only_its_group_or_its_own_adverts_are_heard(cfg: JobConfig, tmp_path: Path) -> None:
    refuse_foreign_groups(cfg, Layout(tmp_path), 0, observer=observing(packet(1, 2), packet(51, 3, outgoing=True)))


def test_pre_start_goes_on_when_it_cannot_listen(cfg: JobConfig, tmp_path: Path) -> None:
    def refused(_cfg: JobConfig, _layout: Layout) -> Any:
        raise PermissionError("Operation not permitted")

    refuse_foreign_groups(cfg, Layout(tmp_path), 0, observer=refused)


def test_watch_collects_from_the_observer_it_taps(cfg: JobConfig) -> None:
    watch = ForeignWatch(cfg)
    with watch.watching(FakeObserver([packet(1, 3)])) as observer:  # type: ignore[arg-type]
        observer.collect(0)
    assert [f.theirs.version for f in watch.found()] == [3]
