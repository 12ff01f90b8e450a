"""A faithful stand-in for the BOSH director and agent, driving the real lifecycle on lab VMs.

Per instance group: canaries first, then `max_in_flight` at a time, AZ by AZ. For each instance
that changes: `monit unmonitor` -> drain (BOSH's arguments and env; static and dynamic draining:
called again with `job_check_status` while it prints negative numbers) -> `monit stop` ->
the new release -> pre-start -> `monit start` -> post-start; then post-deploy on every VM in
parallel. Also `bosh stop/start/restart/recreate`, `--skip-drain`, `delete-deployment` (drains
every VM at once) and a VM reboot (no hooks). Every step lands in a `Timeline`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from vipdrain.errors import RuntimeFailure


class LabVM(Protocol):
    """What the simulator needs from a lab VM (`vipdrain.lab.vm.VM`)."""

    name: str
    az: str
    #: False for a job without a drain script (haproxy-boshrelease's keepalived job).
    has_drain: bool

    def vipdrain(self, *args: str, env: dict[str, str] | None = None, check: bool = False,
                 timeout: float = 300.0) -> Any: ...  # -> CompletedProcess[str]

    def monit_start(self) -> None: ...

    def monit_stop(self) -> None: ...

    def write_config(self, overrides: dict[str, Any] | None = None) -> None: ...

    def reboot(self) -> None: ...

    def wipe_ephemeral(self) -> None: ...


@dataclass
class Step:
    """One lifecycle step on one VM; times are `time.time()` so they line up with client records."""

    vm: str
    step: str
    start: float
    end: float = 0.0
    ok: bool = True
    detail: str = ""


@dataclass
class Timeline:
    steps: list[Step] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def begin(self, vm: str, step: str) -> Step:
        s = Step(vm, step, time.time())
        with self._lock:
            self.steps.append(s)
        return s

    def for_vm(self, vm: str) -> list[Step]:
        return [s for s in self.steps if s.vm == vm]

    def named(self, step: str) -> list[Step]:
        return [s for s in self.steps if s.step == step]

    def format(self, origin: float | None = None) -> str:
        """The timeline as text, relative to `origin` (default: the first step)."""
        if not self.steps:
            return "(no steps)"
        t0 = origin if origin is not None else min(s.start for s in self.steps)
        return "\n".join(
            f"{s.start - t0:8.2f}s {s.end - t0:8.2f}s {s.vm:>6} {s.step:<14} {'ok ' if s.ok else 'ERR'} {s.detail}"
            for s in sorted(self.steps, key=lambda s: s.start)
        )


class DeployFailed(RuntimeFailure):
    """A lifecycle step failed: BOSH stops the deploy there, as the real director does."""

    def __init__(self, step: Step):
        self.step = step
        super().__init__(f"{step.step} failed on {step.vm}: {step.detail}")


@dataclass(frozen=True)
class UpdatePolicy:
    """The manifest's `update` block (the parts that matter here)."""

    canaries: int = 1
    max_in_flight: int = 1
    skip_drain: bool = False
    #: `update_watch_time`'s lower bound: after post-start the director keeps checking that monit
    #: reports the VM running before it moves on (seconds on a real director; 0: the lab's instant).
    watch_seconds: float = 0.0


def watch(seconds: float) -> str:
    """The director's watch time after an instance started, simulated (the lab has nothing to
    poll: monit reports the VM running at once)."""
    threading.Event().wait(seconds)
    return f"watched {seconds:g} s"


