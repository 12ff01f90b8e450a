"""The drain and the start-side hooks on real keepalived + haproxy (issue 4's lab tests).

Outcomes are asserted (0 failed requests, who holds the VIP, the drain's stdout, exit codes);
deadlines are generous. Speed is measured in bench/, not here.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from typing import Any

import pytest

from vipdrain.lab import netns
from vipdrain.lab.cluster import VM, Lab
from vipdrain.lab.plan import LAB_PRESERVE_GRACE
from vipdrain.vrrp import timing
from vipdrain.waiting import wait_until

#: What a holder's BOSH drain prints: connection preservation is on by default, so BOSH waits
#: the grace period before stopping haproxy (the lab shortens it, vipdrain.lab.plan).
HANDED_OVER = f"{LAB_PRESERVE_GRACE}\n"

pytestmark = pytest.mark.lab

BOSH = ("job_changed", "hash_changed", "haproxy")


def drain(vm: VM, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = vm.vipdrain("drain", *args, check=False)
    return proc, time.monotonic() - started


def handoff_bound(lab: Lab) -> float:
    """The issue's promise without the resign advert (of a priority-150 peer)."""
    return timing.handoff_bound(150, lab.advert_int, resign=False)


PRESERVE = {"vipdrain": {"drain": {"preserve_connections": True, "preserve_grace": 2}}}
NOT_PRESERVING = {"vipdrain": {"drain": {"preserve_connections": False}}}


#: Resets one VIP move may cost without connection preservation (issue 15): the connections
#: whose packets straddle the clients' ARP switch. About one per three moves at 200 req/s; 3 in
#: one run of 3 moves was seen in CI, so the bound is per move, not per test.
RESETS_PER_MOVE = 2
#: How close to a change of the answering VM such a reset happens (the connection was open then).
RESET_NEAR_MOVE = 1.0


def assert_no_lost_request(run: Any, start: float, end: float, preserving: bool) -> None:
    """0 failed requests between `start` and `end`. Without connection preservation, a connection
    whose packets straddle the clients' ARP switch (SYN to the old VM, the rest to the new one) is
    reset by the new master - or times out, when the new master still holds a TIME_WAIT socket of
    the same 4-tuple (the client reuses ports; captured: it answers the request with bare ACKs):
    allowed at a move of the VIP (when the answering VM changed), never a refusal, never away
    from a move."""
    summary = run.summary(start, end)
    if preserving:
        assert summary.failures == 0, str(summary)
        return
    assert set(summary.failed) <= {"reset", "timeout"}, str(summary)
    moves = [t for t, _old, _new in summary.vm_changes]
    failed = [r.time for r in run.records() if start <= r.time <= end and not r.ok]
    away = [t for t in failed if not any(abs(t - m) <= RESET_NEAR_MOVE for m in moves)]
    assert not away, f"{len(away)} reset(s) away from any move of the VIP; {summary}"
    assert len(failed) <= RESETS_PER_MOVE * len(moves), str(summary)


