"""Shared steps and fixtures of the rollout scenarios (features/**/*.feature).

Values travel between steps through fixtures (`target_fixture`): `properties` (job property
overrides, default none), `lab`, `triggers` (faults and colocated jobs tied to lifecycle steps,
default none), `traffic` (load clients + VIP observer), `deploy` (the last director action),
`command` (the last command an operator ran). The `story` fixture only records, for the failure
report this module adds to every failed scenario: one timeline of lifecycle steps, VIP holder
changes, faults and client errors, then the end state and each VM's vipdrain.log.

Every lab is torn down after its scenario, whatever happened; labs use the run's own prefix, so
scenarios never touch another run's namespaces or processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from pytest_bdd import given, parsers, then, when
from rollout_support import (
    TAIL_SECONDS,
    ActionTrigger,
    BoshRun,
    Call,
    ColocatedHaproxyDrain,
    KillDrainOnceHeld,
    RecordedVM,
    Story,
    Traffic,
    Trigger,
    check_triggers,
    run_vipdrain,
    status_json,
)

from vipdrain.lab.bosh import DeployFailed, Director, Step, UpdatePolicy
from vipdrain.lab.cluster import Lab, deep_merge
from vipdrain.lab.wait import until

STORY = pytest.StashKey[Story]()
#: Generous deadlines: outcomes are asserted, not timing.
END_STATE_DEADLINE = 20.0
FAULT_DEADLINE = 20.0

LabStarter = Callable[..., Lab]


# --------------------------------------------------------------------------------------------
# The failure report
# --------------------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Add the scenario's timeline to the report of a failed scenario (setup or call)."""
    report = yield
    story = item.stash.get(STORY, None)
    if story is not None and report.failed and report.when in ("setup", "call"):
        try:
            text = story.format()
        except Exception as exc:  # the report must never hide the failure itself
            text = f"(the timeline could not be put together: {exc!r})"
        report.sections.append(("rollout timeline", text))
    return report


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def story(request: pytest.FixtureRequest) -> Story:
    """The scenario's recorder (read by the failure report)."""
    recorder = Story()
    request.node.stash[STORY] = recorder
    return recorder


@pytest.fixture
def properties() -> dict[str, Any]:
    """Job property overrides of every VM's release (Given steps add to them)."""
    return {}


@pytest.fixture
def switch() -> dict[str, Any]:
    """How the lab's switch behaves (`Lab.up` options; Given steps set them)."""
    return {}


@given("the switch enforces anti-spoofing")
def anti_spoofing_switch(switch: dict[str, Any]) -> None:
    """Every port accepts only its VM's own MAC and addresses, or a VIP (vipdrain.lab.portsec)."""
    switch["anti_spoofing"] = True


@given("the switch is a plain bridge")
def plain_switch(switch: dict[str, Any]) -> None:
    switch["anti_spoofing"] = False


@pytest.fixture
def triggers() -> tuple[Trigger, ...]:
    """Faults and colocated jobs tied to lifecycle steps (Given steps add to them)."""
    return ()


@pytest.fixture
def traffic() -> Traffic | None:
    """No load unless a Given step starts it."""
    return None


@pytest.fixture
def start_lab(story: Story, lab_factory: LabStarter) -> LabStarter:
    """`start_lab(**Lab.up kwargs) -> Lab`; every lab started is torn down after the scenario."""

    def start(**kwargs: Any) -> Lab:
        story.lab = lab_factory(**kwargs)
        return story.lab

    return start


# --------------------------------------------------------------------------------------------
# Helpers of the steps
# --------------------------------------------------------------------------------------------


def dotted(path: str, value: Any) -> dict[str, Any]:
    """`a.b.c`, v -> {"a": {"b": {"c": v}}}."""
    out: Any = value
    for key in reversed(path.split(".")):
        out = {key: out}
    return out


