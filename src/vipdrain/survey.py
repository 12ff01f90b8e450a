"""Who holds each VIP, seen from this VM: for `vipdrain status` and `vipdrain post-deploy`.

Backups are silent in VRRP, so a survey listens for masters' adverts and asks ARP who answers
for each IPv4 VIP (ARP still works when VRRP between VMs is cut, which is exactly when two
masters appear). Holders are told apart by MAC address.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vipdrain import keepalived, preserve, vrrp
from vipdrain.hold import Hold, read_hold
from vipdrain.layout import Layout
from vipdrain.model import IPAddress, JobConfig, Vip
from vipdrain.notify import Reader, Transition, find_readers, reader_problem, recent_transitions
from vipdrain.observe import Observer
from vipdrain.priority import effective_priority
from vipdrain.vrrp.timing import hear_every_master

log = logging.getLogger("vipdrain.survey")

#: `vrrp.who_has`: (interface, addresses, IPv4 sender, timeout) -> {address: MACs claiming it}.
NeighbourProbe = Callable[[str, list[IPAddress], IPAddress | None, float], dict[IPAddress, list[str]]]
#: How long the survey waits for ARP and neighbour discovery answers (same segment: microseconds).
PROBE_TIMEOUT = 0.2


@dataclass(frozen=True)
class Member:
    """A VM of the group as the survey names it: its instance address and BOSH name."""

    address: str
    name: str


@dataclass(frozen=True)
class Holder:
    """One machine that currently claims a VIP."""

    mac: str
    #: Its instance address (a configured peer or this VM, told by MAC); "" for a machine that
    #: is no member of the group.
    address: str
    how: str  # "here", "adverts at priority N", "ARP", "neighbour discovery"
    #: Its BOSH instance name (e.g. `haproxy/1`), "" when unknown.
    name: str = ""

    @property
    def label(self) -> str:
        """How an operator reads it: `haproxy/1 (192.0.2.11)`; a stranger by its MAC."""
        if not self.address:
            return f"a machine outside the group ({self.mac})"
        return f"{self.name} ({self.address})" if self.name else self.address


def members_by_mac(cfg: JobConfig, here_macs: dict[str, str], answers: dict[IPAddress, list[str]]) -> dict[str, Member]:
    """MAC -> group member: this VM's interfaces, and every configured peer that answered ARP or
    neighbour discovery for its own address with exactly one MAC (pure)."""
    me = Member(str(cfg.instance.ip), f"{cfg.instance.name}/{cfg.instance.index}")
    out = {mac: me for mac in here_macs.values()}
    for peer in cfg.peers:
        macs = answers.get(peer.address, [])
        if len(macs) == 1:
            name = f"{cfg.instance.name}/{peer.index}" if peer.index is not None else ""
            out.setdefault(macs[0], Member(str(peer.address), name))
    return out


@dataclass
class VipSurvey:
    vip: Vip
    local: bool
    #: keepalived's last report (a hint: stale when its notify reader is dead).
    state: str | None
    holders: list[Holder] = field(default_factory=list)
    #: Peers heard advertising this VRID during the survey: address -> priority.
    peers_heard: dict[str, int] = field(default_factory=dict)
    #: Is this VM master, as observed (`verdicts.master_here`); None: keepalived's report only.
    master_here: bool | None = None
    #: Why `master_here` is what it is.
    here: str = ""
    #: "keepalived not running" / "keepalived stopped" when it is (`keepalived_down`), else None.
    down: str | None = None

    @property
    def seen_state(self) -> str:
        """This VM's role for this VIP as seen, keepalived's report where nothing contradicts it."""
        if self.down:
            return self.down
        if self.master_here is True:
            return "MASTER"
        if self.master_here is False and self.state in (None, "MASTER"):
            return "not master"
        return self.state or "unknown"

    @property
    def stale_report(self) -> str | None:
        """keepalived's last report contradicted by what is seen, in a sentence (or None)."""
        seen = self.seen_state
        if self.state is None or self.master_here is None or (self.state == "MASTER") == (seen == "MASTER"):
            return None
        return f"keepalived last reported {self.vip.name} as {self.state} here, but {self.here}"

    @property
    def verdict(self) -> str:
        n = len(self.holders)
        return "ok" if n == 1 else ("unowned" if n == 0 else "split brain")


@dataclass
class Survey:
    vips: list[VipSurvey]
    hold: Hold
    base_priority: int
    effective_priority: int
    transitions: list[Transition]
    #: VIP -> MAC: the VIPs whose old connections this VM sends back to a drained peer right now.
    forwarding: dict[str, str] = field(default_factory=dict)
    #: Why this VM's keepalived is not heard (not running, stopped), or None.
    keepalived_problem: str | None = None
    #: Why keepalived's reports are not recorded here (`notify.reader_problem`), or None.
    reader_problem: str | None = None
    #: Configured peers (as `haproxy/1 (192.0.2.11)`) no advert was heard from on any VIP.
    not_heard: list[str] = field(default_factory=list)
    #: Why BOSH drains would not start warm here (`warm.server.server_note`), or None. A note,
    #: not a problem: the drain works without the server.
    drain_server_note: str | None = None

    @property
    def problems(self) -> list[str]:
        """Sentences about VIPs with no holder or more than one, and about this VM's keepalived."""
        out = [p for p in (self.keepalived_problem, self.reader_problem) if p]
        for s in self.vips:
            if s.verdict == "unowned":
                out.append(f"{s.vip.name} ({s.vip.address}) has NO holder: clients get no answer")
            elif s.verdict == "split brain":
                who = ", ".join(f"{h.label} [{h.mac}] ({h.how})" for h in s.holders)
                out.append(f"SPLIT BRAIN: {s.vip.name} ({s.vip.address}) is held by {len(s.holders)} VMs: {who}")
        return out


