"""Prometheus metrics for node_exporter's textfile collector: who holds each VIP, drains, handoffs.

Three writers, each updating its own source and then rewriting the whole textfile from all of them
(`refresh`), so none of them needs the others to run:

- keepalived's notify reader (vipdrain.notify, one per VM, long-running) counts each VRRP
  transition and refreshes (`TransitionWriter`, in a thread of its own): state, priority and last
  transition time per VIP follow within a second (a burst is written once, after it);
- the drain records its outcome and handoff time (`record_drain`);
- a survey of who holds each VIP (`vipdrain metrics`, or the notify reader every
  `vipdrain.metrics.survey_interval` s) records holders and verdicts (`record_survey`).

Counters live in a JSON file on the data disk (they survive process exits and reboots), written
atomically under a lock. Metrics are best effort: a failure to write them is logged as a warning
and never changes what the drain, the health check or the notify reader do (`best_effort`).
The metrics themselves are built from a `Snapshot` by a pure function (`build_registry`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from vipdrain.fsutil import atomic_write, locked
from vipdrain.hold import read_hold
from vipdrain.layout import Layout
from vipdrain.model import JobConfig
from vipdrain.notify import STATES, Transition, read_state
from vipdrain.priority import effective_priority
from vipdrain.vrrp.timing import hear_every_master

if TYPE_CHECKING:
    from vipdrain.drain import DrainOutcome
    from vipdrain.survey import Survey

log = logging.getLogger("vipdrain.metrics")

#: The file name in the textfile directory (node_exporter reads only `*.prom`).
TEXTFILE = "vipdrain.prom"
#: How a drain ended: `vipdrain_drains_total{result=...}`.
RESULTS = ("handed_over", "nothing_held", "proceeded_without_handoff", "failed")
#: Upper bounds (s) of the handoff histogram: a handoff takes ~1 s with the resign advert and
#: ~3 x advert_int without; the drain's timeout (default 30 s) ends the range.
HANDOFF_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)

T = TypeVar("T")


@dataclass(frozen=True)
class Counters:
    """Everything the metrics count; persisted as JSON (`Layout.metrics_counters_file`)."""

    #: result (RESULTS) -> drains that ended so.
    drains: dict[str, int] = field(default_factory=dict)
    #: Handoffs per histogram bucket (not cumulative): one per HANDOFF_BUCKETS bound, then +Inf.
    handoff_buckets: tuple[int, ...] = (0,) * (len(HANDOFF_BUCKETS) + 1)
    handoff_sum: float = 0.0
    last_handoff_seconds: float | None = None
    #: VIP (VRRP instance) -> state -> transitions keepalived reported.
    transitions: dict[str, dict[str, int]] = field(default_factory=dict)

    def with_drain(self, result: str, handoff_seconds: float | None) -> Counters:
        """These counters after one more drain that ended with `result`."""
        drains = {**self.drains, result: self.drains.get(result, 0) + 1}
        if handoff_seconds is None:
            return replace(self, drains=drains)
        slot = next((i for i, bound in enumerate(HANDOFF_BUCKETS) if handoff_seconds <= bound), len(HANDOFF_BUCKETS))
        buckets = tuple(n + (i == slot) for i, n in enumerate(self.handoff_buckets))
        return replace(self, drains=drains, handoff_buckets=buckets, handoff_sum=self.handoff_sum + handoff_seconds,
                       last_handoff_seconds=handoff_seconds)

    def with_transition(self, vip: str, state: str) -> Counters:
        """These counters after keepalived reported one more transition of `vip` to `state`."""
        per_vip = dict(self.transitions.get(vip, {}))
        per_vip[state] = per_vip.get(state, 0) + 1
        return replace(self, transitions={**self.transitions, vip: per_vip})

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Counters:
        buckets = tuple(int(n) for n in raw.get("handoff_buckets", ()))
        if len(buckets) != len(HANDOFF_BUCKETS) + 1:  # written with other buckets: start the histogram again
            return cls(drains={str(k): int(v) for k, v in raw.get("drains", {}).items()})
        last = raw.get("last_handoff_seconds")
        return cls(
            drains={str(k): int(v) for k, v in raw.get("drains", {}).items()},
            handoff_buckets=buckets,
            handoff_sum=float(raw.get("handoff_sum", 0.0)),
            last_handoff_seconds=None if last is None else float(last),
            transitions={str(v): {str(s): int(n) for s, n in states.items()}
                         for v, states in raw.get("transitions", {}).items()},
        )


@dataclass(frozen=True)
class VipSample:
    """What the metrics say about one VIP."""

    name: str
    address: str
    #: Last state keepalived reported here (None: none recorded).
    state: str | None = None
    #: keepalived's priority at that transition.
    priority: int | None = None
    last_transition: float | None = None
    #: From the last survey (None: no survey of this VIP yet).
    holders: int | None = None
    verdict: str | None = None
    #: This VM forwards the VIP's old connections to a drained peer (preserve_connections).
    forwarding: bool = False


@dataclass(frozen=True)
class Snapshot:
    """Everything the metrics show at one moment; `build_registry` turns it into metrics."""

    vips: tuple[VipSample, ...]
    base_priority: int
    effective_priority: int
    #: Active hold reason -> since when (epoch s): drain, maintenance, joining.
    hold_since: Mapping[str, float]
    counters: Counters
    #: When the holders were last surveyed (epoch s), None: never.
    survey_time: float | None = None


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        return iter(metric_families(self.snapshot))


def build_registry(snapshot: Snapshot) -> CollectorRegistry:
    """A registry of its own (not the process-wide default) that holds exactly `snapshot`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return registry


