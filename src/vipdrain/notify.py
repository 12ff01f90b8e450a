"""Record each VRRP transition where vipdrain can read it.

keepalived writes every transition as a line (`INSTANCE "vip_1" MASTER 150`) to its notify FIFO
and runs `vipdrain notify-fifo FIFO` once to read them: one reader, so the state files follow
keepalived's order. It must not depend on the job config being loadable: it only writes files.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from vipdrain.fsutil import atomic_write
from vipdrain.layout import Layout
from vipdrain.procs import state_of

STATES = ("MASTER", "BACKUP", "FAULT", "STOP", "DELETED")


@dataclass(frozen=True)
class Transition:
    """One state change keepalived reported."""

    instance: str
    state: str
    priority: int
    time: float


def record_transition(layout: Layout, kind: str, name: str, state: str, priority: str | int) -> Transition:
    """Write the instance's state file, append to the transitions log, and set its holder file.

    The holder track file (sticky placement) is written on every transition whatever the
    placement: keepalived only reads it when the rendered config tracks it.
    """
    try:
        prio = int(priority)
    except (TypeError, ValueError):
        prio = -1
    t = Transition(instance=name, state=state.upper(), priority=prio, time=time.time())
    if kind.upper() != "INSTANCE":
        return t
    line = json.dumps(asdict(t), sort_keys=True)
    atomic_write(layout.state_file(name), line + "\n")
    layout.log_dir.mkdir(parents=True, exist_ok=True)
    with open(layout.transitions_log, "a") as fh:
        fh.write(line + "\n")
    atomic_write(layout.holder_track_file(name), "1\n" if t.state == "MASTER" else "0\n")
    return t


@functools.lru_cache(maxsize=1024)
def _parse(line: str | bytes) -> Transition:
    """Cached by the text itself: the drain reads every state file many times a second, and a file
    rewritten with anything new (every line has its own time) is parsed again."""
    raw = json.loads(line)
    return Transition(str(raw["instance"]), str(raw["state"]), int(raw["priority"]), float(raw["time"]))


def read_state(layout: Layout, name: str) -> Transition | None:
    """Last transition recorded for `name`, or None when missing or unreadable."""
    return read_state_file(layout.state_file(name))


def read_state_file(path: Path) -> Transition | None:
    """`read_state` of a state file whose path the caller keeps (no path building per read)."""
    try:
        return _parse(path.read_bytes())
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def recent_transitions(layout: Layout, limit: int = 10) -> list[Transition]:
    """The last `limit` transitions of all instances, oldest first (unreadable lines skipped)."""
    try:
        lines = layout.transitions_log.read_text().splitlines()[-limit:]
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(_parse(line))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def parse_fifo_line(line: str) -> tuple[str, str, str, str] | None:
    """`INSTANCE "vip_1" MASTER 150` -> (kind, name, state, priority); None for anything else.

    Only the states of STATES count: keepalived also writes events there, e.g.
    `MASTER_RX_LOWER_PRI` (a master heard a lower-priority master: it re-announces and stays
    MASTER), which are no change of state and must not overwrite one.
    """
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    if len(words) < 3 or words[2].upper() not in STATES:
        return None
    kind, name, state, *rest = words
    return kind, name, state, rest[0] if rest else "-1"


def follow_fifo(layout: Layout, lines: Iterable[str],
                on_transition: Callable[[Transition], None] | None = None) -> int:
    """Record every transition read from keepalived's FIFO; returns how many were recorded.

    `on_transition` sees each VRRP instance's transition once its files are written (the
    metrics); it must not raise (vipdrain.metrics.best_effort)."""
    count = 0
    for line in lines:
        parsed = parse_fifo_line(line)
        if parsed is not None:
            t = record_transition(layout, *parsed)
            count += 1
            if on_transition is not None and parsed[0].upper() == "INSTANCE":
                on_transition(t)
    return count


@dataclass(frozen=True)
class Reader:
    """A running `vipdrain notify-fifo` of this job: its pid and /proc state letter (T: stopped)."""

    pid: int
    state: str


def find_readers(layout: Layout) -> list[Reader]:
    """This job's notify readers: processes whose argv runs `notify-fifo` on `layout.notify_fifo`.

    keepalived starts the reader once, when it (re)loads its config, and only logs
    "vrrp notify fifo script terminated" when it exits (keepalived/vrrp/vrrp.c,
    vrrp_notify_fifo_script_exit); nothing starts it again. Matched by the FIFO's path, which
    keepalived appends to the command: lab VMs share one PID namespace.
    """
    fifo = os.fsencode(str(layout.notify_fifo))
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"notify-fifo" not in argv or fifo not in argv:
            continue
        state = state_of(int(entry.name))
        if state is not None:
            out.append(Reader(int(entry.name), state))
    return out


def reader_problem(keepalived_running: bool, readers: Iterable[Reader]) -> str | None:
    """Why keepalived's reports are not being recorded here, or None (pure).

    Without a reader keepalived's transitions stay in the FIFO (lost once it is full), the state
    files keep the last state read, and with `placement: sticky` the holder file stops following.
    """
    if not keepalived_running:
        return None
    readers = list(readers)
    if not readers:
        return ("keepalived's notify reader (vipdrain notify-fifo) is not running: the VRRP states "
                "keepalived reports are not recorded here (vipdrain judges by what it sees on the wire); "
                "keepalived starts it only when it starts or reloads: restart keepalived")
    if all(r.state == "T" for r in readers):
        pids = ", ".join(str(r.pid) for r in readers)
        return (f"keepalived's notify reader (vipdrain notify-fifo, pid {pids}) is stopped: the VRRP states "
                "keepalived reports are not recorded here")
    return None


def start_reader(layout: Layout) -> int:
    """Start a new notify reader on keepalived's FIFO - the command keepalived itself runs - and
    return its pid. keepalived keeps the FIFO open and what it wrote meanwhile waits there (up to
    the pipe's size), so the new reader catches up in order. Detached: own session, no stdio
    (a BOSH hook's caller waits for its output to close), it ends when keepalived closes the
    FIFO. Start it only when no reader exists at all (two readers would split the lines)."""
    from vipdrain.render import notify_fifo_command

    if not layout.notify_fifo.is_fifo():
        raise FileNotFoundError(f"{layout.notify_fifo} is no FIFO (keepalived not running?)")
    argv = [*shlex.split(notify_fifo_command(layout)), str(layout.notify_fifo)]
    with open(os.devnull, "r+b") as null:
        proc = subprocess.Popen(argv, stdin=null, stdout=null, stderr=null, start_new_session=True)
    return proc.pid