@pytest.mark.parametrize(
    "lab",
    [{"nodes": 2, "overrides": PRESERVE}, {"nodes": 3, "overrides": PRESERVE}, {"nodes": 2},
     {"nodes": 3, "overrides": NOT_PRESERVING}],
    indirect=True, ids=["2-nodes-preserving", "3-nodes-preserving", "2-nodes-defaults", "3-nodes-not-preserving"],
)
def test_draining_the_master_hands_over_with_no_failed_request(lab: Lab, client, observer) -> None:
    vip = lab.vips[0]
    run = client(rate=200)
    assert wait_until(lambda: sum(r.ok for r in run.records()) >= 100, budget=15, step=0.1)
    started = time.time()
    preserving = lab.overrides != NOT_PRESERVING  # on by default
    proc, _ = drain(lab.vms[0], *BOSH)
    assert proc.returncode == 0, proc.stderr
    # The BOSH contract: one integer line, nothing else (with preservation: the grace period).
    grace = 2 if lab.overrides == PRESERVE else LAB_PRESERVE_GRACE
    assert proc.stdout == (f"{grace}\n" if preserving else "0\n")
    observer.wait_for(vip, {"vm1"}, timeout=10, since=started)
    assert lab.holders(vip) == ["vm1"]  # the best peer (priority 150)
    # The taker's MAC came from the kernel's neighbour entry the probe of its haproxy confirmed,
    # not from an ARP round that listens 0.1 s before the resign.
    resign = next((line for line in proc.stderr.splitlines() if "resign adverts go to" in line), proc.stderr)
    assert f"resign adverts go to {lab.vms[1].ip} ({lab.vms[1].mac}, neighbour table) only" in resign, resign
    reported = handoff_seconds(proc.stderr)
    assert reported <= handoff_bound(lab), f"handoff {reported:.2f} s"
    assert wait_until(lambda: any(r.time > time.time() - 0.2 and r.vm == "vm1" for r in run.records()),
                      budget=10, step=0.1)
    run.stop()
    assert_no_lost_request(run, started - 1, time.time(), preserving)
    # Make-before-break: the old master keeps the VIP until the new one announced itself; a gap of
    # a millisecond or two between their netlink events is measurement, a real gap is ~1 s.
    gaps = [g.duration for g in observer.unowned(vip, started, time.time())]
    assert max(gaps, default=0) < 0.1, f"the VIP had no holder for {max(gaps):.3f} s"


def handoff_seconds(stderr: str) -> float:
    """What the drain reports: `verified X s after the drain began`."""
    match = re.search(r"verified ([0-9.]+) s after the drain began", stderr)
    assert match, stderr
    return float(match.group(1))


@pytest.mark.slow
@pytest.mark.parametrize("lab", [{"nodes": 2, "advert_int": 1.0}], indirect=True)
def test_handoff_at_the_default_advert_interval(lab: Lab, client, observer) -> None:
    """advert_int 1 s, with and without the resign advert: both verified, no failed request."""
    vip = lab.vips[0]
    run = client(rate=200)
    assert wait_until(lambda: sum(r.ok for r in run.records()) >= 100, budget=15, step=0.1)
    t0 = time.time()
    proc, _ = drain(lab.vms[0], *BOSH)
    assert proc.stdout == HANDED_OVER, proc.stderr
    with_resign = handoff_seconds(proc.stderr)
    assert lab.vms[0].vipdrain("undrain").returncode == 0
    lab.wait_holder(vip, "vm0", timeout=15)
    lab.vms[0].write_config({"vipdrain": {"drain": {"resign_advert": False}}})
    proc, _ = drain(lab.vms[0], *BOSH)
    assert proc.stdout == HANDED_OVER, proc.stderr
    without = handoff_seconds(proc.stderr)
    run.stop()
    assert_no_lost_request(run, t0 - 1, time.time(), preserving=True)
    assert with_resign <= timing.handoff_bound(150, 1.0) + 0.7, f"with resign {with_resign:.2f} s"
    assert without <= handoff_bound(lab), f"without resign {without:.2f} s"
    print(f"handoff at advert_int 1 s: {with_resign:.2f} s with the resign advert, {without:.2f} s without")


@pytest.mark.parametrize("lab", [{"nodes": 2}], indirect=True)
def test_draining_a_backup_returns_at_once(lab: Lab, observer) -> None:
    vip = lab.vips[0]
    proc, took = drain(lab.vms[1], *BOSH)
    assert proc.returncode == 0 and proc.stdout == "0\n", proc.stderr
    assert "nothing to hand over" in proc.stderr
    assert took < 5, f"{took:.2f} s"
    assert lab.holders(vip) == ["vm0"]
    status = json.loads(lab.vms[1].vipdrain("status", "--json").stdout)
    assert status["hold_reasons"] == ["drain"] and status["priority"]["effective"] == 1