def bosh(lab: Lab, story: Story, triggers: tuple[Trigger, ...], traffic: Traffic | None,
         changes: dict[str, dict[str, Any] | None], policy: UpdatePolicy,
         action: Callable[[Director], None]) -> BoshRun:
    """Run one director action with the scenario's triggers; a failed step ends it as on BOSH.

    Afterwards the clients run on for TAIL_SECONDS, so a failure right at the end is counted.
    """
    calls: list[Call] = []
    for t in triggers:
        if t not in story.triggers:
            story.triggers.append(t)

    def on_step(s: Step) -> None:
        for t in triggers:
            t.on_step(s)

    vms: list[Any] = [RecordedVM(vm, calls) for vm in lab.vms]  # each a LabVM by delegation
    director = Director(vms, on_step=on_step)
    run = BoshRun(director, changes, policy, time.time(), 0.0, None, calls)
    story.runs.append(run)
    try:
        action(director)
    except DeployFailed as exc:
        run.error = exc
    finally:
        run.end = time.time()
        story.calls.extend(calls)
    if traffic is not None:
        traffic.wait_past(run.end + TAIL_SECONDS)
    check_triggers(triggers)
    return run


def every_vm(lab: Lab) -> dict[str, dict[str, Any] | None]:
    return {vm.name: None for vm in lab.vms}


# --------------------------------------------------------------------------------------------
# Given
# --------------------------------------------------------------------------------------------


@given(parsers.parse("the job property {path} is {value}"), target_fixture="properties")
def job_property(properties: dict[str, Any], path: str, value: str) -> dict[str, Any]:
    """Set one job property (the value is YAML) in every VM's release."""
    return deep_merge(properties, dotted(path, yaml.safe_load(value)))


@given(parsers.re(r"a running group of (?P<count>\d+) VMs? with advert_int (?P<advert>[\d.]+) s"),
       target_fixture="lab", converters={"count": int, "advert": float})
def running_group(start_lab: LabStarter, properties: dict[str, Any], switch: dict[str, Any], count: int,
                  advert: float) -> Lab:
    """VMs started the BOSH way (pre-start, monit start, post-start), settled."""
    return start_lab(nodes=count, advert_int=advert, overrides=properties, **switch)


@given(parsers.re(r"a running group of (?P<count>\d+) VMs? with (?P<vips>\d+) VIPs "
                  r"and advert_int (?P<advert>[\d.]+) s"),
       target_fixture="lab", converters={"count": int, "vips": int, "advert": float})
def running_group_with_vips(start_lab: LabStarter, properties: dict[str, Any], count: int, vips: int,
                            advert: float) -> Lab:
    return start_lab(nodes=count, advert_int=advert, overrides=properties, vips=vips)


@given(parsers.parse("the VIP is on {holder}"))
def vip_is_on(lab: Lab, story: Story, holder: str) -> None:
    """Put every VIP on `holder`: with sticky placement, drain its holders by hand one after the
    other until `holder` has it, then undrain them all (sticky: it stays where it is)."""
    target = lab.vm(holder)
    drained: list[str] = []
    for _ in lab.vms:
        current = lab.wait_converged()
        holders = set(current.values())
        if holders == {target.name}:
            break
        for name in holders - {target.name}:
            c = run_vipdrain(lab, story, name, "drain")
            assert c.returncode == 0, str(c)
            drained.append(name)
    for name in drained:
        c = run_vipdrain(lab, story, name, "undrain")
        assert c.returncode == 0, str(c)
    final = lab.wait_converged()
    assert set(final.values()) == {target.name}, f"could not put the VIPs on {holder}: {final}"
    story.note(f"setup: every VIP on {holder} (drained and undrained by hand: {', '.join(drained) or 'none'})")


@given(parsers.parse("a load client sends {rate:d} requests a second to each VIP"), target_fixture="traffic")
def load_clients(lab: Lab, story: Story, rate: int) -> Traffic:
    """One client per VIP (a new connection per request) and the VIP observer, both running."""
    observer = lab.observe(arp=True).start()
    clients = {vip: lab.client(rate=rate, vip=vip).start() for vip in lab.vips}
    traffic = Traffic(clients, observer, time.time())
    story.traffic = traffic
    traffic.wait_until_answered()
    return traffic


@given(parsers.parse("{victim}'s keepalived is killed (kill -9) as {vm}'s drain begins"),
       target_fixture="triggers")
def kill_keepalived_as_drain_begins(lab: Lab, triggers: tuple[Trigger, ...], victim: str,
                                    vm: str) -> tuple[Trigger, ...]:
    """kill -9 of keepalived and its VRRP child (a crash: no priority-0 advert)."""
    lab.vm(victim)
    return (*triggers, ActionTrigger(f"kill -9 of {victim}'s keepalived as {vm}'s drain begins", "drain", vm,
                                     lambda: lab.faults.kill_keepalived(victim)))


