"""features/migration: from haproxy-boshrelease's keepalived job to vipdrain's, without a split
brain; settings of another VRRP group stop the deploy at the canary's pre-start."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pytest_bdd import given, parsers, scenarios, then
from rollout_support import BoshRun, Story, Traffic, status_json

from vipdrain.lab.cluster import Lab, deep_merge
from vipdrain.lab.oldjob import OLD_JOB
from vipdrain.lab.wait import until

scenarios("migration")

OPS_FILE = Path(__file__).resolve().parents[2] / "manifests" / "operations" / "add-vipdrain.yml"
#: A request sent up to this long before the stop can still fail because of it (the client's
#: total timeout), and the first answers after a takeover can lag it by the ARP update.
BREAK_SLACK = 1.5
END_DEADLINE = 20.0


@given(parsers.parse("the keepalived properties of manifests/operations/add-vipdrain.yml with vrid {vrid:d}"),
       target_fixture="properties")
def ops_file_properties(properties: dict[str, Any], vrid: int) -> dict[str, Any]:
    """The ops file's `keepalived` block as the operator deploys it (`-v vrid=...`); its `vip`
    is the lab's own VIP and vipdrain's haproxy paths are the lab's, so only those are left out."""
    ops = yaml.safe_load(OPS_FILE.read_text())
    job = next(op["value"] for op in ops if op["path"].endswith("/jobs/name=keepalived?"))
    keepalived = {k: v for k, v in job["properties"]["keepalived"].items() if k != "vip"}
    text = yaml.safe_dump(keepalived).replace("((vrid))", str(vrid))
    assert "((" not in text, f"the ops file needs variables the scenario does not set: {text}"
    return deep_merge(properties, {"keepalived": yaml.safe_load(text)})


@given(parsers.parse("a running group of {count:d} VMs on haproxy-boshrelease's keepalived job"),
       target_fixture="lab")
def old_job_group(start_lab: Any, properties: dict[str, Any], count: int) -> Lab:
    """VMs on the old job (keepalived's own timing: advert_int 1 s); `properties` are the
    release a deploy puts on them."""
    lab: Lab = start_lab(nodes=count, advert_int=1.0, overrides=properties, old_job=True)
    return lab


def _break(lab: Lab, traffic: Traffic, deploy: BoshRun, vm: str) -> tuple[float, float]:
    """(start, end) of `vm`'s break: from its `monit stop` until another VM held every VIP and
    the clients were answered again.

    The second half matters with 3 VMs on the old job: its template gives every VM but the
    bootstrap one priority 100, so two backups become master at once, the one with the lower
    address steps down, and if its gratuitous ARP reached the clients last they send to a VM
    without the VIP until the winner's second ARP burst (keepalived's garp_master_delay, 5 s).
    """
    stop = deploy.steps(vm, "stop")
    assert stop, f"{vm} was not stopped"
    start = stop[0].start
    end = start
    for vip in lab.vips:
        taken = next((c.time for c in traffic.observer.timeline(vip)
                      if c.time >= start and c.holders and vm not in c.holders), None)
        assert taken is not None, f"nobody took {vip} over from {vm}: {traffic.observer.timeline(vip)}"
        answered = min((r.time for r in traffic.clients[vip].records() if r.ok and r.time >= taken), default=taken)
        end = max(end, taken, answered)
    return start, end


def _take_back(traffic: Traffic, vip: str, vm: str, after: float) -> float | None:
    """When `vm` held `vip` again after `after` (its take-back by preemption), if it did."""
    return next((c.time for c in traffic.observer.timeline(vip) if c.time > after and vm in c.holders), None)


def _failed_outside_break(lab: Lab, story: Story, traffic: Traffic, deploy: BoshRun, vm: str,
                          take_back: int | None) -> None:
    """Every failed request ended after `vm`'s stop began and was sent before its break ended
    (plus slack) - or, with `take_back`, at most that many around `vm` taking the VIP back. The
    break itself is measured and recorded."""
    start, end = _break(lab, traffic, deploy, vm)
    for vip, run in traffic.clients.items():
        failed = [r for r in run.records() if not r.ok]
        outside = [r for r in failed if r.end < start or r.time > end + BREAK_SLACK]
        back = _take_back(traffic, vip, vm, end) if take_back is not None else None
        at_take_back = [r for r in outside if back is not None and back - BREAK_SLACK <= r.end
                        and r.time <= back + BREAK_SLACK]
        outside = [r for r in outside if r not in at_take_back]
        assert not outside, (
            f"{len(outside)} request(s) to {vip} failed outside {vm}'s break "
            f"({start:.3f}..{end:.3f}){' and its take-back' if back else ''}: {outside[:5]}"
        )
        assert len(at_take_back) <= (take_back or 0), (
            f"{len(at_take_back)} request(s) to {vip} failed when {vm} took it back (at most {take_back}): "
            f"{at_take_back[:5]}")
        story.note(f"{vm}'s break: {vip} without a holder or an answer for {end - start:.2f} s after its stop began, "
                   f"{len(failed) - len(at_take_back)} failed request(s); {len(at_take_back)} at its take-back")
        print(f"MEASURED {vm} break {vip}: unowned or unanswered {end - start:.3f} s, "
              f"{len(failed) - len(at_take_back)} failed, {len(at_take_back)} at the take-back, "
              f"{run.summary(start - BREAK_SLACK, end + BREAK_SLACK)}")


