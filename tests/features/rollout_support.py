"""What the rollout scenarios drive and record; the step definitions live in conftest.py and the
`test_*_scenarios.py` modules.

- `RecordedVM` wraps a lab VM so that every `vipdrain ...` call the deploy simulator makes is kept
  with its exit code, stdout and stderr (post-deploy reports on stdout, the drain logs on stderr).
- `Trigger`s are things done to the lab when a lifecycle step begins or ends on a VM: faults
  ("kill vm1's keepalived as vm0's drain begins") and colocated jobs (haproxy's own drain).
- `Traffic` is the load clients (one per VIP) and the VIP observer of a scenario.
- `BoshRun` is what one director action did: its timeline, the step that stopped it, its window.
- `Story` collects all of the above for the failure report: one timeline of lifecycle steps,
  VIP holder changes, faults and client errors, with the end state and each VM's vipdrain.log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vipdrain.lab import netns
from vipdrain.lab.bosh import DeployFailed, Director, Step, UpdatePolicy
from vipdrain.lab.client import ClientRun, Request, Summary
from vipdrain.lab.cluster import VM, Lab
from vipdrain.lab.observer import VipObserver
from vipdrain.lab.wait import LabTimeout, until

#: Seconds of traffic after an action that still belong to it (a late failure must be seen).
TAIL_SECONDS = 1.0
#: Successful answers each client must have before an action starts (the baseline is healthy).
STEADY_ANSWERS = 20
#: Failed requests closer together than this are one run in the report.
FAILURE_RUN_GAP = 0.25
LOG_TAIL_LINES = 15


# --------------------------------------------------------------------------------------------
# vipdrain calls, recorded
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One `vipdrain ARGS` run on a VM (times are `time.time()`, like the client's records)."""

    vm: str
    args: tuple[str, ...]
    start: float
    end: float
    returncode: int
    stdout: str
    stderr: str

    @property
    def command(self) -> str:
        return self.args[0] if self.args else ""

    def __str__(self) -> str:
        out = (self.stdout.strip() + "\n" + self.stderr.strip()).strip()
        return f"`vipdrain {' '.join(self.args)}` on {self.vm} exited {self.returncode}:\n{out}"