@given(parsers.parse("{victim}'s haproxy is killed (kill -9) as {vm}'s drain begins"), target_fixture="triggers")
def kill_haproxy_as_drain_begins(lab: Lab, triggers: tuple[Trigger, ...], victim: str,
                                 vm: str) -> tuple[Trigger, ...]:
    lab.vm(victim)
    return (*triggers, ActionTrigger(f"kill -9 of {victim}'s haproxy as {vm}'s drain begins", "drain", vm,
                                     lambda: lab.faults.kill_haproxy(victim)))


@given(parsers.parse("VRRP between {a} and {b} is dropped as {vm}'s update begins"), target_fixture="triggers")
def partition_as_update_begins(lab: Lab, triggers: tuple[Trigger, ...], a: str, b: str,
                               vm: str) -> tuple[Trigger, ...]:
    """nftables on both VMs drop the other's VRRP adverts (everything else still flows)."""

    def cut() -> bool:
        lab.faults.drop_vrrp(a, b)
        return True

    return (*triggers, ActionTrigger(f"VRRP between {a} and {b} dropped as {vm}'s update begins", "update", vm, cut))


@given(parsers.parse("{vm}'s drain process is killed (SIGKILL) once its hold is on"), target_fixture="triggers")
def kill_drain_once_held(lab: Lab, triggers: tuple[Trigger, ...], vm: str) -> tuple[Trigger, ...]:
    lab.vm(vm)
    return (*triggers, KillDrainOnceHeld(lab, vm))


@given(parsers.parse("the colocated haproxy job drains in parallel with a grace time of {grace:g} s"),
       target_fixture="triggers")
def colocated_haproxy_drain(lab: Lab, triggers: tuple[Trigger, ...], grace: float) -> tuple[Trigger, ...]:
    return (*triggers, ColocatedHaproxyDrain(lab, grace))


@given(parsers.parse("{vm}'s haproxy is down and its keepalived reports FAULT"))
def haproxy_down_and_fault(lab: Lab, story: Story, vm: str) -> None:
    """kill -9 of the VM's haproxy, then wait until keepalived's health check put it in FAULT."""
    target = lab.vm(vm)
    assert lab.faults.kill_haproxy(vm), f"{vm}'s haproxy was not running"
    story.note(f"setup: {vm}'s haproxy killed (kill -9)")
    for vip in lab.vips:
        until(lambda vip=vip: target.recorded_state(vip) == "FAULT", FAULT_DEADLINE, interval=0.05,
              what=f"{vm}'s keepalived to report FAULT for {vip}")
    story.note(f"setup: {vm}'s keepalived reports FAULT")


# --------------------------------------------------------------------------------------------
# When
# --------------------------------------------------------------------------------------------


@when(parsers.parse("bosh deploys a new release to every VM "
                    "with canaries {canaries:d} and max_in_flight {in_flight:d}"), target_fixture="deploy")
def deploy_everything(lab: Lab, story: Story, triggers: tuple[Trigger, ...], traffic: Traffic | None,
                      canaries: int, in_flight: int) -> BoshRun:
    """A new package version with the same properties on every VM."""
    changes, policy = every_vm(lab), UpdatePolicy(canaries=canaries, max_in_flight=in_flight)
    return bosh(lab, story, triggers, traffic, changes, policy, lambda d: d.deploy(changes, policy))


@when(parsers.parse("bosh deploys a new release to every VM with canaries {canaries:d}, max_in_flight "
                    "{in_flight:d} and {watch:g} s watch time"), target_fixture="deploy")
def deploy_everything_watched(lab: Lab, story: Story, triggers: tuple[Trigger, ...], traffic: Traffic | None,
                              canaries: int, in_flight: int, watch: float) -> BoshRun:
    """The same, with the director watching each started VM (`update_watch_time`) before the next."""
    changes = every_vm(lab)
    policy = UpdatePolicy(canaries=canaries, max_in_flight=in_flight, watch_seconds=watch)
    return bosh(lab, story, triggers, traffic, changes, policy, lambda d: d.deploy(changes, policy))


