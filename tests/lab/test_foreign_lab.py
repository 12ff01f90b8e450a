"""A rogue VRRP speaker for our VIP, on the lab's wire: `vipdrain status` and `vipdrain
post-deploy` fail and name it. The rogue sends real adverts (vipdrain.vrrp) from the lab's
observer namespace with another VRID; keepalived itself ignores them, so only the check sees it."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from vipdrain import vrrp
from vipdrain.lab import netns
from vipdrain.lab.cluster import Lab
from vipdrain.lab.plan import OBSERVER_OFFSET, address

pytestmark = pytest.mark.lab

ROGUE_VRID = 99


@pytest.fixture
def lab(lab_factory: Any) -> Lab:
    lab: Lab = lab_factory(nodes=2)
    return lab


@pytest.fixture
def rogue(lab: Lab) -> Iterator[None]:
    """Adverts for the lab's VIP under VRID 99, VRRPv3, every 0.1 s, from 192.0.2.250."""
    stop = threading.Event()
    src = ipaddress.ip_address(address(False, OBSERVER_OFFSET))
    advert = vrrp.Advert(3, ROGUE_VRID, 100, 0.2, (ipaddress.ip_address(lab.vips[0]),))

    def speak() -> None:
        while not stop.wait(0.1):
            vrrp.send_advert(advert, src, ipaddress.ip_address("224.0.0.18"), "eth0")

    thread = threading.Thread(target=netns.call_in, args=(lab.observer_namespace, speak),
                              kwargs={"timeout": 600.0}, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(5.0)


def test_status_is_clean_without_a_rogue(lab: Lab) -> None:
    done = lab.vm("vm1").vipdrain("status", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "another VRRP group" not in done.stdout


def test_status_and_post_deploy_fail_on_a_rogue_speaker(lab: Lab, rogue: None) -> None:
    status = lab.vm("vm1").vipdrain("status", check=False)
    assert status.returncode == 1, status.stdout + status.stderr
    assert f"another VRRP group announces {lab.vips[0]}" in status.stdout, status.stdout
    assert f"vrid {ROGUE_VRID}, VRRPv3 from 192.0.2.250, while this job runs vrid" in status.stdout
    post_deploy = lab.vm("vm0").vipdrain("post-deploy", check=False)
    assert post_deploy.returncode == 1, post_deploy.stdout + post_deploy.stderr
    assert f"vrid {ROGUE_VRID}, VRRPv3 from 192.0.2.250" in post_deploy.stdout
