"""The VIP copies on lo are tracked, so a VIP a new release drops does not linger there; a refused
change is told as the `ip` command it stands for."""

from __future__ import annotations

import errno
import ipaddress
import os

import pytest

from vipdrain import vipaddr
from vipdrain.errors import RuntimeFailure
from vipdrain.layout import Layout
from vipdrain.model import Vip


def vip(address: str) -> Vip:
    return Vip(name="v", address=ipaddress.ip_address(address), virtual_router_id=1, interface="eth0")


@pytest.fixture
def ip_calls(monkeypatch) -> list[tuple[str, ...]]:
    """The address changes made, as the `ip addr` arguments they stand for."""
    calls: list[tuple[str, ...]] = []

    def fake_set(add: bool, prefix: str, interface: str) -> None:
        calls.append(("addr", "replace" if add else "del", prefix, "dev", interface))

    monkeypatch.setattr(vipaddr, "_set_address", fake_set)
    monkeypatch.setattr(vipaddr, "quiet_arp", lambda interface: None)
    return calls


def test_sync_adds_every_vip_and_removes_the_ones_gone(tmp_path, ip_calls):
    layout = Layout(root=tmp_path)
    vipaddr.sync_loopback(layout, (vip("192.0.2.100"), vip("2001:db8::100")))
    assert ("addr", "replace", "192.0.2.100/32", "dev", "lo") in ip_calls
    assert ("addr", "replace", "2001:db8::100/128", "dev", "lo") in ip_calls
    ip_calls.clear()
    said = vipaddr.sync_loopback(layout, (vip("192.0.2.101"),))
    assert ("addr", "del", "192.0.2.100/32", "dev", "lo") in ip_calls
    assert ("addr", "del", "2001:db8::100/128", "dev", "lo") in ip_calls
    assert ("addr", "replace", "192.0.2.101/32", "dev", "lo") in ip_calls
    assert len(said) == 2 and all("no longer a VIP" in line for line in said)


def test_a_refused_change_names_the_ip_command_it_stands_for(monkeypatch):
    def refuse(add, address, prefixlen, interface):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(vipaddr.rtnl, "change_address", refuse)
    monkeypatch.setattr(vipaddr, "quiet_arp", lambda interface: None)
    with pytest.raises(RuntimeFailure, match=r"^ip addr replace 192\.0\.2\.100/32 dev lo: Operation not permitted$"):
        vipaddr.keep_on_loopback(vip("192.0.2.100"))
    with pytest.raises(RuntimeFailure, match=r"^ip addr del 2001:db8::100/128 dev eth0: Operation not permitted$"):
        vipaddr.remove_stale(vip("2001:db8::100"))