@then(parsers.parse("requests failed only in {vm}'s break, when its old keepalived stopped"))
def failed_only_in_break(lab: Lab, story: Story, traffic: Traffic, deploy: BoshRun, vm: str) -> None:
    _failed_outside_break(lab, story, traffic, deploy, vm, take_back=None)


@then(parsers.parse("requests failed only in {vm}'s break, when its old keepalived stopped, "
                    "and at most {n:d} when {taker} took the VIP back"))
def failed_only_in_break_and_take_back(lab: Lab, story: Story, traffic: Traffic, deploy: BoshRun, vm: str,
                                       n: int, taker: str) -> None:
    """Connections straddling the take-back from a VM on the old job: its keepalived keeps no
    copy of the VIP once it is a backup, so nothing can send their packets back to it."""
    assert taker == vm, "the VM that broke is the one that takes the VIP back"
    _failed_outside_break(lab, story, traffic, deploy, vm, take_back=n)


@then(parsers.parse("no request failed after {vm}'s post-start"))
def none_failed_after_post_start(traffic: Traffic, deploy: BoshRun, vm: str) -> None:
    """From the moment `vm` is done (its post-start: any take-back is over) to the deploy's end."""
    done = deploy.steps(vm, "post-start")
    assert done, f"{vm} did not run post-start"
    failed = {vip: s for vip, s in traffic.summaries(start=done[0].end).items() if s.failures}
    assert not failed, f"requests failed after {vm}'s post-start: {failed}"


@then(parsers.parse("the VIP never had two holders for longer than {seconds:g} s"))
def no_long_split_brain(lab: Lab, traffic: Traffic, seconds: float) -> None:
    for vip in lab.vips:
        long = [i for i in traffic.observer.split_brain(vip) if i.duration > seconds]
        assert not long, f"{vip} had two holders for more than {seconds:g} s: {long}"


@then(parsers.parse("it names the old group as vrid {vrid:d}, VRRPv{version:d} from a peer, "
                    "and its own as vrid {own_vrid:d}, VRRPv{own_version:d}"))
def names_both_groups(lab: Lab, deploy: BoshRun, vrid: int, version: int, own_vrid: int, own_version: int) -> None:
    """One sentence with both groups: the one heard (VRID, version, the address of the peer that
    was master then - with equal priorities either backup may have won) and this job's."""
    assert deploy.error is not None, "the deploy completed"
    detail = deploy.error.step.detail
    said = re.search(rf"vrid {vrid}, VRRPv{version} from (\S+), while this job runs vrid {own_vrid}, "
                     rf"VRRPv{own_version} for it;", detail)
    peers = {vm.ip for vm in lab.vms if vm.name != deploy.error.step.vm}
    assert said and said.group(1) in peers, f"the failure does not name both groups (source one of {peers}): {detail}"
    assert detail.count(". ") == 0, f"more than one sentence: {detail}"


@then("one VM still on the old job holds the VIP")
def old_vm_holds(lab: Lab) -> None:
    """The old group keeps the VIP (with equal priorities either old backup may have taken it)."""
    old = {vm.name for vm in lab.vms if vm.job == OLD_JOB}
    for vip in lab.vips:
        until(lambda vip=vip: len(lab.holders(vip)) == 1 and lab.holders(vip)[0] in old, END_DEADLINE,
              interval=0.05, what=f"{vip} held by one of {sorted(old)} only")


@then(parsers.parse("{vm}'s keepalived is not running"))
def keepalived_not_running(lab: Lab, vm: str) -> None:
    assert lab.vm(vm).keepalived_pid is None, f"{vm}'s keepalived runs"


@then("every VM runs vipdrain and none is held")
def all_on_vipdrain(lab: Lab, story: Story) -> None:
    for vm in lab.vms:
        assert vm.job != OLD_JOB, f"{vm.name} still runs {vm.job}"
        status = status_json(lab, story, vm.name)
        assert status["hold_reasons"] == [] and not status["maintenance"], f"{vm.name} is held: {status}"