def take_survey(
    cfg: JobConfig,
    layout: Layout,
    observer: Observer,
    listen: float,
    probe: NeighbourProbe = vrrp.who_has,
    mac_of: Callable[[str], str] = vrrp.local_mac,
    forwarding: Callable[[JobConfig], dict[str, str]] = preserve.forwarding_now,
    readers: Callable[[Layout], list[Reader]] = find_readers,
    process_states: Callable[[Layout], dict[str, str | None]] = keepalived.process_states,
    clock: Callable[[], float] = time.monotonic,
) -> Survey:
    """Listen `listen` seconds for adverts, ask who has each VIP (ARP, IPv6 neighbour
    discovery), and put together who holds what, every holder named by its VM.
    The keyword arguments after `listen` are the survey's effects (unit tests replace them)."""
    observer.collect(listen)
    states = process_states(layout)
    ka_problem, down = keepalived_problem(states), keepalived_down(states)
    hold = read_hold(layout)
    holder_file_on = any(_holder_on(layout, v.name) for v in cfg.vips)
    own = effective_priority(cfg.priority, held=hold.active, holder=cfg.placement == "sticky" and holder_file_on)
    interfaces = sorted({v.interface for v in cfg.vips})
    here_macs = {i: mac_of(i) for i in interfaces}
    answers = _ask_who_has(cfg, interfaces, probe)
    members = members_by_mac(cfg, here_macs, {a: m for found in answers.values() for a, m in found.items()})
    now = clock()
    surveys = []
    for view in observer.views(own):
        vip = view.vip
        s = VipSurvey(vip=vip, local=view.local, state=view.state, master_here=view.master_here, here=view.here,
                      down=down)
        me = members[here_macs[vip.interface]]
        if view.local:
            s.holders.append(Holder(here_macs[vip.interface], me.address, "here", me.name))
        for src, adv in sorted(observer.sources.get((vip.virtual_router_id, vip.family), {}).items()):
            # IPv6 adverts come from link-local addresses: the MAC tells which member sent them.
            member = members.get(adv.mac, Member(str(src), ""))
            s.peers_heard[member.address] = adv.priority
            # A master advertises every advert_int; older than ~1.5 intervals means it stopped.
            recent = now - adv.seen_at <= hear_every_master(cfg.advert_int)
            if recent and adv.priority > 0 and all(h.mac != adv.mac for h in s.holders):
                s.holders.append(Holder(adv.mac, member.address, f"adverts at priority {adv.priority}", member.name))
        how = "ARP" if vip.family == 4 else "neighbour discovery"
        for mac in answers.get(vip.interface, {}).get(vip.address, []):
            if all(h.mac != mac for h in s.holders):
                member = members.get(mac, Member("", ""))
                s.holders.append(Holder(mac, member.address, how, member.name))
        surveys.append(s)
    heard = {a for s in surveys for a in s.peers_heard}
    not_heard = [f"{cfg.instance.name}/{p.index} ({p.address})" if p.index is not None else str(p.address)
                 for p in cfg.peers if str(p.address) not in heard]
    return Survey(surveys, hold, cfg.priority, own, recent_transitions(layout), forwarding(cfg),
                  keepalived_problem=ka_problem,
                  reader_problem=reader_problem(ka_problem is None, readers(layout)), not_heard=not_heard)


def _ask_who_has(cfg: JobConfig, interfaces: list[str],
                 probe: NeighbourProbe) -> dict[str, dict[IPAddress, list[str]]]:
    """Per interface: who answers for its VIPs and for every configured peer's address (ARP for
    IPv4, neighbour solicitation for IPv6), in one round per interface."""
    sender = cfg.instance.ip if cfg.instance.ip.version == 4 else None
    out: dict[str, dict[IPAddress, list[str]]] = {}
    for interface in interfaces:
        targets = [v.address for v in cfg.vips if v.interface == interface]
        targets += [p.address for p in cfg.peers if p.address not in targets]
        targets = [t for t in targets if t.version == 6 or sender is not None]
        try:
            out[interface] = probe(interface, targets, sender, PROBE_TIMEOUT)
        except (OSError, ValueError) as exc:
            log.warning("asking who has %s on %s failed: %s", ", ".join(map(str, targets)), interface, exc)
    return out


def keepalived_down(states: dict[str, str | None]) -> str | None:
    """A VM's role while its keepalived is gone or stopped, whatever it last reported (pure)."""
    if any(state is None for state in states.values()):
        return "keepalived not running"
    if any(state == "T" for state in states.values()):
        return "keepalived stopped"
    return None


