"""Where the drain is decided: hand every VIP this VM holds to a peer, verifiably, then let go.

    vipdrain drain job_changed hash_changed pkg...   (BOSH)  -> stdout: exactly one integer line
    vipdrain drain                                    (operator) -> maintenance on, human progress

Steps: look at what this VM holds; nothing held -> put the hold on and return at once; no peer,
or no peer whose haproxy answers -> `no_peer_policy`. Otherwise find the peer that will really take
over (the highest priority) and wait until its haproxy answers - or until keepalived there has
fenced it, then the next one is the taker. Keep a silent copy of each VIP on lo, arm the peers
(drain notices, with `preserve_connections`), put the hold on (priority 1 through the track file:
no reload, no restart), send the priority-0 resign advert to the taker alone, and wait - with a
deadline - until every held VIP is verified to be elsewhere: a peer's adverts above our priority,
its haproxy answering, the VIP gone from our interface, this VM no longer master (its own adverts
gone from the wire; keepalived's reported state is only a hint). Then
confirm it for a short window (the holder keeps advertising and answering; a backup that was
still racing would have preempted it by then) before reporting the holder. An `undrain` while
the drain waits cancels it: the drain fails (nothing on stdout) and leaves the VM serving.
The edges (observation, clock, sleep, addresses, notices) are passed in, so the decision runs in
unit tests with fakes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from vipdrain.errors import RuntimeFailure
from vipdrain.hold import Reason, read_hold, set_hold
from vipdrain.layout import Layout
from vipdrain.model import IPAddress, JobConfig, Vip
from vipdrain.preserve import end_handoff, open_connections, start_handoff
from vipdrain.priority import effective_priority
from vipdrain.verdicts import (
    Candidate,
    Plan,
    TakerChoice,
    Verdict,
    VipView,
    choose_taker,
    handed_over,
    holds_vip,
    plan,
    takeover_order,
    vip_went_to_a_draining_peer,
)
from vipdrain.vipaddr import keep_on_loopback, remove_stale
from vipdrain.vrrp import timing
from vipdrain.waiting import wait_until

log = logging.getLogger("vipdrain.drain")

#: Resign adverts sent again at most this often in one drain (see `_resign_again_if_outdated`).
MAX_RESIGNS = 3
BOSH_ACTIONS = ("job_changed", "job_shutdown", "job_new", "job_check_status")
HASH_STATES = ("hash_changed", "hash_unchanged", "hash_new")


@dataclass(frozen=True)
class DrainArgs:
    """The drain's command line: BOSH's arguments, or none for a manual maintenance drain."""

    manual: bool
    action: str = "manual"
    hash_state: str = ""
    packages: tuple[str, ...] = ()
    #: Sentences about arguments we did not recognise (logged; the drain still hands over).
    warnings: tuple[str, ...] = ()

    @property
    def reason(self) -> Reason:
        return "maintenance" if self.manual else "drain"


def parse_drain_args(argv: Sequence[str]) -> DrainArgs:
    """BOSH calls `drain ACTION HASH_STATE [PACKAGE...]`; no arguments means an operator's drain.

    Unknown arguments do not stop the drain: handing the VIP over is the safe reaction to any
    call, so they are reported and the drain goes on as for `job_changed`.
    """
    if not argv:
        return DrainArgs(manual=True)
    action, *rest = argv
    warnings: list[str] = []
    if action not in BOSH_ACTIONS:
        warnings.append(
            f"unknown BOSH drain action {action!r} (expected one of {', '.join(BOSH_ACTIONS)}); "
            "handing over as for job_changed"
        )
        action = "job_changed"
    hash_state = rest[0] if rest else ""
    if hash_state and hash_state not in HASH_STATES:
        warnings.append(f"unknown BOSH hash state {hash_state!r} (expected one of {', '.join(HASH_STATES)})")
    return DrainArgs(manual=False, action=action, hash_state=hash_state, packages=tuple(rest[1:]),
                     warnings=tuple(warnings))


class Observer(Protocol):
    """What the drain needs to see; `vipdrain.observe.LiveObserver` is the real one."""

    def views(self, own_priority: int) -> list[VipView]:
        """One observation of every VIP of the job."""
        ...

    def collect(self, seconds: float, *, until_first: bool = False) -> None:
        """Listen for adverts for up to `seconds` (the drain's pacing: no bare sleeps); with
        `until_first`, return as soon as some arrived."""
        ...

    def outdated_advert_since(self, priority: int, since: float) -> bool:
        """Did our keepalived advertise above `priority` after `since` (monotonic)?"""
        ...

    def keepalived_running(self) -> bool:
        """Is this job's keepalived alive (else a VIP on our interface is a leftover)?"""
        ...

    def peer_problem(self, address: IPAddress) -> str | None:
        """Why the peer at `address` cannot serve (its haproxy does not answer), or None."""
        ...

    def prepare_resign(self, to: IPAddress) -> str:
        """Make `resign(to)` reach peer `to` alone (e.g. learn its MAC); returns a sentence."""
        ...

    def resign(self, to: IPAddress | None = None) -> list[str]:
        """Send a priority-0 advert for every VIP held here (to peer `to` alone, if given);
        returns sentences about what was sent."""
        ...


class DrainCancelled(RuntimeFailure):
    """The hold this drain put on was released (`vipdrain undrain`) while it waited."""


@dataclass
class DrainOutcome:
    """What the CLI prints and returns. `value` is the integer for BOSH (None on failure)."""

    value: int | None
    summary: str
    handoff_seconds: float | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    #: BOSH may go on although no handoff was verified (`no_peer_policy: proceed`).
    unverified: bool = False
    #: Sentences worth an operator's attention, collected during the drain; the caller logs them
    #: once (stderr and vipdrain.log, never stdout), as kubectl's drain returns its warnings.
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.value is None

    @classmethod
    def proceeding(cls, why: str, warning: str) -> DrainOutcome:
        """The outcome of `no_peer_policy: proceed`: 0 for BOSH, and said loudly (`warning`: what the
        policy means here)."""
        return cls(0, f"proceeding without handoff: {why}", unverified=True,
                   warnings=[f"NO VERIFIED HANDOFF: {why}. {warning}"])


@dataclass
class _Every:
    """Due at most once per `seconds` (progress lines while waiting)."""

    seconds: float
    next_at: float

    def due(self, now: float) -> bool:
        if now < self.next_at:
            return False
        self.next_at = now + self.seconds
        return True


@dataclass
class Drain:
    """One drain call: settings and the edges it talks to."""

    cfg: JobConfig
    layout: Layout
    observer: Observer
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    #: Progress for a human at a terminal (manual drain); BOSH drains only log.
    progress: Callable[[str], None] | None = None
    #: Keeps a silent copy of a VIP on this VM while it moves (vipdrain.vipaddr).
    keep_copy: Callable[[Vip], str] = keep_on_loopback
    #: Removes a VIP a dead keepalived left behind (vipdrain.vipaddr).
    drop_stale: Callable[[Vip], str] = remove_stale
    #: Tells the peers to forward this VM's connections back to it (vipdrain.preserve).
    announce: Callable[[JobConfig, Layout, list[Vip]], list[str]] = start_handoff
    stop_announcing: Callable[[Layout], None] = end_handoff
    #: Connections to the VIPs this VM still serves (what the grace period is for).
    connections: Callable[[list[IPAddress]], int] = open_connections
    #: When this drain call began (`clock`), if before `run`: the wait for the drain lock counts
    #: against `drain.timeout` too.
    began: float | None = None
    _resigned_at: float | None = field(default=None, init=False)
    _resigns: int = field(default=0, init=False)
    #: The peer that is to take over (resign adverts go to it alone); None: any.
    _taker: IPAddress | None = field(default=None, init=False)
    #: When each peer's haproxy was first seen not answering (this drain's clock).
    _failing_since: dict[IPAddress, float] = field(default_factory=dict, init=False)
    #: Warnings so far (`DrainOutcome.warnings`).
    _warnings: list[str] = field(default_factory=list, init=False)
    #: When the last look ended (`_look`).
    _looked_at: float | None = field(default=None, init=False)

    @property
    def own_priority(self) -> int:
        return effective_priority(self.cfg.priority, held=True)

    @property
    def recall_seconds(self) -> int:
        """Dynamic draining: how long BOSH should wait before calling back."""
        return timing.recall_seconds(self.cfg.advert_int)

    def run(self, args: DrainArgs) -> DrainOutcome:
        """The canonical drain: the one place that composes the steps above. The warnings come
        back in the outcome; a failed drain logs them before it raises (they are not lost)."""
        self._warnings = list(args.warnings)
        try:
            outcome = self._run(args)
        except BaseException:
            for w in self._warnings:
                log.warning("%s", w)
            raise
        outcome.warnings = [*self._warnings, *outcome.warnings]
        return outcome

    def _run(self, args: DrainArgs) -> DrainOutcome:
        if not self.cfg.drain.enabled:
            return DrainOutcome(0, "drain disabled (vipdrain.drain.enabled: false): not handing over")
        log.info("drain (%s%s) of %d VIP(s)", args.action, f" {args.hash_state}" if args.hash_state else "",
                 len(self.cfg.vips))
        if args.action == "job_check_status":
            return self._check_status(args)
        began = self.began if self.began is not None else self.clock()
        views = self.observer.views(self.own_priority)
        decision, why = plan(views, self.cfg.peers)
        log.info("%s: %s", decision.value, why)
        if decision is Plan.NOTHING_TO_DO:
            # An earlier call of this drain (killed, and retried by BOSH) may have handed the VIPs
            # over moments ago: the new master forwards their connections here for the grace period.
            retried = args.reason in read_hold(self.layout).since
            self._hold(args)
            # Holding nothing is not having nothing: a VM the VIP was taken from by preemption
            # still serves the connections the new master forwards back to it.
            return DrainOutcome(self._after_handoff(args) if retried or self._serving() else 0, why)
        if decision is Plan.NO_PEER:
            self._hold(args)
            return self._no_peer(args, why)
        choice = self._wait_for_taker(began)
        if choice.taker is None and self.cfg.drain.peer_check:
            self._hold(args)
            return self._no_peer(args, choice.reason)
        log.info("%s", choice.reason)
        self._taker = choice.taker
        if self._taker is not None and self.cfg.drain.resign_advert:
            log.info("%s", self.observer.prepare_resign(self._taker))
        held = {v.vip.name for v in views if holds_vip(v)}
        for v in views:
            if v.vip.name in held:
                try:
                    log.info(self.keep_copy(v.vip))
                except RuntimeFailure as exc:
                    self._warnings.append(f"{exc}; packets in flight at the handoff may be lost")
        # Before the priority drops: the peers must be armed to forward before any can take over,
        # even if this drain is killed right after lowering the priority.
        self._warnings += self.announce(self.cfg, self.layout, [v.vip for v in views if v.vip.name in held])
        self._hold(args)
        if self.cfg.drain.resign_advert:
            self._resign()
        if self.cfg.drain.dynamic and not args.manual:
            return DrainOutcome(-self.recall_seconds, f"handing over {len(held)} VIP(s); BOSH calls back")
        return self._wait(args, held, began)

    def _hold(self, args: DrainArgs) -> None:
        """Lower this VM's priority (the hold track file; keepalived applies it via inotify)."""
        self._warnings += set_hold(self.layout, add=(args.reason,)).warnings

    @property
    def fenced_after(self) -> float | None:
        """Seconds of failed probes after which a peer's own health check has fenced it (FAULT):
        `fall` checks `interval` apart, each up to `timeout`, plus one interval for the phase."""
        hc = self.cfg.healthcheck
        return None if hc is None else timing.fencing_wait(hc.fall, hc.interval, hc.timeout)

    def _candidates(self) -> list[Candidate]:
        """Probe every peer's haproxy, in takeover order, remembering since when each fails."""
        now = self.clock()
        out = []
        for peer in takeover_order(self.cfg.instance, self.cfg.peers, self.cfg.placement):
            problem = self.observer.peer_problem(peer.address)
            if problem is None:
                self._failing_since.pop(peer.address, None)
            since = self._failing_since.setdefault(peer.address, now) if problem else now
            out.append(Candidate(peer.address, problem, now - since))
        return out

    def _wait_for_taker(self, started: float) -> TakerChoice:
        """Before the hold: the peer that will take over must answer (or be fenced, then the next).
        keepalived's own health check fences a peer whose haproxy is down only after `fall` failed
        checks - seconds during which it would take the VIP and refuse or hang every request."""
        order = takeover_order(self.cfg.instance, self.cfg.peers, self.cfg.placement)
        if not self.cfg.drain.peer_check:
            return TakerChoice(order[0].address if order else None, False, "peer_check is off: not probing peers")
        choice = choose_taker(self._candidates(), self.fenced_after)
        if not choice.wait:
            return choice
        log.warning("%s", choice.reason)

        def attempt() -> TakerChoice:
            choice = choose_taker(self._candidates(), self.fenced_after)
            if self.progress:
                self.progress(f"[{self.clock() - started:5.1f}s / {self.cfg.drain.timeout:g}s] {choice.reason}")
            return choice

        budget = self.cfg.drain.timeout - (self.clock() - started)
        waited = wait_until(attempt, done=lambda c: not c.wait, budget=budget,
                            step=self.cfg.drain.poll_interval * 5, clock=self.clock, sleep=self.sleep)
        if not waited.ok:
            return TakerChoice(None, False, f"no fit peer within {self.clock() - started:.1f} s: {waited.last.reason}")
        return waited.last

    def _resign(self) -> None:
        """Send the priority-0 advert: the taker takes over after its skew time."""
        self._resigned_at = self.clock()
        for line in self.observer.resign(self._taker):
            log.info(line)

    def _resign_again_if_outdated(self) -> None:
        """keepalived applies the hold within milliseconds (inotify), but an advert it sent in
        that window carries the old priority and undoes the resign: send it again, a few times."""
        if self._resigned_at is None or self._resigns >= MAX_RESIGNS:
            return
        if self.observer.outdated_advert_since(self.own_priority, self._resigned_at):
            self._resigns += 1
            log.info("keepalived advertised its old priority after the resign advert; resigning again")
            self._resign()

    def _wait(self, args: DrainArgs, held: set[str], started: float) -> DrainOutcome:
        """Wait until every VIP in `held` is verified elsewhere and stays so for the confirmation
        window; the deadline counts from `started`."""
        while True:
            verified, last, hopeless = self._watch(held, started, self._left(started), args)
            took = self.clock() - started
            if hopeless:
                return self._no_peer(args, f"after {took:.1f} s: " + "; ".join(v.reason for v in hopeless))
            if not verified:
                reasons = "; ".join(v.reason for v in last if not v.ok) or "no observation"
                return self._no_peer(args, f"no peer took over within {took:.1f} s: {reasons}")
            confirmed, last = self._confirm(held, started, args)
            if confirmed:
                break
            if self._left(started) <= 0:
                reasons = "; ".join(v.reason for v in last if not v.ok)
                return self._no_peer(args, f"the handoff did not hold within {self.clock() - started:.1f} s: {reasons}")
            log.warning("the handoff did not hold: %s; waiting again", "; ".join(v.reason for v in last if not v.ok))
        summary = "; ".join(v.reason for v in last) + (f" (verified {took:.2f} s after the drain began, still so "
                                                       f"at {self.clock() - started:.2f} s: confirmed)")
        return DrainOutcome(self._after_handoff(args), summary, handoff_seconds=took, verdicts=last)

    def _left(self, started: float) -> float:
        return self.cfg.drain.timeout - (self.clock() - started)

    def _confirm(self, held: set[str], started: float, args: DrainArgs) -> tuple[bool, list[Verdict]]:
        """After a verified handoff, watch until the window ends: every VIP keeps its new holder,
        which keeps advertising and answering. A backup still racing for a VIP (its timer started
        before the hold) preempts within 3 x advert_int + skew of the hold; a holder whose haproxy
        just died goes FAULT. Either means the holder named now would be wrong. The window ends
        no later than the drain's deadline (the state then is what counts)."""
        since = self.clock()
        hold_at = self._resigned_at if self._resigned_at is not None else since
        until = min(timing.confirmation_end(since, hold_at, self.cfg.advert_int), started + self.cfg.drain.timeout)
        holders: dict[str, IPAddress] = {}

        def attempt() -> list[Verdict]:
            """The verdicts now; a failing one ends the window early."""
            views = self._look(held, args)
            verdicts = [handed_over(v) for v in views]
            for v, verdict in zip(views, verdicts, strict=True):
                if not verdict.ok:
                    return verdicts
                holder = v.peer_master.source if v.peer_master else None
                if holders.setdefault(v.vip.name, holder) != holder:  # type: ignore[arg-type]
                    return [Verdict(False, f"{v.vip.name} moved on from {holders[v.vip.name]} to {holder}")]
            return verdicts

        last = wait_until(attempt, done=lambda verdicts: not all(v.ok for v in verdicts), budget=until - since,
                          clock=self.clock, sleep=self.sleep).last
        if not all(v.ok for v in last):
            return False, last
        # The holders were heard within the window (not only before it): they are still master.
        stale = [v for v in self._look(held, args) if v.peer_master is None or v.peer_master.seen_at < since]
        if stale and until > since:
            return False, [Verdict(False, f"{v.vip.name}: its holder has not advertised since the handoff")
                           for v in stale]
        return True, last

    def _look(self, held: set[str] | None, args: DrainArgs) -> list[VipView]:
        """One observation of the VIPs in `held` (None: those held here now), after listening.

        It comes as soon as an advert arrives, but at most every half `poll_interval`: every
        instance's adverts count, and with 50 VIPs (100 adverts a second from the two VMs) a look
        per advert was most of a drain's CPU (docs/BENCHMARKS.md). The adverts in between are
        all recorded."""
        self.observer.collect(self.cfg.drain.poll_interval, until_first=True)
        spacing = self.cfg.drain.poll_interval / 2
        if self._looked_at is not None and (rest := self._looked_at + spacing - self.clock()) > 0:
            self.observer.collect(rest)
        self._looked_at = self.clock()
        self._cancel_if_undrained(args)
        self._resign_again_if_outdated()
        return [v for v in self.observer.views(self.own_priority)
                if (v.vip.name in held if held is not None else holds_vip(v))]

    def _cancel_if_undrained(self, args: DrainArgs) -> None:
        """`vipdrain undrain` removed this drain's hold reason: the operator wants this VM to serve.
        Stop here (no more resigns, no policy): BOSH gets a failed drain - nothing on stdout -
        so the deploy stops with the VM serving instead of stopping its haproxy and keepalived."""
        if args.reason in read_hold(self.layout).since:
            return
        self.stop_announcing(self.layout)
        failure = DrainCancelled(
            f"drain cancelled: the {args.reason!r} hold was released (vipdrain undrain) while the drain waited; "
            "this VM takes part in elections again at its normal priority and keeps serving"
        )
        log.error("%s", failure)
        raise failure

    def _watch(self, held: set[str] | None, started: float, budget: float,
               args: DrainArgs) -> tuple[bool, list[Verdict], list[Verdict]]:
        """Observe until every VIP in `held` (None: every VIP held here now) is verified elsewhere,
        one went to a VM that drains too (hopeless: no healthy holder can come), or `budget` ran
        out. Returns whether it was verified, the last verdicts, and the hopeless ones."""
        progress = _Every(1.0, started)

        def attempt() -> tuple[list[Verdict], list[Verdict]]:
            """One look: (the handed-over verdicts, the hopeless ones)."""
            views = self._look(held, args)
            self._drop_leftovers(views)
            hopeless = [g for g in map(vip_went_to_a_draining_peer, views) if g.ok]
            verdicts = [handed_over(v) for v in views]
            now = self.clock()
            if self.progress and not hopeless and progress.due(now):
                waiting = [v.reason for v in verdicts if not v.ok]
                self.progress(f"[{now - started:5.1f}s / {self.cfg.drain.timeout:g}s] "
                              + ("; ".join(waiting) if waiting else "handed over"))
            return verdicts, hopeless

        waited = wait_until(attempt, done=lambda seen: bool(seen[1]) or all(v.ok for v in seen[0]), budget=budget,
                            clock=self.clock, sleep=self.sleep)
        verdicts, hopeless = waited.last
        return waited.ok and not hopeless, verdicts, hopeless

    def _drop_leftovers(self, views: list[VipView]) -> None:
        """A VIP on our interface with no keepalived here to remove it, while a peer proves it holds
        it: two holders by nobody's choice. Remove ours (never before the peer is proven)."""
        stale = [v for v in views if v.local and v.peer_master is not None]
        if not stale or self.observer.keepalived_running():
            return
        for v in stale:
            try:
                self._warnings.append(self.drop_stale(v.vip))
            except RuntimeFailure as exc:
                self._warnings.append(str(exc))

    def _check_status(self, args: DrainArgs) -> DrainOutcome:
        """Dynamic drain call-back: one look, then done, call back again, or the policy."""
        hold = read_hold(self.layout)
        if "drain" not in hold.since:
            log.warning("job_check_status without a drain in progress (crash?): starting the drain again")
            return self._run(DrainArgs(manual=False, action="job_changed"))
        # Long enough to hear a master's advert: a shorter look could miss it on every call-back.
        listen = timing.hear_every_master(self.cfg.advert_int)
        verified, verdicts, hopeless = self._watch(None, self.clock(), listen, args)
        if hopeless:
            return self._no_peer(args, "; ".join(v.reason for v in hopeless))
        if verified:
            return DrainOutcome(self._after_handoff(args), "; ".join(v.reason for v in verdicts) or "nothing held",
                                verdicts=verdicts)
        elapsed = time.time() - hold.since["drain"]
        if elapsed >= self.cfg.drain.timeout:
            reasons = "; ".join(v.reason for v in verdicts if not v.ok)
            return self._no_peer(args, f"no peer took over within {elapsed:.1f} s: {reasons}")
        return DrainOutcome(-self.recall_seconds, f"still waiting ({elapsed:.1f} s): "
                            + "; ".join(v.reason for v in verdicts if not v.ok))

    def _after_handoff(self, args: DrainArgs) -> int:
        """What BOSH waits before stopping haproxy: the grace period when connections are kept.

        After a handoff always: a connection whose SYN reached this VM just before the clients'
        ARP switch is only being set up when the drain counts.
        """
        if self.cfg.drain.preserve_connections and not args.manual:
            return math.ceil(self.cfg.drain.preserve_grace)
        return 0

    def _serving(self) -> bool:
        """Does this VM still serve connections to its VIPs (it may hold none of them)?"""
        if not self.cfg.drain.preserve_connections:
            return False
        count = self.connections([v.address for v in self.cfg.vips])
        if count:
            log.info("holding no VIP but serving %d connection(s) to them (a peer forwards them here)", count)
        return count > 0

    def _no_peer(self, args: DrainArgs, why: str) -> DrainOutcome:
        policy = self.cfg.drain.no_peer_policy
        if policy == "proceed":
            return DrainOutcome.proceeding(why, warning=(
                "vipdrain.drain.no_peer_policy is 'proceed': the VIP is lost when keepalived stops here "
                "(set it to 'fail' to stop the deploy instead)"))
        set_hold(self.layout, remove=(args.reason,))
        self.stop_announcing(self.layout)
        failure = RuntimeFailure(
            f"handoff failed: {why}. vipdrain.drain.no_peer_policy is 'fail': this VM keeps its VIPs "
            "and its normal priority (set the policy to 'proceed' to accept the downtime)"
        )
        log.error("%s", failure)  # in vipdrain.log too, which `bosh logs` collects
        raise failure


def drain_lock_busy(cfg: JobConfig, args: DrainArgs, why: str) -> DrainOutcome:
    """Another drain held the drain lock past `drain.timeout` (stopped: Ctrl-Z, SIGSTOP). Nothing
    was changed here; the hold and notices are the other drain's, not ours to lift.

    BOSH (`proceed`): 0, so BOSH stops keepalived - which resigns as it stops (priority-0 advert),
    and the best backup takes the VIP: the unverified handoff `proceed` accepts. BOSH (`fail`) and
    an operator's drain: a failure, this VM keeps its VIPs (an operator's maintenance was not put on).
    """
    if not args.manual and cfg.drain.no_peer_policy == "proceed":
        return DrainOutcome.proceeding(why, warning="vipdrain.drain.no_peer_policy is 'proceed': keepalived "
                                                    "resigns when BOSH stops it")
    raise RuntimeFailure(f"another drain holds the drain lock: {why}. "
                         + ("Maintenance is not on: resume or kill that drain and run `vipdrain drain` again"
                            if args.manual else "vipdrain.drain.no_peer_policy is 'fail': this VM keeps its VIPs"))