def metric_families(s: Snapshot) -> list[Metric]:
    """The metric families of a snapshot (pure)."""
    labels = ["vip", "address"]
    state = GaugeMetricFamily("vipdrain_vip_state", "1 for the VRRP state keepalived last reported for the VIP "
                              "here (UNKNOWN: none recorded)", labels=[*labels, "state"])
    priority = GaugeMetricFamily("vipdrain_vip_priority", "keepalived's priority of the VIP at its last transition "
                                 "here", labels=labels)
    changed = GaugeMetricFamily("vipdrain_vip_last_transition_timestamp_seconds",
                                "When keepalived last reported a transition of the VIP here", labels=labels)
    holders = GaugeMetricFamily("vipdrain_vip_holders", "Machines seen holding the VIP at the last survey "
                                "(adverts, ARP, this VM)", labels=labels)
    split = GaugeMetricFamily("vipdrain_vip_split_brain", "1 when the last survey saw more than one holder",
                              labels=labels)
    unowned = GaugeMetricFamily("vipdrain_vip_unowned", "1 when the last survey saw no holder", labels=labels)
    forwarding = GaugeMetricFamily("vipdrain_forwarding_armed", "1 while this VM forwards the VIP's old "
                                   "connections to a drained peer (preserve_connections)", labels=labels)
    transitions = CounterMetricFamily("vipdrain_vrrp_transitions", "VRRP transitions keepalived reported here, "
                                      "by new state (FAULT: the health check failed)", labels=[*labels, "state"])
    for v in s.vips:
        key = [v.name, v.address]
        for name in (*STATES, "UNKNOWN"):
            state.add_metric([*key, name], 1.0 if (v.state or "UNKNOWN") == name else 0.0)
        if v.priority is not None:
            priority.add_metric(key, v.priority)
        if v.last_transition is not None:
            changed.add_metric(key, v.last_transition)
        if v.holders is not None:
            holders.add_metric(key, v.holders)
            split.add_metric(key, 1.0 if v.verdict == "split brain" else 0.0)
            unowned.add_metric(key, 1.0 if v.verdict == "unowned" else 0.0)
        forwarding.add_metric(key, 1.0 if v.forwarding else 0.0)
        counts = s.counters.transitions.get(v.name, {})
        for name in STATES:
            transitions.add_metric([*key, name], counts.get(name, 0))
    own = GaugeMetricFamily("vipdrain_priority", "This VM's VRRP priority: base (from the deployment) and "
                            "effective (1 while held)", labels=["kind"])
    own.add_metric(["base"], s.base_priority)
    own.add_metric(["effective"], s.effective_priority)
    hold = GaugeMetricFamily("vipdrain_hold_since_timestamp_seconds", "Since when each active hold reason "
                             "(drain, maintenance, joining) keeps this VM's priority at 1", labels=["reason"])
    for reason, since in sorted(s.hold_since.items()):
        hold.add_metric([reason], since)
    drains = CounterMetricFamily("vipdrain_drains", "Drains of this VM by how they ended", labels=["result"])
    for result in RESULTS:
        drains.add_metric([result], s.counters.drains.get(result, 0))
    c = s.counters
    cumulative, total = [], 0
    for bound, n in zip((*HANDOFF_BUCKETS, float("inf")), c.handoff_buckets, strict=True):
        total += n
        cumulative.append((floatToGoString(bound), total))  # "1.0", "+Inf": as prometheus_client's Histogram
    handoff = HistogramMetricFamily("vipdrain_handoff_seconds", "Seconds from a drain's start until its handoff "
                                    "was verified", buckets=cumulative, sum_value=c.handoff_sum)
    out: list[Metric] = [state, priority, changed, holders, split, unowned, forwarding, transitions, own, hold,
                         drains, handoff]
    if c.last_handoff_seconds is not None:
        last = GaugeMetricFamily("vipdrain_last_handoff_seconds", "Seconds the last verified handoff took")
        last.add_metric([], c.last_handoff_seconds)
        out.append(last)
    if s.survey_time is not None:
        surveyed = GaugeMetricFamily("vipdrain_survey_timestamp_seconds", "When the VIPs' holders were last surveyed")
        surveyed.add_metric([], s.survey_time)
        out.append(surveyed)
    return out