class RecordedVM:
    """A lab VM whose `vipdrain` calls are appended to `calls`; everything else is the VM's own."""

    def __init__(self, vm: VM, calls: list[Call]) -> None:
        self._vm = vm
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._vm, name)

    def __repr__(self) -> str:
        return f"RecordedVM({self._vm!r})"

    def vipdrain(self, *args: str, env: dict[str, str] | None = None, check: bool = False,
                 timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        start = time.time()
        proc = self._vm.vipdrain(*args, env=env, check=False, timeout=timeout)
        self._calls.append(Call(self._vm.name, tuple(args), start, time.time(), proc.returncode,
                                proc.stdout or "", proc.stderr or ""))
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc


# --------------------------------------------------------------------------------------------
# Triggers: faults and colocated jobs, tied to lifecycle steps
# --------------------------------------------------------------------------------------------


class Trigger:
    """Acts on the lab when `step` begins (and/or ends) on VM `vm` (None: on every VM).

    `fired` counts the times it actually did what the scenario says; a scenario whose trigger
    never fired did not test what it claims, and fails (see `BoshRun.check_triggers`).
    """

    def __init__(self, description: str, step: str, vm: str | None = None, *, once: bool = True) -> None:
        self.description = description
        self.step = step
        self.vm = vm
        self.once = once
        self.fired = 0
        self.notes: list[tuple[float, str]] = []

    def matches(self, s: Step) -> bool:
        return s.step == self.step and self.vm in (None, s.vm)

    def note(self, text: str) -> None:
        self.notes.append((time.time(), text))

    def on_step(self, s: Step) -> None:
        if not self.matches(s):
            return
        if not s.end:
            if self.once and self.fired:
                return
            self.begin(s.vm)
        else:
            self.end(s.vm)

    def begin(self, vm: str) -> None:
        """Called when the step begins on `vm`."""

    def end(self, vm: str) -> None:
        """Called when the step ends on `vm` (the director waits for this: BOSH waits for every
        job's drain script before `monit stop`)."""


class ActionTrigger(Trigger):
    """Runs `action()` once when the step begins; `action` returns whether it did anything."""

    def __init__(self, description: str, step: str, vm: str, action: Callable[[], bool]) -> None:
        super().__init__(description, step, vm)
        self.action = action

    def begin(self, vm: str) -> None:
        if self.action():
            self.fired += 1
            self.note(f"{self.description}")
        else:
            self.note(f"{self.description}: NOT DONE (nothing to act on)")


def drain_pids(vm: VM) -> list[int]:
    """Pids of `vipdrain drain` processes inside the VM's namespace (the director started them):
    `python -m vipdrain drain`, or the wrapper's `python -c '...vipdrain.warm.client...' drain`.
    A drain that runs in the drain server's child dies with this process (vipdrain.warm)."""
    found = []
    for pid in netns.pids(vm.namespace):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any((a.endswith("vipdrain") or "vipdrain.warm.client" in a) and argv[i + 1:i + 2] == ["drain"]
               for i, a in enumerate(argv)):
            found.append(pid)
    return found


def hold_reasons(vm: VM) -> list[str]:
    """The hold reasons recorded on the VM (its hold file), [] when none or unreadable."""
    try:
        raw = json.loads(vm.layout.hold_state_file.read_text())
    except (OSError, ValueError):
        return []
    return sorted(raw) if isinstance(raw, dict) else []


class KillDrainOnceHeld(Trigger):
    """SIGKILL the VM's `vipdrain drain` process (by pid) once it has put its drain hold on."""

    def __init__(self, lab: Lab, vm: str, deadline: float = 20.0) -> None:
        super().__init__(f"SIGKILL of {vm}'s `vipdrain drain` once its hold is on", "drain", vm)
        self.lab = lab
        self.deadline = deadline
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def begin(self, vm: str) -> None:
        target = self.lab.vm(vm)

        def watch() -> None:
            def held_drain() -> int | None:
                if self._stop.is_set():
                    return -1
                pids = drain_pids(target) if "drain" in hold_reasons(target) else []
                return pids[0] if pids else None

            try:
                pid = until(held_drain, self.deadline, interval=0.005, what=f"{vm}'s drain to put its hold on")
            except LabTimeout as exc:
                self.note(f"{self.description}: NOT DONE ({exc})")
                return
            if pid > 0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    self.fired += 1
                    self.note(f"`vipdrain drain` (pid {pid}) on {vm} killed with SIGKILL, its hold on")

        self._stop.clear()
        self._thread = threading.Thread(target=watch, name=f"kill-drain-{vm}", daemon=True)
        self._thread.start()

    def end(self, vm: str) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.deadline + 5.0)


class ColocatedHaproxyDrain(Trigger):
    """haproxy-boshrelease's drain, run by BOSH in parallel with vipdrain's on every VM.

    Its script waits `ha_proxy.drain_frontend_grace_time` seconds (after taking its health
    frontends down, which the lab has none of), then soft-stops haproxy (SIGUSR1: listeners close,
    the process exits once its connections are done) and waits for it to exit. The wait for
    `grace` seconds is that script's own behaviour being simulated, not a synchronisation.
    BOSH runs `monit stop` only once every drain script has returned: `end` joins the thread.
    """

    def __init__(self, lab: Lab, grace: float, exit_deadline: float = 30.0) -> None:
        super().__init__(f"haproxy's own drain (grace {grace:g} s, then SIGUSR1)", "drain", None, once=False)
        self.lab = lab
        self.grace = grace
        self.exit_deadline = exit_deadline
        self._threads: dict[str, threading.Thread] = {}

    def begin(self, vm: str) -> None:
        target = self.lab.vm(vm)

        def haproxy_drain() -> None:
            threading.Event().wait(self.grace)  # the script's `sleep $grace`
            if target.soft_stop_haproxy():
                self.fired += 1
                self.note(f"{vm}: haproxy soft-stopped (SIGUSR1) after its {self.grace:g} s grace time")
                if not target.wait_haproxy_gone(self.exit_deadline):
                    self.note(f"{vm}: haproxy still running {self.exit_deadline:g} s after SIGUSR1")

        thread = threading.Thread(target=haproxy_drain, name=f"haproxy-drain-{vm}", daemon=True)
        self._threads[vm] = thread
        thread.start()

    def end(self, vm: str) -> None:
        thread = self._threads.pop(vm, None)
        if thread is not None:
            thread.join(self.grace + self.exit_deadline + 5.0)


