"""The deploy simulator's own logic, with fake VMs: order, batching, the drain protocol."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass, field

import pytest

from vipdrain.errors import RuntimeFailure
from vipdrain.lab.bosh import DeployFailed, Director, UpdatePolicy, parse_drain_stdout

CALLS: list[tuple[str, str]] = []
LOCK = threading.Lock()


@dataclass
class FakeVM:
    name: str
    az: str = "z1"
    drain_outputs: list[str] = field(default_factory=lambda: ["0\n"])
    fail_hook: str = ""
    has_drain: bool = True

    def _log(self, what: str) -> None:
        with LOCK:
            CALLS.append((self.name, what))

    def vipdrain(self, *args, env=None, check=False, timeout=300.0):
        self._log(" ".join(args))
        if args[0] == "drain":
            out = self.drain_outputs.pop(0) if len(self.drain_outputs) > 1 else self.drain_outputs[0]
            assert env and "BOSH_JOB_STATE" in env
            return subprocess.CompletedProcess(args, 0, out, "")
        rc = 1 if args[0] == self.fail_hook else 0
        return subprocess.CompletedProcess(args, rc, "", "pre-start: keepalived.vip: 'x' is not an IP address")

    def monit_start(self) -> None:
        self._log("start")

    def monit_stop(self) -> None:
        self._log("stop")

    def write_config(self, overrides=None) -> None:
        self._log("update")

    def reboot(self) -> None:
        self._log("reboot")

    def wipe_ephemeral(self) -> None:
        self._log("wipe")


@pytest.fixture(autouse=True)
def _clear():
    CALLS.clear()


def test_a_job_without_drain_script_is_stopped_without_drain():
    """haproxy-boshrelease's keepalived job has no drain: the agent goes straight to monit stop."""
    old = FakeVM("vm0", has_drain=False)
    Director([old, FakeVM("vm1")]).deploy({"vm0": None})
    assert [what for vm, what in CALLS if vm == "vm0"][:3] == ["stop", "update", "pre-start"]


def test_rolling_deploy_order_and_hooks():
    vms = [FakeVM("vm0"), FakeVM("vm1", az="z2"), FakeVM("vm2")]
    Director(vms, agent_sleep=lambda s: None).deploy({v.name: None for v in vms})
    per_vm = [c for c in CALLS if c[1] != "post-deploy"]
    assert [name for name, _ in per_vm][::6] == ["vm0", "vm2", "vm1"]  # canary, rest of z1, then z2
    assert [what for name, what in per_vm if name == "vm0"] == [
        "drain job_changed hash_changed", "stop", "update", "pre-start", "start", "post-start"]
    assert sorted(n for n, w in CALLS if w == "post-deploy") == ["vm0", "vm1", "vm2"]


def test_only_changed_vms_are_touched():
    vms = [FakeVM("vm0"), FakeVM("vm1")]
    Director(vms, agent_sleep=lambda s: None).deploy({"vm1": {"keepalived": {"advert_int": 2}}})
    assert not [c for c in CALLS if c[0] == "vm0" and c[1] != "post-deploy"]


def test_dynamic_drain_is_called_back_with_job_check_status():
    slept: list[float] = []
    vm = FakeVM("vm0", drain_outputs=["-2\n", "-1\n", "0\n"])
    step = Director([vm], agent_sleep=slept.append).drain(vm)
    assert slept == [2, 1, 0]
    assert [w for _, w in CALLS] == ["drain job_changed hash_changed", "drain job_check_status hash_unchanged",
                                     "drain job_check_status hash_unchanged"]
    assert step.detail.startswith("3 call(s)")


def test_skip_drain():
    vm = FakeVM("vm0")
    Director([vm], agent_sleep=lambda s: None).deploy({"vm0": None}, UpdatePolicy(skip_drain=True))
    assert not [w for _, w in CALLS if w.startswith("drain")]


def test_failing_pre_start_stops_the_deploy_at_the_canary():
    vms = [FakeVM("vm0", fail_hook="pre-start"), FakeVM("vm1")]
    director = Director(vms, agent_sleep=lambda s: None)
    with pytest.raises(DeployFailed, match=r"pre-start failed on vm0.*not an IP address"):
        director.deploy({"vm0": None, "vm1": None})
    assert not [c for c in CALLS if c[0] == "vm1"]
    assert "ERR" in director.timeline.format()


def test_delete_deployment_drains_all_at_once():
    vms = [FakeVM(f"vm{i}") for i in range(3)]
    Director(vms, agent_sleep=lambda s: None).delete_deployment()
    assert sorted(n for n, w in CALLS if w.startswith("drain job_shutdown")) == ["vm0", "vm1", "vm2"]


@pytest.mark.parametrize("bad", ["", "0", "0\n0\n", "zero\n", "0 \n", "log line\n0\n"])
def test_drain_stdout_contract(bad):
    with pytest.raises(RuntimeFailure, match="drain contract violated"):
        parse_drain_stdout(bad)


@pytest.mark.parametrize(("good", "value"), [("0\n", 0), ("-5\n", -5), ("12\n", 12)])
def test_drain_stdout_ok(good, value):
    assert parse_drain_stdout(good) == value
