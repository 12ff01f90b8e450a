"""The hold: keepalived track files that take this VM's priority to 1, and why they are on.

Reasons are independent (`drain` from BOSH's drain, `maintenance` from an operator, `joining`
from pre-start until post-start saw haproxy answer). `drain` and `joining` belong to one run
of the VM: their track file (1 while either is on) and reasons file are on the sys/run tmpfs
and vanish on reboot. `maintenance` must outlive a reboot: its pair is on the VM's disk
(`Layout.maintenance_track_file`). A reasons file is written before its track file so that a
crash between the two leaves a reason recorded for a hold that may not be active yet, never an
unexplained hold.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vipdrain.fsutil import atomic_write, locked
from vipdrain.layout import Layout

Reason = Literal["drain", "maintenance", "joining"]
REASONS: tuple[Reason, ...] = ("drain", "maintenance", "joining")
#: Reasons kept on disk across reboots; the others live on the tmpfs.
PERSISTENT: tuple[Reason, ...] = ("maintenance",)

#: Seconds to wait for the hold lock (its holders keep it for milliseconds).
HOLD_LOCK_TIMEOUT = 5.0


@dataclass(frozen=True)
class Hold:
    """What the hold files say. `since` maps each active reason to when it was set (epoch s)."""

    since: dict[str, float] = field(default_factory=dict)
    #: The value keepalived reads (1 = held; the larger of the two track files); may disagree
    #: with `since` after a crash or tampering.
    track_value: int = 0
    #: Human sentences about anything odd found while reading (corrupt or missing files).
    warnings: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.since) or self.track_value != 0

    @property
    def reasons(self) -> list[str]:
        return sorted(self.since)


def read_hold(layout: Layout) -> Hold:
    """Read the hold files; corrupt or missing files are reported as warnings, not raised."""
    warnings: list[str] = []
    # Reasons from either reasons file (a maintenance recorded on the tmpfs by an older vipdrain
    # still counts; the next set_hold moves it to the disk).
    since = {**_read_reasons(layout.hold_state_file, warnings),
             **_read_reasons(layout.maintenance_state_file, warnings)}
    track_value = max(_read_track(layout.hold_track_file, warnings),
                      _read_track(layout.maintenance_track_file, warnings))
    if track_value and not since:
        warnings.append(f"{layout.hold_track_file} or {layout.maintenance_track_file} holds {track_value} "
                        "but no reason is recorded")
    return Hold(since=since, track_value=track_value, warnings=tuple(warnings))


def _read_reasons(path: Path, warnings: list[str]) -> dict[str, float]:
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        return {str(k): float(v) for k, v in raw.items() if k in REASONS}
    except FileNotFoundError:
        return {}
    except (ValueError, TypeError) as exc:
        warnings.append(f"{path} is corrupt ({exc}); treating it as empty")
        return {}


def _read_track(path: Path, warnings: list[str]) -> int:
    try:
        return int(path.read_text().strip() or "0")
    except FileNotFoundError:
        return 0
    except ValueError:
        warnings.append(f"{path} is corrupt; keepalived reads it as 0")
        return 0


def set_hold(
    layout: Layout, *, add: tuple[Reason, ...] = (), remove: tuple[Reason, ...] = (), now: float | None = None
) -> Hold:
    """Add and remove reasons in one locked read-modify-write, then sync the track files.

    Adding a reason that is already on keeps its original time (a re-entered drain keeps
    counting from the first call). Removing every reason writes 0 even when the files were
    corrupt, so a hold can always be cleared.
    """
    stamp = time.time() if now is None else now
    # Held for a few file writes: a holder still there after HOLD_LOCK_TIMEOUT is stopped (Ctrl-Z),
    # and waiting for it forever would hang whoever called (a BOSH drain: the deploy).
    with locked(layout.run_dir / "hold.lock", timeout=HOLD_LOCK_TIMEOUT):
        current = read_hold(layout)
        since = {k: v for k, v in current.since.items() if k not in remove}
        for reason in add:
            since.setdefault(reason, stamp)
        for reasons, track, persistent in ((layout.hold_state_file, layout.hold_track_file, False),
                                           (layout.maintenance_state_file, layout.maintenance_track_file, True)):
            mine = {k: v for k, v in since.items() if (k in PERSISTENT) == persistent}
            atomic_write(reasons, json.dumps(mine, sort_keys=True) + "\n")
            atomic_write(track, f"{1 if mine else 0}\n")
        return Hold(since=since, track_value=1 if since else 0, warnings=current.warnings)
