"""features/faults: a peer dies, cannot serve or hangs while the master drains, a VRRP partition during
a deploy, the drain killed mid-way, the drain server dead or frozen."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
from pytest_bdd import given, parsers, scenarios, then, when
from rollout_support import BoshRun, Call, Story, Traffic, run_vipdrain

from vipdrain.fsutil import lock_holders
from vipdrain.lab import netns
from vipdrain.lab.cluster import Lab
from vipdrain.waiting import wait_until

scenarios("faults")

#: Clients learned the losing side's MAC during the split brain. The surviving master re-announces
#: the VIP when the partition ends (tests/lab/test_split_brain_lab.py); before it did, clients
#: followed only when their ARP entry was refreshed (3 to 32 s). The deadline stays generous.
ANSWERED_AGAIN_DEADLINE = 60.0


@then(parsers.parse('post-deploy failed on {vm} saying "{text}"'))
def post_deploy_failed(lab: Lab, deploy: BoshRun, vm: str, text: str) -> None:
    """post-deploy prints its one-screen summary on stdout and exits non-zero."""
    calls = deploy.calls_of("post-deploy", lab.vm(vm).name)
    assert calls, f"post-deploy did not run on {vm}"
    assert calls[-1].returncode != 0 and text in calls[-1].stdout, str(calls[-1])


@given(parsers.parse("{vm}'s notify reader is killed (kill -9)"))
def notify_reader_killed(lab: Lab, story: Story, vm: str) -> None:
    """keepalived started it (vrrp_notify_fifo_script) and never starts it again while it runs."""
    pids = lab.faults.kill_notify_reader(vm)
    assert pids, f"{vm} has no notify reader to kill"
    story.note(f"kill -9 of {vm}'s notify reader (pid {', '.join(map(str, pids))})")


@given(parsers.parse("{vm}'s drain server is {fault}"))
def drain_server_fault(lab: Lab, story: Story, vm: str, fault: str) -> None:
    """kill -9 (its socket file stays behind) or SIGSTOP (connections are accepted, never answered)."""
    sig = {"killed (kill -9)": signal.SIGKILL, "frozen (SIGSTOP)": signal.SIGSTOP}[fault]
    assert lab.faults.send_signal(vm, "drain-server", sig), f"{vm} has no drain server"
    story.note(f"{vm}'s drain server {fault}")


@given(parsers.parse("{vm}'s keepalived is stopped as monit stops it"))
def keepalived_stopped(lab: Lab, story: Story, vm: str) -> None:
    """SIGTERM and wait (monit stop): keepalived resigns and removes its VIPs, then is gone."""
    assert lab.vm(vm).stop_keepalived(), f"{vm}'s keepalived did not stop"
    story.note(f"{vm}'s keepalived stopped (SIGTERM, as monit stop)")


@given(parsers.parse("an operator's drain on {vm} is stopped (Ctrl-Z) holding the drain lock"))
def drain_stopped_holding_the_lock(lab: Lab, story: Story, request: pytest.FixtureRequest, vm: str) -> None:
    """`vipdrain drain` started in the VM, stopped (SIGSTOP, as Ctrl-Z) once it holds the lock;
    killed by its pid when the scenario ends (before the lab goes)."""
    target = lab.vm(vm)
    proc = subprocess.Popen(netns.exec_argv(target.namespace, [str(target.wrapper), "drain"]), env=target.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill() -> None:
        proc.kill()
        proc.wait()

    request.addfinalizer(kill)
    assert wait_until(lambda: proc.pid in lock_holders(target.layout.drain_lock), budget=30, step=0.01), (
        f"{vm}'s operator drain never took the drain lock")
    os.kill(proc.pid, signal.SIGSTOP)
    story.note(f"an operator's drain on {vm} (pid {proc.pid}) stopped holding the drain lock")


@then(parsers.parse('{vm}\'s drain did not say "{text}"'))
def drain_did_not_say(deploy: BoshRun, vm: str, text: str) -> None:
    drains = deploy.calls_of("drain", vm)
    assert drains, f"{vm} did not drain"
    assert not any(text in c.stderr for c in drains), "\n".join(map(str, drains))


@then(parsers.parse('the command does not say "{text}"'))
def command_does_not_say(command: Call, text: str) -> None:
    assert text not in command.stdout, str(command)


@then(parsers.parse("the observer saw two holders of the VIP for at least {seconds:g} s"))
def observer_saw_split_brain(lab: Lab, traffic: Traffic, seconds: float) -> None:
    for vip in lab.vips:
        longest = max((iv.duration for iv in traffic.observer.split_brain(vip)), default=0.0)
        assert longest >= seconds, f"{vip}: two holders for {longest:.2f} s at most: {traffic.observer.timeline(vip)}"


@then(parsers.parse('"vipdrain status" on every VM exits {code:d} saying "{text}"'))
def status_everywhere(lab: Lab, story: Story, code: int, text: str) -> None:
    for vm in lab.vms:
        call = run_vipdrain(lab, story, vm.name, "status")
        assert call.returncode == code and text in call.stdout, str(call)


@when("the VRRP partition ends", target_fixture="healed_at")
def partition_ends(lab: Lab, story: Story) -> float:
    """Undo every nftables fault of the lab (the VRRP drop included)."""
    lab.faults.heal()
    story.note("the VRRP partition ends (nftables rules removed)")
    return time.time()


@then("the load client is answered again")
def answered_again(traffic: Traffic, story: Story, healed_at: float) -> None:
    first = traffic.wait_answered_after(healed_at, ANSWERED_AGAIN_DEADLINE)
    story.note(f"clients answered again {first - healed_at:.1f} s after the partition ended")


@given(parsers.parse("{vm}'s haproxy hangs (SIGSTOP)"), target_fixture="fault_at")
@when(parsers.parse("{vm}'s haproxy hangs (SIGSTOP)"), target_fixture="fault_at")
def haproxy_hangs(lab: Lab, story: Story, vm: str) -> float:
    """SIGSTOP of haproxy's process group, by pid (`Faults.freeze`); the lab's teardown sends
    SIGCONT before it stops a process, so the stopped haproxy is never left behind."""
    assert lab.faults.freeze(vm, "haproxy"), f"{vm}'s haproxy was not running"
    story.note(f"{vm}'s haproxy stopped (SIGSTOP): its kernel still accepts connections")
    return time.time()


@when(parsers.parse("{vm}'s haproxy dies (kill -9)"), target_fixture="fault_at")
def haproxy_dies(lab: Lab, story: Story, vm: str) -> float:
    """SIGKILL of haproxy, by pid (`Faults.kill_haproxy`): its pid file still names the dead pid."""
    assert lab.faults.kill_haproxy(vm), f"{vm}'s haproxy was not running"
    story.note(f"{vm}'s haproxy killed (kill -9)")
    return time.time()


@then(parsers.parse("{vm}'s drain handed every VIP to {other}"))
def drain_handed_to(lab: Lab, deploy: BoshRun, vm: str, other: str) -> None:
    """The drain's summary names the holder of every VIP: `... handed over to <address>`."""
    drains = deploy.calls_of("drain", lab.vm(vm).name)
    assert drains, f"{vm} did not drain"
    named = re.findall(r"handed over to ([0-9a-f.:]+[0-9a-f])", drains[-1].stderr)
    assert len(named) == len(lab.vips) and set(named) == {lab.vm(other).ip}, str(drains[-1])