def drain_result(outcome: DrainOutcome | None) -> str | None:
    """How a drain ended (RESULTS); None while BOSH is still to call back (dynamic draining: a
    negative value). A drain that raised has no outcome: None is a failed one."""
    if outcome is None or outcome.value is None:
        return "failed"
    if outcome.value < 0:
        return None
    if outcome.handoff_seconds is not None or outcome.verdicts:
        return "handed_over"
    if outcome.unverified:
        return "proceeded_without_handoff"
    return "nothing_held"


def survey_record(vips: Mapping[str, tuple[int, str]], forwarding: Mapping[str, str], now: float) -> dict[str, Any]:
    """What `record_survey` keeps of a survey: VIP name -> (holders, verdict), the VIPs forwarded."""
    return {"time": now, "vips": {name: {"holders": n, "verdict": verdict} for name, (n, verdict) in vips.items()},
            "forwarding": sorted(forwarding)}


# --- the edges: files, the textfile, the writers -------------------------------------------------


def read_counters(layout: Layout) -> Counters:
    """The persisted counters; a missing or corrupt file starts them at zero (a counter reset,
    which Prometheus' rate() handles), with a warning for a corrupt one."""
    try:
        return Counters.from_json(json.loads(layout.metrics_counters_file.read_text()))
    except FileNotFoundError:
        return Counters()
    except (ValueError, TypeError, AttributeError) as exc:
        log.warning("%s is corrupt (%s): counting from zero", layout.metrics_counters_file, exc)
        return Counters()


def _update_counters(layout: Layout, change: Callable[[Counters], Counters]) -> None:
    with locked(layout.metrics_lock):
        counters = change(read_counters(layout))
        atomic_write(layout.metrics_counters_file, json.dumps(asdict(counters), sort_keys=True) + "\n")


def _read_survey(layout: Layout) -> dict[str, Any]:
    try:
        raw = json.loads(layout.metrics_survey_file.read_text())
        return raw if isinstance(raw, dict) else {}
    except (FileNotFoundError, ValueError):
        return {}


def snapshot(cfg: JobConfig, layout: Layout) -> Snapshot:
    """Read every source of the metrics on this VM."""
    survey = _read_survey(layout)
    surveyed = survey.get("vips", {})
    forwarded = set(survey.get("forwarding", []))
    vips = []
    for vip in cfg.vips:
        t: Transition | None = read_state(layout, vip.name)
        seen = surveyed.get(vip.name, {})
        vips.append(VipSample(
            name=vip.name, address=str(vip.address),
            state=t.state if t else None, priority=t.priority if t else None, last_transition=t.time if t else None,
            holders=seen.get("holders"), verdict=seen.get("verdict"), forwarding=str(vip.address) in forwarded,
        ))
    hold = read_hold(layout)
    holder = cfg.placement == "sticky" and any(s.state == "MASTER" for s in vips)
    return Snapshot(
        vips=tuple(vips), base_priority=cfg.priority,
        effective_priority=effective_priority(cfg.priority, held=hold.active, holder=holder),
        hold_since=dict(hold.since), counters=read_counters(layout), survey_time=survey.get("time"),
    )


def textfile_path(cfg: JobConfig) -> Path | None:
    """Where the metrics go; None when they are off."""
    return Path(cfg.metrics.textfile_dir) / TEXTFILE if cfg.metrics.textfile_dir else None


def refresh(cfg: JobConfig, layout: Layout) -> Path | None:
    """Rewrite the textfile from every source (atomically: node_exporter never reads half of it)."""
    path = textfile_path(cfg)
    if path is None:
        return None
    if not path.parent.is_dir():
        # Never created here: on BOSH it is another job's directory, which the agent creates (a
        # symlink into /var/vcap/data/jobs); a directory of ours in its place would break that.
        raise FileNotFoundError(f"vipdrain.metrics.textfile_dir {path.parent} is not a directory")
    with locked(layout.metrics_lock):
        write_to_textfile(str(path), build_registry(snapshot(cfg, layout)))
    # prometheus_client writes with the process' umask; node_exporter may run as another user.
    os.chmod(path, 0o644)
    return path


def best_effort(what: str, fn: Callable[[], T]) -> T | None:
    """Run `fn`; on any error log a warning and return None: metrics never fail their caller."""
    try:
        return fn()
    except Exception as exc:
        log.warning("metrics: %s failed (%s: %s); carrying on without", what, type(exc).__name__, exc)
        return None


