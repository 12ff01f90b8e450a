"""Who holds a VIP, as `vipdrain status` and post-deploy see it, on real keepalived (issue 18).

IPv6 holders are found by neighbour solicitation as IPv4 ones by ARP: a master whose keepalived
was killed (kill -9: its VRRP child too, so no priority-0 advert and the VIP stays on its
interface) is silent on VRRP, yet still answers for the VIP; the new master must see it.
Outcomes only; deadlines are generous.
"""

from __future__ import annotations

import json

import pytest

from vipdrain.lab.cluster import Lab
from vipdrain.waiting import wait_until

pytestmark = pytest.mark.lab


def status(lab: Lab, vm: str) -> tuple[int, dict]:
    done = lab.vm(vm).vipdrain("status", "--json", check=False)
    return done.returncode, json.loads(done.stdout)


@pytest.mark.parametrize("lab", [{"nodes": 2, "ipv6": True, "advert_int": 0.2}, {"nodes": 2, "advert_int": 0.2}],
                         indirect=True, ids=["ipv6", "ipv4"])
def test_a_split_brain_after_kill_9_of_the_masters_keepalived_is_seen_by_the_new_master(lab: Lab) -> None:
    vip = lab.vips[0]
    assert (":" in vip) == lab.ipv6
    lab.wait_converged()
    assert lab.holders(vip) == ["vm0"]
    code, before = status(lab, "vm1")
    assert code == 0 and before["vips"][0]["verdict"] == "ok", before

    assert lab.faults.kill_keepalived("vm0")
    # vm1 takes over after the master-down interval; vm0 keeps the VIP nobody removes.
    assert wait_until(lambda: lab.holders(vip) == ["vm0", "vm1"], budget=15, step=0.05), lab.holder_map()

    code, seen = status(lab, "vm1")
    (v,) = seen["vips"]
    assert code == 1 and v["verdict"] == "split brain", seen
    # Named by VM: their instance addresses, not the VIP or a link-local address.
    assert sorted(h["address"] for h in v["holders"]) == [lab.vm("vm0").ip, lab.vm("vm1").ip], v
    assert sorted(h["name"] for h in v["holders"]) == ["haproxy/0", "haproxy/1"], v
    assert any("SPLIT BRAIN" in p for p in seen["problems"]), seen
    text = lab.vm("vm1").vipdrain("status", check=False).stdout
    assert f"haproxy/0 ({lab.vm('vm0').ip}) [{lab.vm('vm0').mac}]" in text, text
    # post-deploy gives the same verdict, and fails.
    done = lab.vm("vm1").vipdrain("post-deploy", "--timeout", "3", check=False)
    assert done.returncode == 1 and "SPLIT BRAIN" in done.stdout, done
