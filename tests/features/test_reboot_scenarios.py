"""features/reboot: reboots of the holder, of a backup and of a VM in maintenance, under load."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from pytest_bdd import given, parsers, scenarios, then, when
from rollout_support import BoshRun, Story, Traffic, run_vipdrain, status_json

from vipdrain.lab.cluster import Lab
from vipdrain.lab.wait import until
from vipdrain.vrrp.timing import elections_settle

scenarios("reboot")

#: A request sent up to this long before the shutdown can fail because of it (the client's
#: total timeout), and the first answers after a takeover can lag it by the ARP update.
LOSS_SLACK = 1.5
#: After the reboot, long enough for the booted VM to rejoin (rise checks, preemption) and settle.
SETTLE_DEADLINE = 30.0


@dataclass
class Reboot:
    vm: str
    shutdown: float  # time.time() when the shutdown began
    booted: float  # keepalived started again
    haproxy_answered: float


@given(parsers.parse('the operator put {vm} in maintenance with "vipdrain drain"'))
def put_in_maintenance(lab: Lab, story: Story, vm: str) -> None:
    c = run_vipdrain(lab, story, vm, "drain")
    assert c.returncode == 0, str(c)
    for vip in lab.vips:
        until(lambda vip=vip: vm not in lab.holders(vip) and len(lab.holders(vip)) == 1, 20.0, interval=0.05,
              what=f"{vip} to leave {vm}")


@when(parsers.parse("{vm} reboots and its haproxy starts {delay:g} s after its keepalived"),
      target_fixture="reboot")
def reboot(lab: Lab, story: Story, traffic: Traffic, vm: str, delay: float) -> Reboot:
    """The lab's reboot (`VM.shutdown`, then what monit starts), with haproxy late: monit gives
    no order between jobs, and a booted VM must not take a VIP before its haproxy answers."""
    target = lab.vm(vm)
    start = time.time()
    story.note(f"{vm}: reboot (shutdown)")
    target.shutdown()
    target.start_backend()
    target.start_keepalived()
    booted = time.time()
    story.note(f"{vm}: keepalived started; haproxy in {delay:g} s")
    threading.Event().wait(delay)  # the simulated slow haproxy, not a wait for a condition
    target.start_haproxy()
    until(target.haproxy_answers, 20.0, interval=0.02, what=f"{vm}'s haproxy to answer")
    answered = time.time()
    story.note(f"{vm}: haproxy answers")
    # Back in the group: out of FAULT (its health check passed) - then time for any election
    # it would start (Master_Down_Interval is about 3 advert intervals) to show.
    for vip in lab.vips:
        until(lambda vip=vip: target.recorded_state(vip) in ("BACKUP", "MASTER"), SETTLE_DEADLINE, interval=0.05,
              what=f"{vm}'s keepalived to leave FAULT for {vip}")
    traffic.wait_past(time.time() + elections_settle(lab.advert_int) + 1.0, timeout=SETTLE_DEADLINE)
    return Reboot(vm, start, booted, answered)


@then(parsers.parse("requests failed only in {vm}'s own loss, from its shutdown until {peer} held the VIP, "
                    "and at most {n:d} when {vm2} took it back"))
def failed_only_in_own_loss(lab: Lab, story: Story, traffic: Traffic, reboot: Reboot, vm: str, peer: str,
                            n: int, vm2: str) -> None:
    """The take-back after the boot is a preemption no post-start prepared (no hook runs after a
    reboot, so no takeover arm): a connection in flight at that instant may be reset."""
    for vip, run in traffic.clients.items():
        taken = next((c.time for c in traffic.observer.timeline(vip)
                      if c.time >= reboot.shutdown and c.holders == frozenset({peer})), None)
        assert taken is not None, f"{peer} never held {vip} alone: {traffic.observer.timeline(vip)}"
        back = next((c.time for c in traffic.observer.timeline(vip) if c.time > taken and vm2 in c.holders), None)
        failed = [r for r in run.records() if not r.ok]
        outside = [r for r in failed if r.end < reboot.shutdown or r.time > taken + LOSS_SLACK]
        at_back = [r for r in outside
                   if back is not None and back - LOSS_SLACK <= r.end and r.time <= back + LOSS_SLACK]
        outside = [r for r in outside if r not in at_back]
        assert not outside, (f"{len(outside)} request(s) to {vip} failed outside {vm}'s own loss "
                             f"({reboot.shutdown:.3f}..{taken:.3f}) and its take-back: {outside[:5]}")
        assert len(at_back) <= n, f"{len(at_back)} request(s) to {vip} failed when {vm2} took it back: {at_back[:5]}"
        story.note(f"{vm}'s own loss: {vip} moved to {peer} {taken - reboot.shutdown:.2f} s after the shutdown "
                   f"began, {len(failed) - len(at_back)} failed request(s); {len(at_back)} at the take-back")
        print(f"MEASURED reboot of {vm}, {vip}: on {peer} after {taken - reboot.shutdown:.3f} s, "
              f"{len(failed) - len(at_back)} failed, {len(at_back)} at the take-back: "
              f"{run.summary(reboot.shutdown - LOSS_SLACK, taken + LOSS_SLACK)}")


@then(parsers.parse("{vm} did not hold the VIP before its haproxy answered"))
def not_before_haproxy(lab: Lab, traffic: Traffic, reboot: Reboot, vm: str) -> None:
    for vip in lab.vips:
        early = [i for i in traffic.observer.intervals(vip, reboot.shutdown, reboot.haproxy_answered)
                 if vm in i.holders and i.end > reboot.booted]
        assert not early, f"{vm} held {vip} after it booted, before its haproxy answered: {early}"


@then("no request failed during the deploy")
def none_failed_during_deploy(traffic: Traffic, deploy: BoshRun) -> None:
    failed = {vip: s for vip, s in traffic.summaries(start=deploy.start).items() if s.failures}
    assert not failed, f"requests failed during the deploy: {failed}"


@then(parsers.parse("{vm} is still in maintenance and advertises priority 1"))
def still_in_maintenance(lab: Lab, story: Story, vm: str) -> None:
    status = status_json(lab, story, vm)
    assert status["maintenance"] is True and status["hold_reasons"] == ["maintenance"], status
    assert status["priority"]["effective"] == 1, status
    for vip in lab.vips:
        assert vm not in lab.holders(vip), f"{vm} holds {vip}"