def record_drain(cfg: JobConfig, layout: Layout, outcome: DrainOutcome | None) -> None:
    """Count one drain (None: it failed) and refresh the textfile; nothing while metrics are off."""
    result = drain_result(outcome)
    if result is None or textfile_path(cfg) is None:
        return
    seconds = outcome.handoff_seconds if outcome is not None else None
    _update_counters(layout, lambda c: c.with_drain(result, seconds))
    refresh(cfg, layout)


def record_transitions(layout: Layout, transitions: list[Transition], load: Callable[[], JobConfig]) -> None:
    """Count transitions the notify reader recorded and refresh the textfile once for them all."""
    cfg = load()
    if textfile_path(cfg) is None:
        return

    def count(c: Counters) -> Counters:
        for t in transitions:
            c = c.with_transition(t.instance, t.state)
        return c

    _update_counters(layout, count)
    refresh(cfg, layout)


class ConfigCache:
    """The job's config, parsed again only when its file changed (a stat per call), so that a
    new config (a deploy) applies without restarting the notify reader."""

    def __init__(self, path: Path, load: Callable[[Path], JobConfig]) -> None:
        self.path = path
        self._load = load
        self._lock = threading.Lock()
        self._key: tuple[int, int, int] | None = None
        self._cfg: JobConfig | None = None

    def __call__(self) -> JobConfig:
        with self._lock:
            st = self.path.stat()
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            if self._cfg is None or key != self._key:
                self._cfg, self._key = self._load(self.path), key
            return self._cfg


class TransitionWriter:
    """The notify reader's metrics, off its own thread: `put` only queues the transition (the
    reader goes on to the next line at once: the drain waits on the state files it writes), a
    daemon thread counts each batch (transitions less than QUIET s apart, for at most MAX_DELAY s)
    and refreshes the textfile once for it."""

    #: Seconds without a new transition that end a batch, and the longest a batch waits.
    QUIET = 0.05
    MAX_DELAY = 1.0

    def __init__(self, layout: Layout, load: Callable[[], JobConfig]) -> None:
        self.layout = layout
        self.load = load
        self._queue: queue.SimpleQueue[Transition | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="vipdrain-metrics-transitions", daemon=True)
        self._thread.start()

    def put(self, transition: Transition) -> None:
        self._queue.put(transition)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (keepalived stopped: its last transitions), for up to `timeout` s."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            # A burst (every VIP moving at once) is written once, after it: writing during it
            # would compete with the reader for the disk and the interpreter.
            until = time.monotonic() + self.MAX_DELAY
            while batch[-1] is not None and (left := until - time.monotonic()) > 0:
                try:
                    batch.append(self._queue.get(timeout=min(self.QUIET, left)))
                except queue.Empty:
                    break
            transitions = [t for t in batch if t is not None]
            if transitions:
                best_effort("recording transitions",
                            functools.partial(record_transitions, self.layout, transitions, self.load))
            if None in batch:
                return


def record_survey(cfg: JobConfig, layout: Layout, survey: Survey, now: float | None = None) -> Path | None:
    """Keep what the metrics show of a survey and refresh the textfile."""
    vips = {s.vip.name: (len(s.holders), s.verdict) for s in survey.vips}
    record = survey_record(vips, survey.forwarding, time.time() if now is None else now)
    atomic_write(layout.metrics_survey_file, json.dumps(record, sort_keys=True) + "\n")
    return refresh(cfg, layout)


def survey_now(cfg: JobConfig, layout: Layout) -> Path | None:
    """One survey of the holders (listening 1.5 x advert_int), recorded and written."""
    from vipdrain.observe import LiveObserver
    from vipdrain.survey import take_survey

    with LiveObserver(cfg, layout) as observer:
        survey = take_survey(cfg, layout, observer, listen=hear_every_master(cfg.advert_int))
    return record_survey(cfg, layout, survey)


def start_survey_loop(layout: Layout, load: Callable[[], JobConfig], stop: threading.Event) -> threading.Thread:
    """The notify reader's periodic survey, in a daemon thread: every `survey_interval` s while
    metrics are on (`load` is asked each time: a ConfigCache). A failing survey is logged and
    retried next time; the thread never touches the reader's own work."""

    def loop() -> None:
        interval = 60.0
        while True:
            cfg = best_effort("loading the config", load)
            if cfg is not None and textfile_path(cfg) is not None and cfg.metrics.survey_interval > 0:
                interval = cfg.metrics.survey_interval
                best_effort("the survey", functools.partial(survey_now, cfg, layout))
            if stop.wait(interval):
                return

    thread = threading.Thread(target=loop, name="vipdrain-metrics-survey", daemon=True)
    thread.start()
    return thread
