"""keepalived's notify hook: record each VRRP transition where vipdrain can read it.

keepalived runs `<vipdrain> notify ... TYPE NAME STATE PRIORITY` on every transition. This
must stay fast and must not depend on the job config being loadable: it only writes files.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from vipdrain.fsutil import atomic_write
from vipdrain.layout import Layout

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


def _parse(line: str) -> Transition:
    raw = json.loads(line)
    return Transition(str(raw["instance"]), str(raw["state"]), int(raw["priority"]), float(raw["time"]))


def read_state(layout: Layout, name: str) -> Transition | None:
    """Last transition recorded for `name`, or None when missing or unreadable."""
    try:
        return _parse(layout.state_file(name).read_text())
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
