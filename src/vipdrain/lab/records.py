"""What the load client writes, read back: one `Request` per request, one `Stream` per long-lived
stream, and their `Summary` (pure; the client is vipdrain.lab.client)."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Request:
    """One HTTP request on its own connection."""

    time: float
    latency: float
    outcome: str
    vm: str | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def end(self) -> float:
        return self.time + self.latency


@dataclass(frozen=True)
class Stream:
    """One long-lived connection: `finished` (server said `end`), `broken`, or `cancelled`
    (the client was stopped first - not a failure)."""

    mode: str
    time: float
    end: float
    outcome: str
    vm: str | None = None
    lines: int = 0
    error: str = ""


@dataclass(frozen=True)
class Summary:
    """What a client run saw."""

    total: int
    ok: int
    #: Failed requests by outcome (only outcomes that occurred).
    failed: dict[str, int]
    #: Longest time without a successful answer, in ms (window edges count).
    longest_gap_ms: float
    #: (time, from_vm, to_vm) each time the answering VM changed, in request start order.
    vm_changes: list[tuple[float, str, str]]
    by_vm: dict[str, int]
    start: float
    end: float
    streams: dict[str, int] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        return self.total - self.ok

    @property
    def answering_vm_changes(self) -> int:
        return len(self.vm_changes)

    def __str__(self) -> str:
        failed = ", ".join(f"{k} {v}" for k, v in sorted(self.failed.items())) or "none"
        vms = " -> ".join([c[1] for c in self.vm_changes[:1]] + [c[2] for c in self.vm_changes]) or (
            ", ".join(sorted(self.by_vm)) or "-"
        )
        text = (
            f"{self.total} requests in {self.end - self.start:.1f} s, {self.failures} failed ({failed}), "
            f"longest gap {self.longest_gap_ms:.0f} ms, answering VM {vms}"
        )
        if self.streams:
            text += ", streams " + ", ".join(f"{k} {v}" for k, v in sorted(self.streams.items()))
        return text


def summarize(requests: Iterable[Request], streams: Iterable[Stream] = (),
              start: float | None = None, end: float | None = None) -> Summary:
    """Summarise the requests that started within [start, end] (default: all of them)."""
    reqs = sorted(
        (r for r in requests if (start is None or r.time >= start) and (end is None or r.time <= end)),
        key=lambda r: r.time,
    )
    lo = start if start is not None else (reqs[0].time if reqs else 0.0)
    hi = end if end is not None else (max(r.end for r in reqs) if reqs else lo)
    ok = [r for r in reqs if r.ok]
    points = [lo, *sorted(r.end for r in ok), hi]
    gap = max((b - a for a, b in itertools.pairwise(points)), default=0.0)
    changes: list[tuple[float, str, str]] = []
    last: str | None = None
    for r in ok:
        if last is not None and r.vm != last:
            changes.append((r.time, last, r.vm or "?"))
        last = r.vm
    stream_counts = Counter(
        s.outcome for s in streams if (start is None or s.time >= start) and (end is None or s.time <= end)
    )
    return Summary(
        total=len(reqs), ok=len(ok), failed=dict(Counter(r.outcome for r in reqs if not r.ok)),
        longest_gap_ms=max(0.0, gap) * 1000.0, vm_changes=changes,
        by_vm=dict(Counter(r.vm or "?" for r in ok)), start=lo, end=hi, streams=dict(stream_counts),
    )


@dataclass(frozen=True)
class Records:
    """Everything a client wrote."""

    requests: list[Request]
    streams: list[Stream]
    #: Request slots the client could not send (all workers busy); known once it has stopped.
    skipped: int = 0


def read_records(path: Path) -> Records:
    """Requests and streams from a client's JSON-lines file (a torn last line is skipped)."""
    requests: list[Request] = []
    streams: list[Stream] = []
    skipped = 0
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Records(requests, streams)
    for line in text.splitlines():
        try:
            raw = json.loads(line)
        except ValueError:
            continue
        kind = raw.pop("kind", None)
        if kind == "request":
            requests.append(Request(**raw))
        elif kind == "stream":
            streams.append(Stream(**raw))
        elif kind == "stop":
            skipped += int(raw.get("skipped", 0))
    return Records(requests, streams, skipped)