@then(parsers.parse("the VIP never went to {vm}"))
def never_went_to(lab: Lab, traffic: Traffic, vm: str) -> None:
    name = lab.vm(vm).name
    for vip in lab.vips:
        for by_arp in (False, True):
            held = [iv for iv in traffic.observer.intervals(vip, arp=by_arp) if name in iv.holders]
            assert not held, f"{vip} was on {vm} ({'ARP' if by_arp else 'addresses'}): {held}"


@then(parsers.parse("within {seconds:g} s of the {fault} {vm} holds the VIP and answers the load client"))
def holds_and_answers_after_fault(lab: Lab, traffic: Traffic, story: Story, fault_at: float, seconds: float,
                                  fault: str, vm: str) -> None:
    """keepalived's check (every second, `fall` 2, each up to 0.7 s) fails, the VM goes FAULT
    and resigns; the deadline is generous for a busy machine."""
    for vip in lab.vips:
        took = traffic.observer.wait_for(vip, {lab.vm(vm).name}, timeout=seconds, since=fault_at) - fault_at
        story.note(f"{vip} on {vm} {took:.1f} s after the {fault}")
        assert took <= seconds, f"{vip} reached {vm} {took:.1f} s after the {fault}"
    first = traffic.wait_answered_after(fault_at, seconds)
    assert first - fault_at <= seconds, f"clients answered again {first - fault_at:.1f} s after the {fault}"


@then(parsers.parse("{vm}'s keepalived log says why its health check failed: \"{text}\""))
def healthcheck_failure_logged(lab: Lab, story: Story, vm: str, text: str) -> None:
    """keepalived sends a script's output to /dev/null: the check appends its reason to
    keepalived.log itself (lifecycle/healthcheck --log), next to keepalived's own verdict."""
    log = lab.vm(vm).layout.keepalived_log.read_text()
    lines = [line for line in log.splitlines() if ": vipdrain_healthcheck: " in line]
    assert any(text in line for line in lines), f"no health check failure saying {text!r} in {vm}'s log: {lines}"
    story.note(f"{vm}'s keepalived.log: {next(line for line in lines if text in line)}")