@when(parsers.parse("bosh deploys a new release to {vm} only"), target_fixture="deploy")
def deploy_one(lab: Lab, story: Story, triggers: tuple[Trigger, ...], traffic: Traffic | None, vm: str) -> BoshRun:
    changes, policy = {lab.vm(vm).name: None}, UpdatePolicy()
    return bosh(lab, story, triggers, traffic, changes, policy, lambda d: d.deploy(changes, policy))


@when("bosh deploys a new release to every VM with --skip-drain", target_fixture="deploy")
def deploy_skip_drain(lab: Lab, story: Story, triggers: tuple[Trigger, ...], traffic: Traffic | None) -> BoshRun:
    changes, policy = every_vm(lab), UpdatePolicy(skip_drain=True)
    return bosh(lab, story, triggers, traffic, changes, policy, lambda d: d.deploy(changes, policy))


@when("bosh deploys a release with these job properties to every VM:", target_fixture="deploy")
def deploy_properties(lab: Lab, story: Story, triggers: tuple[Trigger, ...], traffic: Traffic | None,
                      docstring: str) -> BoshRun:
    override = yaml.safe_load(docstring)  # merged over the lab's properties by VM.write_config
    changes: dict[str, dict[str, Any] | None] = {vm.name: override for vm in lab.vms}
    policy = UpdatePolicy()
    return bosh(lab, story, triggers, traffic, changes, policy, lambda d: d.deploy(changes, policy))


@when("bosh deletes the deployment", target_fixture="deploy")
def delete_deployment(lab: Lab, story: Story, triggers: tuple[Trigger, ...], traffic: Traffic | None) -> BoshRun:
    return bosh(lab, story, triggers, traffic, {}, UpdatePolicy(), lambda d: d.delete_deployment())


@when("bosh retries the deploy", target_fixture="deploy")
def retry_deploy(lab: Lab, story: Story, triggers: tuple[Trigger, ...], traffic: Traffic | None,
                 deploy: BoshRun) -> BoshRun:
    """`bosh deploy` again with the same manifest: a new task, the same changes and policy."""
    changes, policy = deploy.changes, deploy.policy
    return bosh(lab, story, triggers, traffic, changes, policy, lambda d: d.deploy(changes, policy))


@when(parsers.parse('the operator runs "vipdrain {args}" on {vm}'), target_fixture="command")
def operator_runs(lab: Lab, story: Story, args: str, vm: str) -> Call:
    story.note(f"operator: vipdrain {args} on {vm}")
    return run_vipdrain(lab, story, vm, *args.split())


# --------------------------------------------------------------------------------------------
# Then: the director
# --------------------------------------------------------------------------------------------


@then("the deploy completes")
def deploy_completes(deploy: BoshRun) -> None:
    assert deploy.error is None, f"the deploy stopped: {deploy.error}"


@then(parsers.parse('the deploy stops at {vm}\'s {step} saying "{text}"'))
def deploy_stops_at(deploy: BoshRun, vm: str, step: str, text: str) -> None:
    error = deploy.error
    assert error is not None, "the deploy completed"
    assert (error.step.vm, error.step.step) == (vm, step), f"the deploy stopped elsewhere: {error}"
    assert text in error.step.detail, f"{step} on {vm} did not say {text!r}: {error.step.detail}"


@then(parsers.parse("the deploy stops in {step}"))
def deploy_stops_in(deploy: BoshRun, step: str) -> None:
    error = deploy.error
    assert error is not None, "the deploy completed"
    assert error.step.step == step, f"the deploy stopped elsewhere: {error}"


@then(parsers.parse("{vms} were not touched"))
def not_touched(deploy: BoshRun, vms: str) -> None:
    """No lifecycle step at all ran on these VMs (`vm1 and vm2`)."""
    for name in vms.replace(" and ", ",").split(","):
        steps = deploy.steps(name.strip())
        assert not steps, f"{name.strip()} ran {[s.step for s in steps]}"


@then(parsers.parse("{vms} only ran post-deploy"))
def only_post_deploy(deploy: BoshRun, vms: str) -> None:
    for name in vms.replace(" and ", ",").split(","):
        ran = [s.step for s in deploy.steps(name.strip())]
        assert ran == ["post-deploy"], f"{name.strip()} ran {ran}"


