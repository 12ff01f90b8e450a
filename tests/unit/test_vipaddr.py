"""The VIP copies on lo are tracked, so a VIP a new release drops does not linger there."""

from __future__ import annotations

import ipaddress
import subprocess

import pytest

from vipdrain import vipaddr
from vipdrain.layout import Layout
from vipdrain.model import Vip


def vip(address: str) -> Vip:
    return Vip(name="v", address=ipaddress.ip_address(address), virtual_router_id=1, interface="eth0")


@pytest.fixture
def ip_calls(monkeypatch) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []

    def fake_ip(*args: str) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return subprocess.CompletedProcess(["ip", *args], 0, "", "")

    monkeypatch.setattr(vipaddr, "_ip", fake_ip)
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