# --------------------------------------------------------------------------------------------
# Traffic and director runs
# --------------------------------------------------------------------------------------------


@dataclass
class Traffic:
    """One load client per VIP and the VIP observer, all started before the scenario's action."""

    clients: dict[str, ClientRun]
    observer: VipObserver
    started: float

    def summaries(self, start: float | None = None, end: float | None = None) -> dict[str, Summary]:
        return {vip: run.summary(start, end) for vip, run in self.clients.items()}

    def wait_until_answered(self, count: int = STEADY_ANSWERS, timeout: float = 15.0) -> None:
        """Every client has at least `count` successful answers."""
        for vip, run in self.clients.items():
            until(lambda run=run: sum(r.ok for r in run.records()) >= count, timeout, interval=0.05,
                  what=f"{count} answers through {vip}")

    def wait_past(self, t: float, timeout: float = 15.0) -> None:
        """Every client has sent a request after `t` (so the records cover everything up to `t`)."""
        for vip, run in self.clients.items():
            until(lambda run=run: any(r.time > t for r in run.records()), timeout, interval=0.05,
                  what=f"the client of {vip} to send past the action")

    def wait_answered_after(self, t: float, timeout: float) -> float:
        """Wait until every client got a successful answer to a request sent after `t`; returns
        the latest such first answer (time.time())."""
        latest = t
        for vip, run in self.clients.items():
            first = until(lambda run=run: next((r.time for r in run.records() if r.ok and r.time > t), None),
                          timeout, interval=0.1, what=f"an answer through {vip} after the partition ended")
            latest = max(latest, first)
        return latest


@dataclass
class BoshRun:
    """One director action (a deploy, a delete...) and what came of it."""

    director: Director
    #: What BOSH would do again on `bosh deploy` (same changes, same update policy).
    changes: dict[str, dict[str, Any] | None]
    policy: UpdatePolicy
    start: float
    end: float
    error: DeployFailed | None
    calls: list[Call]

    def steps(self, vm: str | None = None, step: str | None = None) -> list[Step]:
        return [s for s in self.director.timeline.steps
                if (vm is None or s.vm == vm) and (step is None or s.step == step)]

    def calls_of(self, command: str, vm: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.command == command and (vm is None or c.vm == vm)]


def run_vipdrain(lab: Lab, story: Story, vm: str, *args: str) -> Call:
    """Run `vipdrain ARGS` on a VM the way an operator would (recorded for the report)."""
    RecordedVM(lab.vm(vm), story.calls).vipdrain(*args, check=False)
    return story.calls[-1]


def status_json(lab: Lab, story: Story, vm: str) -> dict[str, Any]:
    """`vipdrain status --json` on a VM, parsed."""
    call = run_vipdrain(lab, story, vm, "status", "--json")
    try:
        return json.loads(call.stdout)
    except ValueError:
        raise AssertionError(f"`vipdrain status --json` printed no JSON: {call}") from None


def check_triggers(triggers: Iterable[Trigger]) -> None:
    """Fail when a trigger of the scenario never fired: its premise did not happen."""
    missed = [t for t in triggers if not t.fired]
    if missed:
        notes = "; ".join(text for t in missed for _, text in t.notes) or "never reached"
        raise AssertionError(
            "the scenario's premise did not happen: "
            + ", ".join(t.description for t in missed) + f" ({notes})"
        )


# --------------------------------------------------------------------------------------------
# The story: everything a failure report needs
# --------------------------------------------------------------------------------------------


FailureRun = tuple[float, float, Counter[str], str]


def failure_runs(requests: Sequence[Request], gap: float = FAILURE_RUN_GAP) -> list[FailureRun]:
    """Failed requests grouped into runs: (first start, last start, outcomes, one error text)."""
    runs: list[FailureRun] = []
    for r in sorted((r for r in requests if not r.ok), key=lambda r: r.time):
        if runs and r.time - runs[-1][1] <= gap:
            first, _, kinds, error = runs[-1]
            kinds[r.outcome] += 1
            runs[-1] = (first, r.time, kinds, error)
        else:
            runs.append((r.time, r.time, Counter({r.outcome: 1}), r.error))
    return runs