@pytest.mark.parametrize("policy", ["proceed", "fail"])
def test_single_instance_follows_the_no_peer_policy_at_once(lab_factory, policy: str) -> None:
    lab = lab_factory(nodes=1, overrides={"vipdrain": {"drain": {"no_peer_policy": policy}}})
    proc, took = drain(lab.vms[0], *BOSH)
    assert took < 10, f"{took:.2f} s"
    assert "single instance" in proc.stderr
    if policy == "proceed":
        assert (proc.returncode, proc.stdout) == (0, "0\n")
        assert "NO VERIFIED HANDOFF" in proc.stderr
    else:
        assert proc.returncode != 0 and proc.stdout == ""
        assert "handoff failed" in proc.stderr
        status = json.loads(lab.vms[0].vipdrain("status", "--json").stdout)
        assert status["hold_reasons"] == []  # a failed drain gives the VM its priority back
    assert lab.holders(lab.vips[0]) == ["vm0"]  # the VIP is never dropped by the drain itself


def test_every_peer_held_means_no_peer_and_no_hang(lab_factory) -> None:
    """max_in_flight covering the whole group: the backup drains first, then the master."""
    lab = lab_factory(nodes=2, overrides={"vipdrain": {"drain": {"timeout": 3}}})
    vip = lab.vips[0]
    assert drain(lab.vms[1], *BOSH)[0].stdout == "0\n"
    proc, took = drain(lab.vms[0], *BOSH)
    assert (proc.returncode, proc.stdout) == (0, "0\n"), proc.stderr
    assert "no peer took over within" in proc.stderr and "no_peer_policy is 'proceed'" in proc.stderr
    assert took < 3 + 5
    assert lab.holders(vip), "the VIP must still be held"


@pytest.mark.parametrize("lab", [{"nodes": 2, "overrides": {"vipdrain": {"drain": {
    "no_peer_policy": "fail", "resign_advert": False, "timeout": 4}}}}], indirect=True)
def test_peer_dying_during_the_wait_fails_the_drain_and_keeps_the_vip(lab: Lab, observer) -> None:
    vip = lab.vips[0]
    vm0 = lab.vms[0]
    waiting = background_drain(vm0)
    lab.faults.kill_keepalived("vm1")
    out, err = waiting.communicate(timeout=30)
    assert waiting.returncode != 0 and out == "", err
    assert "handoff failed" in err
    assert lab.holders(vip) == ["vm0"]
    assert json.loads(vm0.vipdrain("status", "--json").stdout)["hold_reasons"] == []


