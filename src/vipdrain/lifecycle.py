"""BOSH's start-side hooks: pre-start (prepare, render, join held), post-start (release),
post-deploy (clear leftovers, check the whole group). The drain is in `vipdrain.drain`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from vipdrain import preserve
from vipdrain.errors import RuntimeFailure
from vipdrain.hold import REASONS, Hold, Reason, read_hold, set_hold
from vipdrain.keepalived import clear_stale_pid_files, started_at, write_checked_config
from vipdrain.keepalived import running as keepalived_running
from vipdrain.layout import Layout
from vipdrain.model import JobConfig
from vipdrain.notify import find_readers, read_state, start_reader
from vipdrain.observe import LiveObserver, Observer
from vipdrain.priority import effective_priority
from vipdrain.survey import Survey, placement_problems, take_survey
from vipdrain.vipaddr import sync_loopback
from vipdrain.vrrp.timing import hear_every_master
from vipdrain.waiting import wait_until

log = logging.getLogger("vipdrain.lifecycle")

#: Kernel settings the job needs: haproxy may bind the VIP before this VM holds it.
SYSCTLS = {
    "net/ipv4/ip_nonlocal_bind": "1",
    "net/ipv6/ip_nonlocal_bind": "1",
}


def set_sysctls(proc_sys: Path = Path("/proc/sys")) -> list[str]:
    """Apply SYSCTLS (in the current network namespace); returns warnings for those that failed."""
    warnings = []
    for key, value in SYSCTLS.items():
        try:
            (proc_sys / key).write_text(value)
        except OSError as exc:
            warnings.append(f"could not set {key.replace('/', '.')}={value}: {exc.strerror}")
    return warnings


def colocation_warnings(cfg: JobConfig) -> list[str]:
    """Settings of the colocated haproxy job that make a drain unsafe, in sentences."""
    grace = cfg.haproxy.drain_grace_time
    if grace is None or grace >= cfg.drain.timeout:
        return []
    return [
        f"vipdrain.haproxy.drain_grace_time is {grace:g} s, shorter than vipdrain.drain.timeout "
        f"({cfg.drain.timeout:g} s): haproxy's own drain can close its listeners while this VM still "
        "holds the VIP. Set ha_proxy.drain_frontend_grace_time >= vipdrain.drain.timeout."
    ]


def pre_start(cfg: JobConfig, layout: Layout, keepalived_conf: str) -> list[str]:
    """Prepare the VM so keepalived joins held: it cannot take a VIP before post-start.

    `keepalived_conf` is the rendered text; it is checked and written atomically before anything
    else changes, so an invalid config leaves the VM as it was. Returns warnings.
    """
    for d in layout.dirs():
        d.mkdir(parents=True, exist_ok=True)
    write_checked_config(keepalived_conf, layout.keepalived_conf)
    warnings = set_sysctls()
    warnings.extend(sync_loopback(layout, cfg.vips))
    preserve.end_handoff(layout)
    warnings.extend(preserve.install(cfg))
    cleared = clear_stale_pid_files(layout)
    if cleared:
        log.info("removed stale keepalived pid files: %s", ", ".join(str(p) for p in cleared))
    return warnings + join_held(cfg, layout)


def join_held(cfg: JobConfig, layout: Layout) -> list[str]:
    """pre-start's decision: this VM joins held ("joining" until post-start); a drain of the
    previous run is over, a maintenance hold stays. Returns warnings."""
    hold = set_hold(layout, add=("joining",), remove=("drain",))
    warnings = list(hold.warnings)
    if "maintenance" in hold.since:
        warnings.append("maintenance is on (manual drain): this VM stays held until `vipdrain undrain`")
    return warnings + colocation_warnings(cfg)


@dataclass(frozen=True)
class Readiness:
    """Why this VM is not ready to take part in elections yet (empty = ready)."""

    reasons: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return not self.reasons


def readiness(cfg: JobConfig, layout: Layout, haproxy_ok: Callable[[], str | None],
              keepalived_since: Callable[[Layout], float | None] = started_at) -> Readiness:
    """Is haproxy answering, keepalived running, and every VRRP instance out of FAULT here, as
    reported by the keepalived running now?

    `keepalived_since` gives the wall time the running keepalived started (None: not running).
    The state file outlives keepalived: right after a restart it still holds the old process's
    last state (BACKUP) while the new one starts in FAULT (`init_fail`) until its health check
    passes, and a VM released then is not yet a candidate for the VIP.
    """
    reasons = []
    problem = haproxy_ok()
    if problem:
        reasons.append(f"haproxy: {problem}")
    since = keepalived_since(layout)
    if since is None:
        reasons.append(f"keepalived is not running (pid file {layout.pid_file})")
    for vip in cfg.vips:
        t = read_state(layout, vip.name)
        if t is None or (since is not None and t.time < since):
            reasons.append(f"{vip.name} is not reported yet by the running keepalived (want BACKUP or MASTER)")
        elif t.state not in ("BACKUP", "MASTER"):
            reasons.append(f"{vip.name} is {t.state} (want BACKUP or MASTER)")
    return Readiness(tuple(reasons))


@dataclass(frozen=True)
class Released:
    """What releasing a hold did: the hold left, and the takeover armed on the way."""

    hold: Hold
    armed: preserve.Armed = field(default_factory=preserve.Armed)


@dataclass(frozen=True)
class Started:
    """What post-start did: seconds until ready, and the takeover armed when it released the hold."""

    waited: float
    armed: preserve.Armed = field(default_factory=preserve.Armed)


def post_start(
    cfg: JobConfig,
    layout: Layout,
    haproxy_ok: Callable[[], str | None],
    timeout: float,
    sleep: Callable[[float], None] | None = None,
    keepalived_since: Callable[[Layout], float | None] = started_at,
    clock: Callable[[], float] = time.monotonic,
) -> Started:
    """Wait until the VM can serve, then release the joining hold. Returns the seconds waited
    and the takeover armed (to settle with `vipdrain.preemption.settle_arms`).

    On timeout the hold stays on (the VM never takes the VIP without a working haproxy) and the
    deploy fails with the reasons.
    """
    started = clock()
    waited = wait_until(lambda: readiness(cfg, layout, haproxy_ok, keepalived_since), done=lambda r: r.ready,
                        budget=timeout, step=0.2, clock=clock, sleep=sleep or time.sleep)
    if not waited.ok:
        raise RuntimeFailure(
            f"post-start: not ready after {timeout:g} s, keeping this VM held: " + "; ".join(waited.last.reasons)
        )
    released = release_hold(cfg, layout, ("joining", "drain"))
    for warning in released.hold.warnings:
        log.warning(warning)
    return Started(clock() - started, released.armed)


def release_hold(cfg: JobConfig, layout: Layout, reasons: tuple[Reason, ...],
                 observer: Callable[[JobConfig, Layout], LiveObserver] = LiveObserver,
                 arm: Callable[..., preserve.Armed] = preserve.arm_takeover) -> Released:
    """Remove hold `reasons` (post-start, undrain). With connection preservation, when that
    lets this VM outrank the current master, first arm the takeover (`preserve.arm_takeover`):
    the master's connections survive the preemption that follows. The caller settles the arm
    once the election is seen (`vipdrain.preemption.settle_arms`)."""
    warnings: list[str] = []
    armed = preserve.Armed()
    still = set(read_hold(layout).since) - set(reasons)
    if cfg.drain.preserve_connections and cfg.peers and not still:
        try:
            with observer(cfg, layout) as watch:
                watch.collect(hear_every_master(cfg.advert_int))
                armed = arm(cfg, watch.latest, effective_priority(cfg.priority, held=False),
                            time.monotonic() - watch.freshness)
                warnings += armed.warnings
        except OSError as exc:
            # The hold comes off regardless: a VM that can serve must not stay out of elections.
            warnings.append(f"connection preservation: cannot listen for adverts ({exc}); "
                            "the current master's connections are not kept if this VM takes over")
    hold = set_hold(layout, remove=reasons)
    return Released(replace(hold, warnings=(*hold.warnings, *warnings)), armed)


@dataclass
class PostDeployReport:
    survey: Survey
    #: Fail the deploy: split brain or an unowned VIP.
    problems: list[str]
    #: Worth saying, not worth failing for: leftover holds cleared, placement not reached.
    warnings: list[str]


def post_deploy(
    cfg: JobConfig,
    layout: Layout,
    observer: Observer,
    budget: float,
    clock: Callable[[], float] = time.monotonic,
    survey: Callable[[JobConfig, Layout, Observer, float], Survey] = take_survey,
) -> PostDeployReport:
    """After every VM was updated: clear leftover holds, then wait until the cluster settles.

    Settled = every VIP has exactly one holder (and, with `preferred`, it is the bootstrap VM).
    Clearing a hold can start one last (make-before-break) move, hence the wait. `survey` takes
    one look (`take_survey`; unit tests give it fake effects).
    """
    warnings = []
    if keepalived_running(layout) and not find_readers(layout):
        # keepalived starts its notify reader only when it starts or reloads.
        try:
            warnings.append(f"keepalived's notify reader was gone: started a new notify reader (pid "
                            f"{start_reader(layout)})")
        except OSError as exc:
            warnings.append(f"keepalived's notify reader is gone and could not be started: {exc}")
    leftover = read_hold(layout)
    if leftover.active:
        warnings.append(f"cleared a leftover hold ({', '.join(leftover.reasons) or 'unexplained'})")
    set_hold(layout, remove=REASONS)
    # Twice in a row: a VM that just started is silent for up to 3 x advert_int before it
    # may become a second master, so one clean look right after a start proves little.
    looks: list[bool] = []

    def look() -> Survey:
        seen = survey(cfg, layout, observer, hear_every_master(cfg.advert_int))
        looks.append(not seen.problems and not placement_problems(cfg, seen))
        return seen

    last = wait_until(look, done=lambda _: looks[-2:] == [True, True], budget=budget, clock=clock).last
    warnings.extend(placement_problems(cfg, last))
    return PostDeployReport(last, last.problems, warnings)
