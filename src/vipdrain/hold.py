"""The hold: one keepalived track file that takes this VM's priority to 1, and why it is on.

Reasons are independent (`drain` from BOSH's drain, `maintenance` from an operator, `joining`
from pre-start until post-start saw haproxy answer); the track file holds 1 while any is on.
The reasons file is written before the track file so that a crash between the two leaves a
reason recorded for a hold that may not be active yet, never an unexplained hold.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Literal

from vipdrain.fsutil import atomic_write, locked
from vipdrain.layout import Layout

Reason = Literal["drain", "maintenance", "joining"]
REASONS: tuple[Reason, ...] = ("drain", "maintenance", "joining")

#: Seconds to wait for the hold lock (its holders keep it for milliseconds).
HOLD_LOCK_TIMEOUT = 5.0


@dataclass(frozen=True)
class Hold:
    """What the hold files say. `since` maps each active reason to when it was set (epoch s)."""

    since: dict[str, float] = field(default_factory=dict)
    #: The value keepalived reads (1 = held); may disagree with `since` after a crash or tampering.
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
    """Read both hold files; corrupt or missing files are reported as warnings, not raised."""
    warnings: list[str] = []
    since: dict[str, float] = {}
    try:
        raw = json.loads(layout.hold_state_file.read_text())
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        since = {str(k): float(v) for k, v in raw.items() if k in REASONS}
    except FileNotFoundError:
        pass
    except (ValueError, TypeError) as exc:
        warnings.append(f"{layout.hold_state_file} is corrupt ({exc}); treating it as empty")
    track_value = 0
    try:
        text = layout.hold_track_file.read_text().strip()
        track_value = int(text or "0")
    except FileNotFoundError:
        pass
    except ValueError:
        warnings.append(f"{layout.hold_track_file} is corrupt; keepalived reads it as 0")
    if track_value and not since:
        warnings.append(f"{layout.hold_track_file} holds {track_value} but no reason is recorded")
    return Hold(since=since, track_value=track_value, warnings=tuple(warnings))


def set_hold(
    layout: Layout, *, add: tuple[Reason, ...] = (), remove: tuple[Reason, ...] = (), now: float | None = None
) -> Hold:
    """Add and remove reasons in one locked read-modify-write, then sync the track file.

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
        atomic_write(layout.hold_state_file, json.dumps(since, sort_keys=True) + "\n")
        value = 1 if since else 0
        atomic_write(layout.hold_track_file, f"{value}\n")
        return Hold(since=since, track_value=value, warnings=current.warnings)
