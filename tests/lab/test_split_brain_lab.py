"""A healed split brain on real keepalived: the surviving master re-announces the VIP.

While VRRP between two VMs is dropped both are MASTER, and a client sends the VIP to whichever
announced itself last: the lower-priority VM, which became MASTER later. When VRRP flows again
the higher-priority VM keeps the VIP, but the client's neighbour entry moves back only if that
VM announces the VIP again (else when the entry expires: tens of seconds at best, never while the
loser's haproxy answers through its silent copy of the VIP on lo). Outcomes only; deadlines are
generous.
"""

from __future__ import annotations

import json
import time

import pytest

from vipdrain.lab import netns
from vipdrain.lab.cluster import VM, Lab, http_get
from vipdrain.vrrp import AdvertListener
from vipdrain.waiting import wait_until

pytestmark = pytest.mark.lab

#: One gratuitous ARP burst per MASTER transition, no delayed second one: when the partition ends,
#: no burst of vm1's can still be pending and re-point the client after vm0 re-announced the VIP.
ONE_BURST = {"keepalived": {"garp": {"master_delay": 0}}}


def client_neighbour(lab: Lab, address: str) -> str | None:
    """The MAC the lab's client sends `address` to (its neighbour entry), or None without one."""
    shown = netns.ip("-n", lab.client_namespaces[0], "-j", "neigh", "show", address, "dev", "eth0").stdout
    entries = json.loads(shown or "[]")
    return entries[0].get("lladdr") if entries else None


def advert_arrives(vm: VM, sender: VM, timeout: float) -> bool:
    """Does an advert from `sender` reach `vm`'s eth0 within `timeout` s (from now on)?"""

    def listen() -> bool:
        with AdvertListener("eth0") as listener:
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                packet = listener.next(left)
                if packet is not None and packet.src_mac == sender.mac:
                    return True
            return False

    return bool(vm.call(listen, timeout=timeout + 10))


@pytest.mark.parametrize("lab", [{"nodes": 2, "overrides": ONE_BURST}], indirect=True)
def test_the_surviving_master_re_announces_the_vip_when_a_split_brain_heals(lab: Lab) -> None:
    vip = lab.vips[0]
    vm0, vm1 = lab.vms
    client = lab.client_namespaces[0]
    assert netns.call_in(client, http_get, vip) == (200, "vm0\n")
    assert client_neighbour(lab, vip) == vm0.mac

    lab.faults.drop_vrrp(vm0, vm1)
    # vm1 hears no master: it takes the VIP too and announces it, and the client follows it.
    assert wait_until(lambda: lab.holders(vip) == ["vm0", "vm1"], budget=15, step=0.05)
    assert wait_until(lambda: client_neighbour(lab, vip) == vm1.mac, budget=10, step=0.05)

    # Which master hears the other first when VRRP flows again is a race. vm0 re-announces only
    # when it hears vm1 as a master, so make vm1 hear vm0 first (vm1 would then step down without
    # a word): its keepalived is frozen until one of vm0's adverts is queued on its socket.
    assert lab.faults.freeze(vm1)
    try:
        lab.faults.restore_vrrp(vm0, vm1)
        assert advert_arrives(vm1, vm0, timeout=10)
    finally:
        lab.faults.thaw(vm1)
    lab.wait_holder(vip, "vm0", timeout=15)

    # The client sent nothing since: only an announcement of the VIP can have moved its entry.
    assert wait_until(lambda: client_neighbour(lab, vip) == vm0.mac, budget=10, step=0.05), (
        f"the client still sends {vip} to {client_neighbour(lab, vip)} (vm1 is {vm1.mac}): "
        "vm0 did not re-announce the VIP when the split brain healed"
    )
    assert netns.call_in(client, http_get, vip) == (200, "vm0\n")