def keepalived_problem(states: dict[str, str | None]) -> str | None:
    """Why this VM's keepalived is not heard, from its processes' /proc states (pure).

    `states` maps "parent"/"vrrp" to a state letter, None for no such process. A stopped
    (SIGSTOP) keepalived is alive to `kill -0` yet silent on the wire: as good as dead.
    """
    missing = [role for role, state in states.items() if state is None]
    if missing:
        return (f"keepalived is not running here ({' and '.join(missing)} process gone): this VM is silent "
                "on the wire and cannot take over any VIP")
    stopped = [role for role, state in states.items() if state == "T"]
    if stopped:
        return (f"keepalived is stopped here ({' and '.join(stopped)} process in state T): this VM is silent "
                "on the wire and cannot take over any VIP")
    return None


def bootstrap_address(cfg: JobConfig) -> IPAddress | None:
    """The preferred holder's address under `placement: preferred`."""
    if cfg.instance.bootstrap:
        return cfg.instance.ip
    return next((p.address for p in cfg.peers if p.bootstrap), None)


def placement_problems(cfg: JobConfig, survey: Survey) -> list[str]:
    """Under `preferred`, the bootstrap VM should hold every VIP once the deploy is over."""
    if cfg.placement != "preferred":
        return []
    want = bootstrap_address(cfg)
    if want is None:
        return ["no bootstrap instance known: cannot check preferred placement"]
    out = []
    for s in survey.vips:
        if s.verdict == "ok" and s.holders[0].address not in (str(want), ""):
            out.append(f"{s.vip.name} is held by {s.holders[0].label}, not by the bootstrap VM {want}")
    return out


def _holder_on(layout: Layout, name: str) -> bool:
    try:
        return layout.holder_track_file(name).read_text().strip() == "1"
    except FileNotFoundError:
        return False


def survey_dict(cfg: JobConfig, survey: Survey) -> dict[str, object]:
    """`vipdrain status --json`."""
    return {
        "instance": {"name": cfg.instance.name, "index": cfg.instance.index, "ip": str(cfg.instance.ip)},
        "placement": cfg.placement,
        "priority": {"base": survey.base_priority, "effective": survey.effective_priority},
        "maintenance": "maintenance" in survey.hold.since,
        "hold_reasons": survey.hold.reasons,
        "vips": [
            {
                "name": s.vip.name,
                "address": str(s.vip.address),
                "vrid": s.vip.virtual_router_id,
                "interface": s.vip.interface,
                "local_state": s.seen_state,
                "reported_state": s.state,
                "held_here": s.local,
                "holders": [h.__dict__ for h in s.holders],
                "peers_heard": s.peers_heard,
                "verdict": s.verdict,
            }
            for s in survey.vips
        ],
        "forwarding": survey.forwarding,
        "keepalived_running_here": survey.keepalived_problem is None,
        "peers_not_heard": survey.not_heard,
        "drain_server_note": survey.drain_server_note,
        "last_transitions": [t.__dict__ for t in survey.transitions],
        "problems": survey.problems,
        "warnings": list(survey.hold.warnings),
    }


def format_survey(cfg: JobConfig, survey: Survey) -> str:
    """One screen for an operator: `vipdrain status` and post-deploy's summary."""
    lines = [
        f"{cfg.instance.name}/{cfg.instance.index} ({cfg.instance.ip})  placement {cfg.placement}  "
        f"priority {survey.base_priority} -> {survey.effective_priority}"
        + (f"  HELD ({', '.join(survey.hold.reasons)})" if survey.hold.active else ""),
    ]
    for s in survey.vips:
        holders = ", ".join(f"{h.label} ({h.how})" for h in s.holders) or "nobody"
        heard = ", ".join(f"{a}@{p}" for a, p in s.peers_heard.items()) or "none"
        lines.append(
            f"  {s.vip.name} {s.vip.address} vrid {s.vip.virtual_router_id} on {s.vip.interface}: "
            f"here {s.seen_state}{' (holds it)' if s.local else ''}; holder {holders}; "
            f"peers heard {heard} [{s.verdict}]"
        )
        if s.stale_report:
            lines.append(f"    ({s.stale_report})")
    if survey.not_heard:
        lines.append(f"  not heard on the wire: {', '.join(survey.not_heard)} (VRRP backups are silent; a member "
                     "whose keepalived is not running is too, and its own status and post-deploy fail)")
    for vip, mac in sorted(survey.forwarding.items()):
        lines.append(f"  forwarding the old connections of {vip} to {mac} (vipdrain.drain.preserve_connections)")
    if survey.drain_server_note:
        lines.append(f"  note: {survey.drain_server_note}")
    for t in survey.transitions[-5:]:
        lines.append(f"  {time.strftime('%H:%M:%S', time.localtime(t.time))} {t.instance} -> {t.state} ({t.priority})")
    lines.extend(f"  ! {p}" for p in survey.problems)
    lines.extend(f"  ! {w}" for w in survey.hold.warnings)
    return "\n".join(lines)
