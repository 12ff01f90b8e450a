"""features/no_peer: max_in_flight as large as the group, a single instance, delete-deployment."""

from __future__ import annotations

from pytest_bdd import scenarios, then
from rollout_support import BoshRun

from vipdrain.lab.cluster import Lab

scenarios("no_peer")


@then("the drains ran at the same time")
def drains_overlap(deploy: BoshRun) -> None:
    drains = deploy.steps(step="drain")
    assert len(drains) >= 2, f"fewer than two drains: {drains}"
    latest_start = max(s.start for s in drains)
    earliest_end = min(s.end for s in drains)
    assert latest_start < earliest_end, "the drains ran one after the other:\n" + deploy.director.timeline.format()


@then("every VM is stopped")
def every_vm_stopped(lab: Lab) -> None:
    running = {vm.name: (vm.keepalived_pid, vm.haproxy_pid) for vm in lab.vms
               if vm.keepalived_pid is not None or vm.haproxy_pid is not None}
    assert not running, f"still running (keepalived pid, haproxy pid): {running}"


@then("the VIP has no holder")
def vip_has_no_holder(lab: Lab) -> None:
    held = {vip: names for vip, names in lab.holder_map().items() if names}
    assert not held, f"still held: {held}"