def background_drain(vm: VM) -> subprocess.Popen[str]:
    """`vipdrain drain` (BOSH arguments) started in the VM, not waited for."""
    return subprocess.Popen(netns.exec_argv(vm.namespace, [str(vm.wrapper), "drain", *BOSH]), env=vm.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("lab", [{"nodes": 2}], indirect=True)
def test_drain_killed_midway_then_called_again_recovers(lab: Lab, client, observer) -> None:
    vip = lab.vips[0]
    vm0 = lab.vms[0]
    run = client(rate=200)
    assert wait_until(lambda: sum(r.ok for r in run.records()) >= 100, budget=15, step=0.1)
    t0 = time.time()
    victim = background_drain(vm0)
    assert wait_until(lambda: "hand over" in _log(vm0), budget=10, step=0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    proc, _ = drain(vm0, *BOSH)  # BOSH retries
    assert (proc.returncode, proc.stdout) == (0, HANDED_OVER), proc.stderr
    assert lab.holders(vip) == ["vm1"]
    again, _ = drain(vm0, "job_check_status", "hash_unchanged")
    assert again.stdout == HANDED_OVER
    run.stop()
    assert_no_lost_request(run, t0, time.time(), preserving=True)


def _log(vm: VM) -> str:
    try:
        return vm.layout.vipdrain_log.read_text()
    except FileNotFoundError:
        return ""


@pytest.mark.parametrize("lab", [{"nodes": 2}], indirect=True)
def test_bad_inputs_are_survived(lab: Lab) -> None:
    """Corrupt state files, unknown BOSH arguments: clear messages, the VIP handed over."""
    vm0 = lab.vms[0]
    name = "vip_1"
    vm0.layout.state_file(name).write_text("{garbage")
    vm0.layout.hold_state_file.write_text("not json")
    proc, _ = drain(vm0, "job_exploded", "hash_weird")
    assert (proc.returncode, proc.stdout) == (0, HANDED_OVER), proc.stderr
    assert "unknown BOSH drain action 'job_exploded'" in proc.stderr
    assert "is corrupt" in proc.stderr
    assert lab.holders(lab.vips[0]) == ["vm1"]


@pytest.mark.parametrize("lab", [{"nodes": 2}], indirect=True)
def test_dead_keepalived_on_the_master_leaves_no_stale_vip(lab: Lab, observer) -> None:
    vip = lab.vips[0]
    lab.faults.kill_keepalived("vm0")  # the VIP stays on vm0's eth0; vm1 takes over too
    observer.wait_for(vip, lambda h: "vm1" in h, timeout=10)
    proc, _ = drain(lab.vms[0], *BOSH)
    # It held the VIP (with a dead keepalived), so its haproxy's connections get the grace period.
    assert (proc.returncode, proc.stdout) == (0, HANDED_OVER), proc.stderr
    assert "keepalived is not running here" in proc.stderr
    assert lab.holders(vip) == ["vm1"]


@pytest.mark.parametrize("lab", [{"nodes": 2}], indirect=True)
def test_manual_maintenance_and_undrain(lab: Lab, client, observer) -> None:
    vip = lab.vips[0]
    run = client(rate=200)
    assert wait_until(lambda: sum(r.ok for r in run.records()) >= 100, budget=15, step=0.1)
    t0 = time.time()
    proc = lab.vms[0].vipdrain("drain")
    assert proc.stdout.startswith("maintenance on: ") and "handed over to 192.0.2.11" in proc.stdout
    assert "[" in proc.stderr and "s / 30s]" in proc.stderr  # progress for the human at the terminal
    status = json.loads(lab.vms[0].vipdrain("status", "--json").stdout)
    assert status["maintenance"] and status["vips"][0]["holders"][0]["address"] == "192.0.2.11"
    assert "maintenance off" in lab.vms[0].vipdrain("undrain").stdout
    observer.wait_for(vip, {"vm0"}, timeout=15, since=t0 + 0.01)  # preferred: back to the bootstrap VM
    run.stop()
    assert_no_lost_request(run, t0, time.time(), preserving=True)


@pytest.mark.parametrize("lab", [{"nodes": 2}], indirect=True)
def test_pre_start_with_bad_properties_changes_nothing(lab: Lab) -> None:
    vm0 = lab.vms[0]
    before = vm0.layout.keepalived_conf.read_text()
    vm0.write_config({"keepalived": {"virtual_router_id": 300, "advert_intt": 1}})
    proc = vm0.vipdrain("pre-start", check=False)
    assert proc.returncode == 2
    assert "keepalived.virtual_router_id: 300 is out of range 1..255" in proc.stderr
    assert "keepalived.advert_intt" in proc.stderr
    assert vm0.layout.keepalived_conf.read_text() == before
    assert lab.holders(lab.vips[0]) == ["vm0"]


@pytest.mark.parametrize("lab", [{"nodes": 2}], indirect=True)
def test_post_deploy_reports_split_brain_and_passes_when_healed(lab: Lab) -> None:
    ok = lab.vms[1].vipdrain("post-deploy", check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "[ok]" in ok.stdout
    with lab.faults.vrrp_dropped("vm0", "vm1"):
        assert wait_until(lambda: len(lab.holders(lab.vips[0])) == 2, budget=10, step=0.05)
        bad = lab.vms[1].vipdrain("post-deploy", "--timeout", "2", check=False)
        assert bad.returncode != 0
        assert "SPLIT BRAIN" in bad.stdout
        status = lab.vms[0].vipdrain("status", check=False)
        assert status.returncode != 0 and "SPLIT BRAIN" in status.stdout
    lab.wait_holder(lab.vips[0], "vm0", timeout=15)
    assert lab.vms[1].vipdrain("post-deploy", check=False).returncode == 0


@pytest.mark.parametrize("lab", [{"nodes": 2, "vips": 5}], indirect=True)
def test_all_vips_are_drained_together(lab: Lab) -> None:
    proc, _ = drain(lab.vms[0], *BOSH)
    assert proc.stdout == HANDED_OVER, proc.stderr
    holders: dict[str, Any] = lab.holder_map()
    assert all(h == ["vm1"] for h in holders.values()), holders
