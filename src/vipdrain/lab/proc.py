"""Processes the lab starts: spawned in a namespace, recorded by pid *and* start time, stopped by pid.

The lab never looks processes up by name (every VM runs a keepalived and a haproxy, and all
namespaces share one PID space). A `Proc` is identified by its pid plus the kernel's start time
of that pid, so a recycled pid is never mistaken for ours. Each process gets its own session
(`start_new_session`), hence its own process group: keepalived's VRRP child and haproxy's
workers are signalled with their leader.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vipdrain.lab import netns
from vipdrain.waiting import wait_until


def start_ticks(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); field 22 (starttime) is fields[19].
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass
class Proc:
    """One process the lab started (its session/group leader)."""

    role: str
    pid: int
    ticks: int
    argv: list[str]
    log: str = ""
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def alive(self) -> bool:
        """Is this very process (same pid and start time) still running?"""
        if self._popen is not None and self._popen.poll() is not None:
            return False  # reaped just now, or earlier
        return start_ticks(self.pid) == self.ticks

    def send_signal(self, sig: int, *, group: bool = True) -> bool:
        """Send `sig` to the process (and its group); False if it is no longer ours to signal.

        The group is signalled only while its leader is verifiably ours: a process group id
        cannot be recycled while the leader lives.
        """
        if not self.alive():
            return False
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        return True

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the process to exit; True if it did."""
        return wait_until(lambda: not self.alive(), budget=timeout, step=0.02).ok

    def stop(self, sig: int = signal.SIGTERM, *, timeout: float = 30.0, kill_after: bool = True) -> bool:
        """Signal the group with `sig` (SIGCONT too, so a frozen process can act on it) and wait.

        Last resort only: if it is still alive after `timeout` s and `kill_after` is set, SIGKILL
        the group (a process that ignores SIGTERM that long would hang the teardown).
        Returns True if the process is gone.
        """
        if not self.send_signal(sig):
            return True
        self.send_signal(signal.SIGCONT)
        if self.wait(timeout):
            return True
        if kill_after:
            self.send_signal(signal.SIGKILL)
            return self.wait(5.0)
        return False

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "pid": self.pid, "ticks": self.ticks, "argv": self.argv, "log": self.log}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Proc:
        return cls(str(raw["role"]), int(raw["pid"]), int(raw["ticks"]), list(raw["argv"]), str(raw.get("log", "")))


def spawn(role: str, argv: Sequence[str], *, namespace: str, env: Mapping[str, str], log: Path) -> Proc:
    """Start `argv` inside `namespace`, in its own session, output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            netns.exec_argv(namespace, argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=dict(env), start_new_session=True,
        )
    ticks = start_ticks(popen.pid)
    if ticks is None:  # exited at once: keep a record that is simply "not alive"
        popen.wait()
        ticks = -1
    return Proc(role, popen.pid, ticks, list(argv), str(log), popen)


def stop_all(procs: Iterable[Proc], *, timeout: float = 10.0) -> list[Proc]:
    """SIGTERM every process at once, wait for all with one deadline, SIGKILL stragglers (last resort).

    Returns the processes that had to be killed.
    """
    pending = [p for p in procs if p.send_signal(signal.SIGTERM)]
    for p in pending:
        p.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + timeout
    killed = []
    for p in pending:
        if not p.wait(max(0.0, deadline - time.monotonic())):
            p.send_signal(signal.SIGKILL)
            p.wait(5.0)
            killed.append(p)
    return killed


def sweep_namespace(name: str, *, timeout: float = 5.0) -> list[int]:
    """Stop whatever still runs inside namespace `name` (which only this run uses), by pid.

    This catches what the lab did not start itself but which lives in its namespaces (a
    `lab exec` still running, a process whose parent was killed). SIGTERM, then SIGKILL after
    `timeout` as a last resort. Returns the pids found.
    """
    found = netns.pids(name)
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)
    wait_until(lambda: all(start_ticks(p) is None for p in found), budget=timeout, step=0.02)
    for pid in found:
        if start_ticks(pid) is not None and pid in netns.pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return found