@then(parsers.parse('{vm}\'s drain said "{text}"'))
def drain_said(lab: Lab, deploy: BoshRun, vm: str, text: str) -> None:
    """On the drain's stderr (what the agent logs) and in the job's vipdrain.log (`bosh logs`)."""
    drains = deploy.calls_of("drain", vm)
    assert drains, f"{vm} did not drain"
    assert any(text in c.stderr for c in drains), f"no drain on {vm} said {text!r}:\n" + "\n".join(map(str, drains))
    log = lab.vm(vm).layout.vipdrain_log
    assert text in log.read_text(), f"{log} does not say {text!r}"


@then(parsers.parse("{vm}'s drain returned within {seconds:g} s"))
def drain_returned_within(deploy: BoshRun, vm: str, seconds: float) -> None:
    drains = deploy.steps(vm, "drain")
    assert drains, f"{vm} did not drain"
    took = max(s.end - s.start for s in drains)
    assert took <= seconds, f"{vm}'s drain took {took:.1f} s"


# --------------------------------------------------------------------------------------------
# Then: traffic and the VIP
# --------------------------------------------------------------------------------------------


@then("no request failed")
def no_request_failed(traffic: Traffic) -> None:
    summaries = traffic.summaries()
    failed = {vip: s for vip, s in summaries.items() if s.failures}
    assert not failed, "failed requests: " + "; ".join(f"{vip}: {s}" for vip, s in failed.items())
    assert all(s.total >= 1 for s in summaries.values()), f"a client sent nothing: {summaries}"


@then(parsers.parse("no request failed before {vm} stopped"))
def no_failure_before_stop(traffic: Traffic, deploy: BoshRun, vm: str) -> None:
    """The VM served until BOSH stopped it (its first `monit stop` of this deploy)."""
    stops = deploy.steps(vm, "stop")
    assert stops, f"{vm} was not stopped"
    summaries = traffic.summaries(end=stops[0].start)
    failed = {vip: s for vip, s in summaries.items() if s.failures}
    assert not failed, f"requests failed before {vm} stopped: {failed}"


@then("the load client saw failed requests")
def clients_saw_failures(traffic: Traffic) -> None:
    """Downtime is reported, not hidden: the clients count failed requests."""
    summaries = traffic.summaries()
    assert sum(s.failures for s in summaries.values()) > 0, f"no request failed: {summaries}"


@then("the observer saw the VIP without a holder")
def observer_saw_unowned(lab: Lab, traffic: Traffic) -> None:
    for vip in lab.vips:
        assert traffic.observer.unowned(vip), f"{vip} always had a holder: {traffic.observer.timeline(vip)}"


@then(parsers.parse("the VIP moved at most {count:d} times"))
def moved_at_most(lab: Lab, traffic: Traffic, count: int) -> None:
    for vip in lab.vips:
        moves = traffic.observer.moves(vip)
        assert moves <= count, f"{vip} moved {moves} times: {traffic.observer.timeline(vip)}"


@then("the VIP never moved")
def never_moved(lab: Lab, traffic: Traffic) -> None:
    """One holder the whole time: no move, no moment without a holder, no second holder."""
    for vip in lab.vips:
        holders = {iv.holders for iv in traffic.observer.intervals(vip)}
        assert len(holders) == 1 and len(next(iter(holders))) == 1, (
            f"{vip} did not stay on one VM: {traffic.observer.timeline(vip)}"
        )


@then(parsers.parse("the VIP ends on {vm}"))
def vip_ends_on(lab: Lab, vm: str) -> None:
    for vip in lab.vips:
        lab.wait_holder(vip, lab.vm(vm).name, timeout=END_STATE_DEADLINE)


# --------------------------------------------------------------------------------------------
# Then: end state, as vipdrain itself reports it
# --------------------------------------------------------------------------------------------


@then("no VM is held")
def no_vm_held(lab: Lab, story: Story) -> None:
    """`vipdrain status --json` on every VM: no hold reason, maintenance off."""
    for vm in lab.vms:
        status = status_json(lab, story, vm.name)
        assert status["hold_reasons"] == [] and not status["maintenance"], (
            f"{vm.name} is held: {status['hold_reasons']} (maintenance {status['maintenance']})"
        )


@then(parsers.parse('the command exits {code:d} and says "{text}"'))
def command_exits(command: Call, code: int, text: str) -> None:
    assert command.returncode == code, str(command)
    assert text in command.stdout, str(command)