def _tail(path: Path, n: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError as exc:
        return [f"(cannot read {path}: {exc.strerror})"]


@dataclass
class Story:
    """What happened in one scenario, for the failure report (not for passing values between
    steps: those travel through fixtures)."""

    lab: Lab | None = None
    traffic: Traffic | None = None
    #: Long-lived connections by kind ("raw TCP"...), when a scenario opens them.
    streams: dict[str, ClientRun] = field(default_factory=dict)
    triggers: list[Trigger] = field(default_factory=list)
    runs: list[BoshRun] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    notes: list[tuple[float, str]] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append((time.time(), text))

    def origin(self) -> float:
        candidates = [t for t, _ in self.notes]
        if self.traffic is not None:
            candidates.append(self.traffic.started)
        candidates += [r.start for r in self.runs]
        return min(candidates) if candidates else time.time()

    def events(self) -> list[tuple[float, str]]:
        """Every timestamped event of the scenario, unsorted."""
        events = list(self.notes)
        for t in self.triggers:
            events += [(when, f"** {text}") for when, text in t.notes]
        for i, run in enumerate(self.runs, 1):
            events.append((run.start, f"== director action {i} begins"))
            for s in run.director.timeline.steps:
                took = f"{(s.end or time.time()) - s.start:5.2f} s"
                status = "ok " if s.ok else "ERR"
                events.append((s.start, f"{s.vm:>4} {s.step:<12} {status} {took}  {s.detail}"[:400]))
            events.append((run.end, f"== director action {i} ends: {run.error or 'completed'}"[:400]))
        for c in self.calls:
            if c.returncode != 0 and c.stdout.strip():
                events.append((c.end, f"{c.vm:>4} `vipdrain {' '.join(c.args)}` exit {c.returncode}, stdout: "
                                      + " | ".join(c.stdout.strip().splitlines()[-6:])))
        for kind, run in self.streams.items():
            for st in run.streams():
                if st.outcome == "broken":
                    events.append((st.end, f"stream ({kind}) opened {st.end - st.time:.2f} s before on "
                                           f"{st.vm or '?'} broke: {st.error}"))
        if self.traffic is not None:
            obs = self.traffic.observer
            for vip in obs.vips:
                for change in obs.timeline(vip):
                    who = "+".join(sorted(change.holders)) or "NOBODY"
                    flag = "  (two holders)" if len(change.holders) > 1 else ""
                    events.append((change.time, f"VIP {vip} held by {who}{flag}"))
            for vip, run in self.traffic.clients.items():
                for first, last, kinds, error in failure_runs(run.records()):
                    what = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
                    span = f" over {last - first:.3f} s" if last > first else ""
                    events.append((first, f"client -> {vip}: {what} failed{span} (e.g. {error})"))
        return events

    def format(self) -> str:
        """The timeline, then the clients' summaries, the end state and each VM's log tail."""
        t0 = self.origin()
        lines = [f"times relative to {time.strftime('%H:%M:%S', time.localtime(t0))}.{int(t0 % 1 * 1000):03d}"]
        lines += [f"{t - t0:+9.3f}s  {text}" for t, text in sorted(self.events(), key=lambda e: e[0])]
        if self.traffic is not None:
            lines.append("")
            lines += [f"client -> {vip}: {summary}" for vip, summary in self.traffic.summaries().items()]
        for kind, run in self.streams.items():
            outcomes = Counter((st.outcome, st.vm) for st in run.streams())
            lines.append(f"streams ({kind}): " + (", ".join(f"{n} {o} on {vm}" for (o, vm), n in sorted(
                outcomes.items(), key=str)) or "none ended"))
        lab = self.lab
        if lab is not None:
            lines.append("")
            with contextlib.suppress(Exception):
                lines.append(f"holders now: {lab.holder_map()}")
            for vm in lab.vms:
                with contextlib.suppress(Exception):
                    states = {vip: vm.keepalived_state(vip) for vip in lab.vips}
                    lines.append(f"{vm.name}: keepalived pid {vm.keepalived_pid}, haproxy pid {vm.haproxy_pid}, "
                                 f"states {states}, hold {hold_reasons(vm) or 'none'}")
            for vm in lab.vms:
                lines.append(f"--- {vm.name}: last lines of {vm.layout.vipdrain_log}")
                lines += _tail(vm.layout.vipdrain_log, LOG_TAIL_LINES)
        return "\n".join(lines)