@dataclass
class Director:
    """Runs deploys and instance actions on lab VMs, recording a Timeline."""

    vms: Sequence[LabVM]
    timeline: Timeline = field(default_factory=Timeline)
    #: Seconds the agent sleeps between dynamic drain calls is what drain prints; tests may scale it.
    agent_sleep: Callable[[float], None] = time.sleep
    #: Called when a step begins and when it ends (progress for humans).
    on_step: Callable[[Step], None] | None = None

    # -- one instance -------------------------------------------------------------------------

    def _step(self, vm: LabVM, name: str, fn: Callable[[], str]) -> Step:
        s = self.timeline.begin(vm.name, name)
        if self.on_step:
            self.on_step(s)
        try:
            s.detail = fn() or ""
        except Exception as exc:
            s.ok, s.detail = False, str(exc)
            raise DeployFailed(s) from exc
        finally:
            s.end = time.time()
            if self.on_step:
                self.on_step(s)
        return s

    def _hook(self, vm: LabVM, hook: str) -> str:
        proc = vm.vipdrain(hook, check=False)
        if proc.returncode != 0:
            raise RuntimeFailure(f"exit {proc.returncode}: {_tail(proc.stderr)}")
        return _tail(proc.stderr, 1)

    def drain(self, vm: LabVM, action: str = "job_changed", hash_state: str = "hash_changed",
              packages: Iterable[str] = ()) -> Step:
        """The agent's drain: exactly one integer line on stdout, re-called while negative."""
        env = {"BOSH_JOB_STATE": json.dumps({"persistent_disk": 0}),
               "BOSH_JOB_NEXT_STATE": json.dumps({"persistent_disk": 0})}

        def run() -> str:
            args = [action, hash_state, *packages]
            calls = 0
            while True:
                calls += 1
                proc = vm.vipdrain("drain", *args, env=env, check=False)
                if proc.returncode != 0:
                    if proc.stdout:
                        raise RuntimeFailure(f"drain failed but printed {proc.stdout!r} on stdout")
                    raise RuntimeFailure(f"drain exit {proc.returncode}: {_tail(proc.stderr)}")
                value = parse_drain_stdout(proc.stdout)
                if value >= 0:
                    self.agent_sleep(value)
                    return f"{calls} call(s), printed {value}"
                self.agent_sleep(-value)
                args = ["job_check_status", "hash_unchanged"]

        return self._step(vm, "drain", run)

    def stop_instance(self, vm: LabVM, action: str, skip_drain: bool) -> None:
        self._step(vm, "unmonitor", lambda: "")
        # The agent runs the drain scripts of the jobs the VM runs now: none for a job without one.
        if not skip_drain and vm.has_drain:
            self.drain(vm, action)
        self._step(vm, "stop", lambda: vm.monit_stop() or "")

    def start_instance(self, vm: LabVM) -> None:
        self._step(vm, "pre-start", lambda: self._hook(vm, "pre-start"))
        self._step(vm, "start", lambda: vm.monit_start() or "")
        self._step(vm, "post-start", lambda: self._hook(vm, "post-start"))

    def update_instance(self, vm: LabVM, overrides: dict[str, Any] | None, skip_drain: bool) -> None:
        self.stop_instance(vm, "job_changed", skip_drain)
        self._step(vm, "update", lambda: vm.write_config(overrides) or "new release in place")
        self.start_instance(vm)

    # -- the group ----------------------------------------------------------------------------

    def deploy(self, changes: dict[str, dict[str, Any] | None], policy: UpdatePolicy = UpdatePolicy()) -> None:
        """`bosh deploy`: update the VMs named in `changes` (name -> property overrides, or None
        for "new package version, same properties"); unchanged VMs are not touched at all."""
        order = [vm for vm in self._by_az() if vm.name in changes]
        canaries, rest = order[: policy.canaries], order[policy.canaries :]

        def update(vm: LabVM) -> None:
            self.update_instance(vm, changes[vm.name], policy.skip_drain)
            if policy.watch_seconds > 0:
                self._step(vm, "watch", lambda: watch(policy.watch_seconds))

        for vm in canaries:
            update(vm)
        self._in_batches(rest, policy.max_in_flight, update)
        if order:
            self.post_deploy()

    def post_deploy(self) -> None:
        self._parallel(self.vms, lambda vm: self._step(vm, "post-deploy", lambda: self._hook(vm, "post-deploy")))

    def stop(self, vms: Sequence[LabVM] | None = None, skip_drain: bool = False) -> None:
        """`bosh stop`: drain with job_shutdown, then monit stop, one VM at a time."""
        for vm in vms or self.vms:
            self.stop_instance(vm, "job_shutdown", skip_drain)

    def start(self, vms: Sequence[LabVM] | None = None) -> None:
        for vm in vms or self.vms:
            self.start_instance(vm)

    def restart(self, vms: Sequence[LabVM] | None = None, skip_drain: bool = False) -> None:
        """`bosh restart`: stop and start each VM in turn (job_shutdown drain, no new release)."""
        for vm in vms or self.vms:
            self.stop_instance(vm, "job_shutdown", skip_drain)
            self.start_instance(vm)

    def recreate(self, vms: Sequence[LabVM] | None = None, skip_drain: bool = False) -> None:
        """`bosh recreate`: like restart, but the VM comes back with empty ephemeral state."""
        for vm in vms or self.vms:
            self.stop_instance(vm, "job_shutdown", skip_drain)
            self._step(vm, "recreate", lambda vm=vm: vm.wipe_ephemeral() or "ephemeral state wiped")
            self.start_instance(vm)
        self.post_deploy()

    def delete_deployment(self) -> None:
        """`bosh delete-deployment`: every VM drains at the same time, then stops."""
        self._parallel(self.vms, lambda vm: self.stop_instance(vm, "job_shutdown", False))

    def reboot(self, vm: LabVM) -> None:
        """A VM reboot: no lifecycle hook runs; monit starts the jobs again."""
        self._step(vm, "reboot", lambda: vm.reboot() or "")

    # -- helpers ------------------------------------------------------------------------------

    def _by_az(self) -> list[LabVM]:
        azs: list[str] = []
        for vm in self.vms:
            if vm.az not in azs:
                azs.append(vm.az)
        return [vm for az in azs for vm in self.vms if vm.az == az]

    def _in_batches(self, vms: Sequence[LabVM], size: int, fn: Callable[[LabVM], None]) -> None:
        for i in range(0, len(vms), max(1, size)):
            self._parallel(vms[i : i + size], fn)

    @staticmethod
    def _parallel(vms: Sequence[LabVM], fn: Callable[[LabVM], Any]) -> None:
        if not vms:
            return
        with ThreadPoolExecutor(max_workers=len(vms)) as pool:
            for future in [pool.submit(fn, vm) for vm in vms]:
                future.result()


def parse_drain_stdout(stdout: str) -> int:
    """BOSH's reading of a drain script's stdout: exactly one integer and a newline."""
    lines = stdout.split("\n")
    if len(lines) != 2 or lines[1] != "" or not lines[0].lstrip("-").isdigit():
        raise RuntimeFailure(f"drain contract violated: stdout was {stdout!r}, expected one integer line")
    return int(lines[0])


def _tail(text: str | None, n: int = 3) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])
