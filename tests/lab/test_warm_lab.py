"""The warm drain on real keepalived + haproxy: a BOSH drain runs in a child of the VM's drain
server (vipdrain.warm), and a drain server that is frozen or dead costs only start-up time: the
drain runs in-process and hands over all the same. Outcomes only; speed is in bench/.
"""

from __future__ import annotations

import signal
import time

import pytest

from vipdrain.lab.cluster import Lab
from vipdrain.waiting import wait_until

pytestmark = pytest.mark.lab

BOSH = ("job_changed", "hash_changed", "haproxy")
CHILD_LINE = "drain server child"


def _drains_logged(lab: Lab, name: str) -> int:
    return lab.vm(name).layout.vipdrain_log.read_text().count("drain (job_changed hash_changed)")


@pytest.mark.parametrize("lab", [{"nodes": 2, "advert_int": 1.0}], indirect=True)
def test_a_bosh_drain_runs_in_the_drain_servers_child_and_hands_over(lab: Lab, client, observer) -> None:
    vm0 = lab.vm("vm0")
    vip = lab.vips[0]
    run = client(rate=100)
    assert wait_until(lambda: sum(r.ok for r in run.records()) >= 20, budget=30, step=0.2)
    started = time.time()
    proc = vm0.vipdrain("drain", *BOSH, check=False)
    assert proc.returncode == 0 and proc.stdout == "1\n", proc.stderr  # the lab's grace period
    assert CHILD_LINE in proc.stderr, "the drain did not run in the server's child"
    observer.wait_for(vip, {"vm1"}, timeout=15, since=started)
    time.sleep(1)
    run.stop()
    summary = run.summary(started - 1, time.time())
    assert summary.failures == 0, str(summary)
    assert lab.holders(vip) == ["vm1"]
    assert _drains_logged(lab, "vm0") == 1


@pytest.mark.parametrize("fault", ["frozen", "killed"])
@pytest.mark.parametrize("lab", [{"nodes": 2, "advert_int": 1.0}], indirect=True)
def test_a_frozen_or_dead_drain_server_only_costs_the_start_up(lab: Lab, client, observer, fault: str) -> None:
    """SIGSTOP: the server still accepts connections (the kernel's backlog) but never says READY;
    SIGKILL: its socket file stays behind. Either way the drain runs in-process, hands over with
    0 failed requests, and a thawed server does not run the request it was too late for."""
    vm0 = lab.vm("vm0")
    vip = lab.vips[0]
    run = client(rate=100)
    assert wait_until(lambda: sum(r.ok for r in run.records()) >= 20, budget=30, step=0.2)
    sig = signal.SIGSTOP if fault == "frozen" else signal.SIGKILL
    assert lab.faults.send_signal(vm0, "drain-server", sig)
    try:
        started = time.time()
        proc = vm0.vipdrain("drain", *BOSH, check=False)
        assert proc.returncode == 0 and proc.stdout == "1\n", proc.stderr
        assert CHILD_LINE not in proc.stderr
        observer.wait_for(vip, {"vm1"}, timeout=15, since=started)
    finally:
        if fault == "frozen":
            lab.faults.thaw(vm0, "drain-server")
    time.sleep(1)
    run.stop()
    summary = run.summary(started - 1, time.time())
    assert summary.failures == 0, str(summary)
    assert lab.holders(vip) == ["vm1"]
    if fault == "frozen":
        assert wait_until(lambda: "dropped a request" in vm0.layout.drain_server_log.read_text(), budget=10,
                          step=0.1)
    assert _drains_logged(lab, "vm0") == 1, "a second drain ran"
