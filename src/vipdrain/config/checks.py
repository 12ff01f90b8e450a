"""The job's rendered config file -> a validated `JobConfig`, with every problem reported at once.

The file BOSH renders holds three sections:

    properties: {keepalived: {...}, vipdrain: {...}}   # the job's properties (see vipdrain.schema)
    spec: {name, index, id, bootstrap, ip, az, deployment}
    links: {keepalived: {instances: [{address, index, bootstrap, id}, ...]}}

Validation never stops at the first mistake: each one becomes a `Problem(path, value, message)`
and `ConfigInvalid` carries them all. A value that is wrong is replaced by its default while the
rest is checked, and checks that combine several properties only run when those are valid, so
one mistake gives one problem. Pure, except for the interface lookup behind `interface: auto`,
which is injected (`vipdrain.netstate.interface_of` by default).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from vipdrain.errors import MISSING, ConfigInvalid, Problem
from vipdrain.model import (
    DrainSettings,
    Garp,
    HaproxySettings,
    HealthCheck,
    InstanceSpec,
    IPAddress,
    JobConfig,
    MetricsSettings,
    NotificationEmail,
    NotifyHooks,
    Peer,
    Placement,
    Vip,
)
from vipdrain.priority import base_priority
from vipdrain.probe import parse_probe
from vipdrain.render import MAX_LINE_BYTES, split_smtp_server, unsafe_character
from vipdrain.config.schema import BY_NAME, NO_DEFAULT, TYPE_WORDS, describe, has_type, static_problem

InterfaceLookup = Callable[[IPAddress], str | None]

SECTIONS = ("properties", "spec", "links")
LINK = "keepalived"
#: Longest operator command or extra line: rendered lines must stay within keepalived's limit
#: (MAX_LINE_BYTES) including indentation and keyword.
MAX_COMMAND_BYTES = MAX_LINE_BYTES - 100
INTERFACE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,15}")
#: BOSH instance group names; rendered unquoted as keepalived's router_id.
GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
EMAIL_ADDRESS = re.compile(r"[A-Za-z0-9._%+=-]+@[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
#: auth_pass is rendered unquoted, so no spaces, quotes or comment characters.
PASSWORD = re.compile(r"[A-Za-z0-9._+=:,%@^*/~-]+")
MAX_PASSWORD = 8
EXTRA_KEYWORD = re.compile(r"[a-z][a-z0-9_]*")
#: haproxy's pid file becomes one word of the health-check command.
ABSOLUTE_PATH = re.compile(r"/[A-Za-z0-9_.+@%=,:~/-]*")
VIP_KEYS = ("address", "virtual_router_id", "interface")

#: Properties of haproxy-boshrelease's keepalived job (jobs/keepalived/spec, last changed in
#: 09a4539975acb92162e5414b1819457e9b6cb5e7) that are not vipdrain's own names, with their type
#: and what each one set tells the operator (one warning, naming the vipdrain property to use).
#: keepalived.vip, interface and virtual_router_id are vipdrain properties with the same meaning.
LEGACY = {
    "keepalived.healthcheck_command": "haproxy-boshrelease's name, used as keepalived.healthcheck.command "
    "(exit 0 = healthy; a failing check puts this VM in FAULT; its default, killall -0 haproxy, keeps "
    "vipdrain's own check, which covers it): set keepalived.healthcheck.command instead",
    "keepalived.healthcheck_name": "is ignored (haproxy-boshrelease's label of its check; vipdrain's check is "
    "vipdrain_healthcheck, run as keepalived.healthcheck.command says): remove it",
    "keepalived.dont_track_primary": "haproxy-boshrelease's name; true adds keepalived's dont_track_primary to "
    "every VRRP instance: set keepalived.extra.vrrp_instance: [dont_track_primary] instead",
}
LEGACY_TYPES = {
    "keepalived.healthcheck_command": "string",
    "keepalived.healthcheck_name": "string",
    "keepalived.dont_track_primary": "boolean",
}
#: haproxy-boshrelease's default health check: whether some haproxy process lives. vipdrain's
#: own probe checks that (haproxy's pid file names a live process) and that the frontend accepts
#: a connection, so a manifest that spells this default out keeps the probe.
LEGACY_DEFAULT_CHECK = "killall -0 haproxy"

#: global_defs keywords the escape hatch may not set, and why.
MANAGED_GLOBAL = {
    "router_id": "vipdrain sets it from spec.name and spec.index",
    "script_user": "vipdrain runs every script as root",
    "enable_script_security": "vipdrain always enables it",
    "vrrp_version": "set keepalived.vrrp_version",
    "vrrp_garp_master_delay": "set keepalived.garp.master_delay",
    "vrrp_garp_master_repeat": "set keepalived.garp.master_repeat",
    "vrrp_garp_master_refresh": "set keepalived.garp.master_refresh",
    "vrrp_garp_lower_prio_repeat": "it follows keepalived.garp.master_repeat, so a master that hears a "
    "lower-priority master after a split brain re-announces the VIP",
    "vrrp_garp_lower_prio_delay": "it follows keepalived.garp.master_delay",
    "vrrp_higher_prio_send_advert": "a master that hears a higher priority must send one last advert, so "
    "the new master re-announces the VIP after a split brain",
    "vrrp_notify_fifo": "vipdrain reads every VRRP transition from its own FIFO",
    "vrrp_notify_fifo_script": "vipdrain reads every VRRP transition from its own FIFO",
    "vrrp_mcast_group4": "set keepalived.multicast_group.ipv4",
    "vrrp_mcast_group6": "set keepalived.multicast_group.ipv6",
    "notification_email": "set keepalived.notification_email.to",
    "notification_email_from": "set keepalived.notification_email.from",
    "smtp_server": "set keepalived.notification_email.smtp_server",
    "smtp_connect_timeout": "set keepalived.notification_email.smtp_connect_timeout",
    "vrrp_strict": "it implies no_accept: the VIP would not accept haproxy's traffic",
    "net_namespace": "vipdrain runs keepalived in the VM's own network namespace",
    "instance": "vipdrain names keepalived's pid files on its command line",
    "use_pid_dir": "vipdrain names keepalived's pid files on its command line",
}

#: vrrp_instance keywords the escape hatch may not set, and why (any `notify*` and `track_*` is
#: refused too).
MANAGED_INSTANCE = {
    "state": "every instance starts BACKUP and the election picks the master",
    "priority": "vipdrain derives it from spec.bootstrap, spec.index and vipdrain.placement",
    "nopreempt": "a non-preempting master never yields to a higher priority, so drain could not "
    "hand the VIP over (vipdrain.placement: sticky keeps the VIP where it is instead)",
    "preempt": "preemption is always on",
    "preempt_delay": "it delays every handoff, including a drain's",
    "virtual_router_id": "set keepalived.virtual_router_id or a VIP's virtual_router_id",
    "interface": "set keepalived.interface or a VIP's interface",
    "virtual_ipaddress": "set keepalived.vip or keepalived.vips",
    "track_file": "vipdrain tracks its hold (and sticky holder) files",
    "track_script": "vipdrain tracks its health check: set keepalived.healthcheck.command",
    "version": "set keepalived.vrrp_version",
    "advert_int": "set keepalived.advert_int",
    "authentication": "set keepalived.authentication",
    "mcast_src_ip": "set keepalived.source_address",
    "unicast_src_ip": "set keepalived.source_address",
    "unicast_peer": "set keepalived.unicast and keepalived.unicast_peers",
    "garp_master_delay": "set keepalived.garp.master_delay",
    "garp_master_repeat": "set keepalived.garp.master_repeat",
    "garp_master_refresh": "set keepalived.garp.master_refresh",
    "smtp_alert": "it follows keepalived.notification_email.to",
    "strict_mode": "it implies no_accept: the VIP would not accept haproxy's traffic",
    "no_accept": "the VIP would not accept haproxy's traffic",
}

#: Keywords that open a block in keepalived 2.2.7 (keepalived/vrrp/vrrp_parser.c: handlers that
#: read a value block, and the `authentication` sublevel; keepalived/core/global_parser.c:
#: notification_email). Written bare on an extra line, such a keyword takes the lines after it,
#: up to the enclosing block's closing brace, as its own block: `keepalived -t` still passes.
BLOCK_KEYWORDS = {
    "global_defs": frozenset({"notification_email"}),
    "vrrp_instance": frozenset({
        "unicast_peer", "track_interface", "track_script", "track_file", "track_process", "track_bfd",
        "virtual_ipaddress", "virtual_ipaddress_excluded", "virtual_routes", "virtual_rules", "authentication",
    }),
}
#: Prefixes of vrrp_instance keywords that are vipdrain's alone, and why.
MANAGED_INSTANCE_PREFIXES = {
    "notify": "set keepalived.notify.* (vipdrain's own notify hook must stay)",
    "track_": "what decides this VM's fitness is vipdrain's health check (keepalived.healthcheck.command) "
    "and its hold; another tracked object would put the VM in FAULT or change its priority behind the drain",
}

#: Every proper prefix of a property name (`keepalived`, `keepalived.healthcheck`, ...).
_PREFIXES = {name.rsplit(".", i)[0] for name in BY_NAME for i in range(1, name.count(".") + 1)}


def load_config(path: str | Path, *, interface_of: InterfaceLookup | None = None) -> JobConfig:
    """Read the job's rendered config (YAML, or JSON for a `.json` file) and validate it.

    An unreadable or unparseable file is a `ConfigInvalid` with one problem naming the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigInvalid([Problem(str(path), MISSING, f"cannot be read: {exc.strerror or exc}")]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigInvalid([Problem(str(path), MISSING, f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at "
                                     f"offset {exc.start})")]) from exc
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigInvalid([Problem(str(path), MISSING, f"is not valid {kind}: {_parse_error(exc)}")]) from exc
    except RecursionError as exc:
        raise _too_deep(path, kind) from exc
    try:
        return parse_config(doc if doc is not None else {}, interface_of=interface_of)
    except RecursionError as exc:
        raise _too_deep(path, kind) from exc


def _too_deep(path: Path, kind: str) -> ConfigInvalid:
    # The parsers (and the checks) recurse per level: a document nested thousands deep is no
    # job config, and must not end in a traceback.
    return ConfigInvalid([Problem(str(path), MISSING, f"is nested too deeply to be a job config ({kind} "
                                  "nesting beyond Python's recursion limit)")])


def _parse_error(exc: Exception) -> str:
    """One line: what the parser expected and where."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def parse_config(doc: Mapping[str, Any], *, interface_of: InterfaceLookup | None = None) -> JobConfig:
    """Validate the rendered document; raise `ConfigInvalid` listing every problem found."""
    report = _Report()
    if not isinstance(doc, Mapping):
        report.add("(config)", doc, f"must be a map with the sections {', '.join(SECTIONS)}")
        raise ConfigInvalid(report.problems)
    for key in doc:
        if key not in SECTIONS:
            report.add(str(key), doc[key], f"is not a known section (expected {', '.join(SECTIONS)})")
    legacy: dict[str, Any] = {}
    props = _Props(_flatten(doc.get("properties"), report, legacy), report)
    spec = _parse_spec(doc.get("spec"), report)
    link_peers = _parse_link(doc.get("links"), spec, report)
    cfg = _build(props, spec, link_peers, interface_of, report, legacy)
    if cfg is None or report.problems:
        raise ConfigInvalid(report.problems)
    return cfg


# --- collecting problems ----------------------------------------------------------------------


class _Report:
    """Problems found so far, in the order found."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, value: Any, message: str) -> None:
        self.problems.append(Problem(path, value, message))


class _Props:
    """Property values by dotted name: given values type-checked against the schema, defaults
    for the rest. A rejected value reads as its default, and `ok()` says whether it was valid."""

    def __init__(self, given: dict[str, Any], report: _Report) -> None:
        self._given = given
        self._bad: set[str] = set()
        self.report = report
        for name, value in given.items():
            why = static_problem(BY_NAME[name], value)
            if why:
                self.reject(name, value, why)

    def is_set(self, name: str) -> bool:
        return name in self._given and name not in self._bad

    def get(self, name: str) -> Any:
        if self.is_set(name):
            return self._given[name]
        default = BY_NAME[name].default
        return None if default is NO_DEFAULT else default

    def ok(self, *names: str) -> bool:
        return not self._bad.intersection(names)

    def reject(self, name: str, value: Any, message: str) -> None:
        self._bad.add(name)
        self.report.add(name, value, message)

    def reject_item(self, name: str, path: str, value: Any, message: str) -> None:
        """A problem with one element of property `name` (a list entry or map key at `path`)."""
        self._bad.add(name)
        self.report.add(path, value, message)

    def problem_count(self) -> int:
        return len(self.report.problems)

    def integer(self, name: str) -> int:
        """An integer property; its type and limits were checked against the schema."""
        return int(self.get(name))

    def number(self, name: str) -> float:
        return float(self.get(name))

    def choice(self, name: str) -> str:
        return str(self.get(name))

    def command(self, name: str, absolute: bool = False) -> str:
        """An operator command, or "" when unset; `absolute`: its program must be an absolute path."""
        value = self.get(name) or ""
        reason = command_problem(value, absolute) if value else None
        if reason:
            self.reject(name, value, reason)
            return ""
        return value


# --- properties: names ------------------------------------------------------------------------


def _flatten(raw: Any, report: _Report, legacy: dict[str, Any]) -> dict[str, Any]:
    """Nested (or dotted) property maps -> {dotted name: value}; unknown names are problems.

    null, and "" for an optional string without default, mean "not set" and are left out.
    haproxy-boshrelease's names (LEGACY) that are set go to `legacy` instead.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        report.add("properties", raw, "must be a map of the job's properties (keepalived, vipdrain)")
        return {}
    out: dict[str, Any] = {}
    _walk(raw, "", out, report, legacy)
    return out


def _walk(node: Mapping[Any, Any], prefix: str, out: dict[str, Any], report: _Report,
          legacy: dict[str, Any]) -> None:
    for key, value in node.items():
        name = f"{prefix}{key}"
        if name in LEGACY:
            if value is not None:
                legacy[name] = value
        elif name in BY_NAME:
            if value is not None and not (value == "" and BY_NAME[name].type == "string"
                                          and not BY_NAME[name].has_default):
                out[name] = value
        elif name in _PREFIXES:
            if isinstance(value, Mapping):
                _walk(value, f"{name}.", out, report, legacy)
            elif value is not None:
                report.add(name, value, f"must be a map with the keys {', '.join(_children(name))}")
        else:
            report.add(name, value, unknown_property_message(name))


def _children(prefix: str) -> list[str]:
    return sorted({n[len(prefix) + 1 :].split(".", 1)[0] for n in BY_NAME if n.startswith(prefix + ".")})


def unknown_property_message(name: str) -> str:
    """`is not a known property (did you mean ...?)`."""
    close = difflib.get_close_matches(name, [*BY_NAME, *_PREFIXES], n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"is not a known property{hint}"


# --- checks of single values --------------------------------------------------------------------


def command_problem(text: str, absolute: bool = False) -> str | None:
    """Why `text` cannot be a keepalived script/notify command, or None.

    Commands run without a shell; single quotes may group an argument with spaces. With
    `absolute`, the first word must be an absolute path (of ABSOLUTE_PATH's characters): keepalived
    would otherwise look the program up in its PATH as root.
    """
    if not text.strip():
        return "is blank"
    reason = unsafe_character(text, allowed="'")
    if reason:
        return reason
    if absolute and not ABSOLUTE_PATH.fullmatch(text.split()[0]):
        return ("must start with the absolute path of the program (/ followed by A-Z a-z 0-9 and "
                "_ . + @ % = , : ~ / -), then its arguments")
    if text.count("'") % 2:
        return "has an unbalanced single quote"
    if len(text.encode()) > MAX_COMMAND_BYTES:
        return f"is longer than {MAX_COMMAND_BYTES} bytes (keepalived 2.2 crashes on long lines)"
    return None


def address_problem(value: Any, what: str = "an IP address") -> tuple[IPAddress | None, str | None]:
    """(address, None) for a single unicast address string, else (None, why not)."""
    if not isinstance(value, str):
        return None, f"must be {what} (a string), not {describe(value)}"
    if "/" in value:
        return None, f"must be {what} without a prefix length (a single host, not a network)"
    if "%" in value:
        return None, f"must be {what} without a zone index (%...)"
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        return None, f"is not {what}"
    for flag, kind in (
        ("is_unspecified", "the unspecified address"),
        ("is_multicast", "a multicast address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
    ):
        if getattr(addr, flag):
            return None, f"is {kind}; {what} must be a routable unicast address"
    if addr == ipaddress.IPv4Address("255.255.255.255"):
        return None, f"is the broadcast address; {what} must be a routable unicast address"
    return addr, None


def interface_problem(name: str) -> str | None:
    """Why `name` cannot be the interface of a VRRP instance, or None."""
    if not INTERFACE_NAME.fullmatch(name) or name in (".", ".."):
        return "is not a Linux interface name (1..15 of A-Z a-z 0-9 _ . : -) or auto"
    if name == "lo":
        return "is the loopback interface; keepalived cannot run VRRP on it"
    return None


def extra_line_problem(line: Any, managed: Mapping[str, str], block: str) -> str | None:
    """Why `line` cannot go into `block` through the escape hatch, or None."""
    if not isinstance(line, str):
        return f"must be a string `keyword value...`, not {describe(line)}"
    reason = unsafe_character(line, allowed="\"'")
    if reason:
        return reason
    if line.count('"') % 2 or line.count("'") % 2:
        return "has an unbalanced quote"
    words = line.split()
    if not words:
        return "is blank"
    keyword = words[0]
    if not EXTRA_KEYWORD.fullmatch(keyword):
        return f"must start with a keepalived keyword (a-z, 0-9, _), not {keyword!r}"
    if keyword.startswith("include"):
        return "would include another file; keepalived.conf stays self-contained"
    why = managed.get(keyword)
    if why is None and block == "vrrp_instance":
        why = next((w for prefix, w in MANAGED_INSTANCE_PREFIXES.items() if keyword.startswith(prefix)), None)
    if why:
        return f"sets {keyword}, which vipdrain manages in {block}: {why}"
    if keyword in BLOCK_KEYWORDS.get(block, ()):
        return (f"opens a {keyword} block, which would take the closing brace of {block} as its own: "
                "blocks cannot be added through the escape hatch")
    if len(line.encode()) > MAX_COMMAND_BYTES:
        return f"is longer than {MAX_COMMAND_BYTES} bytes (keepalived 2.2 crashes on long lines)"
    return None


# --- spec and link ----------------------------------------------------------------------------


def _parse_spec(raw: Any, report: _Report) -> InstanceSpec | None:
    if not isinstance(raw, Mapping):
        if raw is None:
            report.add("spec", MISSING, "is required: the BOSH instance (name, index, id, bootstrap, ip)")
        else:
            report.add("spec", raw, "must be a map (name, index, id, bootstrap, ip)")
        return None
    before = len(report.problems)

    def field(key: str, expected: str, missing: str) -> Any:
        value = raw.get(key)
        if value is None:
            report.add(f"spec.{key}", MISSING, f"is required: {missing}")
        elif not has_type(value, expected):
            report.add(f"spec.{key}", value, f"must be {TYPE_WORDS[expected]}, not {describe(value)}")
        else:
            return value
        return None

    name = field("name", "string", "the instance group's name")
    if name is not None and not GROUP_NAME.fullmatch(name):
        report.add("spec.name", name, "must be an instance group name (A-Z a-z 0-9 _ . -, at most 63)")
    index = field("index", "integer", "the instance's index")
    if index is not None and index < 0:
        report.add("spec.index", index, "must not be negative")
    instance_id = field("id", "string", "the instance's id")
    bootstrap = field("bootstrap", "boolean", "whether this is the group's bootstrap instance")
    raw_ip = field("ip", "string", "the instance's IP address")
    ip = None
    if raw_ip is not None:
        ip, why = address_problem(raw_ip)
        if why:
            report.add("spec.ip", raw_ip, why)
    extras = {}
    for key in ("az", "deployment"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            report.add(f"spec.{key}", value, f"must be a string, not {describe(value)}")
        extras[key] = value if isinstance(value, str) else ""
    if len(report.problems) > before or ip is None:
        return None
    return InstanceSpec(name=name, index=index, id=instance_id, bootstrap=bootstrap, ip=ip, **extras)


def _parse_link(raw: Any, spec: InstanceSpec | None, report: _Report) -> list[Peer]:
    """The other instances of the group, from the `keepalived` link (this instance left out)."""
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        report.add("links", raw, "must be a map of link name to link data")
        return []
    link = raw.get(LINK)
    if link is None:
        return []
    instances = link.get("instances") if isinstance(link, Mapping) else None
    if not isinstance(instances, list):
        report.add(f"links.{LINK}.instances", instances if instances is not None else MISSING,
                   "must be a list of the group's instances (address, index, bootstrap, id)")
        return []
    peers = []
    for i, entry in enumerate(instances):
        peer = _parse_link_instance(f"links.{LINK}.instances[{i}]", entry, report)
        if peer is not None and not (spec is not None and _is_self(peer, spec)):
            peers.append(peer)
    return peers


def _parse_link_instance(path: str, entry: Any, report: _Report) -> Peer | None:
    if not isinstance(entry, Mapping):
        report.add(path, entry, "must be a map (address, index, bootstrap, id)")
        return None
    raw_address = entry.get("address")
    address, why = address_problem(raw_address) if raw_address is not None else (None, None)
    if raw_address is None:
        report.add(f"{path}.address", MISSING, "is required: the instance's IP address")
    elif why:
        hint = " (with use_dns_addresses, set keepalived.unicast_peers to IP addresses)"
        report.add(f"{path}.address", raw_address, why + hint)
    index, bootstrap, peer_id = entry.get("index"), entry.get("bootstrap", False), entry.get("id", "")
    if index is not None and not has_type(index, "integer"):
        report.add(f"{path}.index", index, f"must be a whole number, not {describe(index)}")
        index = None
    if not isinstance(bootstrap, bool):
        report.add(f"{path}.bootstrap", bootstrap, f"must be a boolean, not {describe(bootstrap)}")
    if not isinstance(peer_id, str):
        report.add(f"{path}.id", peer_id, f"must be a string, not {describe(peer_id)}")
    if address is None or not isinstance(bootstrap, bool) or not isinstance(peer_id, str):
        return None
    return Peer(address=address, index=index, bootstrap=bootstrap, id=peer_id)


def _is_self(peer: Peer, spec: InstanceSpec) -> bool:
    if peer.id and spec.id:
        return peer.id == spec.id
    return peer.address == spec.ip


# --- assembling the JobConfig -------------------------------------------------------------------


@dataclass(frozen=True)
class _VipEntry:
    """One VIP as given, before its VRID and interface are resolved."""

    #: Where it was given: `keepalived.vip` or `keepalived.vips[N]`.
    path: str
    position: int
    address: IPAddress
    virtual_router_id: int | None = None
    interface: str | None = None


def _build(
    props: _Props,
    spec: InstanceSpec | None,
    link_peers: list[Peer],
    interface_of: InterfaceLookup | None,
    report: _Report,
    legacy: Mapping[str, Any],
) -> JobConfig | None:
    version = props.integer("keepalived.vrrp_version")
    advert_int = _advert_int(props, version)
    chosen = props.choice("vipdrain.placement")
    placement: Placement = "sticky" if chosen == "sticky" else "preferred"
    unicast = bool(props.get("keepalived.unicast"))
    peers = _peers(props, link_peers, spec)
    resolved = _resolve_vips(props, _vip_entries(props), spec, interface_of)
    vips = tuple(vip for _, vip in resolved)
    _check_vips(props, resolved, spec, [*peers, *link_peers], version)
    source = _source_address(props, vips)
    if unicast and props.ok("keepalived.unicast_peers"):
        _check_unicast_peers(props, resolved, peers)
    authentication = _authentication(props, version)
    group_v4, group_v6 = _multicast_groups(props)
    healthcheck = _healthcheck(props)
    warnings, legacy_command, dont_track_primary = _legacy(props, legacy, healthcheck.command)
    if legacy_command:
        healthcheck = replace(healthcheck, command=legacy_command)
    garp = Garp(
        master_delay=props.integer("keepalived.garp.master_delay"),
        master_repeat=props.integer("keepalived.garp.master_repeat"),
        master_refresh=props.integer("keepalived.garp.master_refresh"),
    )
    email = _notification_email(props)
    notify = NotifyHooks(
        master=props.command("keepalived.notify.master", absolute=True),
        backup=props.command("keepalived.notify.backup", absolute=True),
        fault=props.command("keepalived.notify.fault", absolute=True),
        stop=props.command("keepalived.notify.stop", absolute=True),
    )
    extra_global = _extra_lines(props, "keepalived.extra.global_defs", MANAGED_GLOBAL, "global_defs")
    extra_instance = _extra_lines(props, "keepalived.extra.vrrp_instance", MANAGED_INSTANCE, "vrrp_instance")
    if dont_track_primary and "dont_track_primary" not in extra_instance:
        extra_instance += ("dont_track_primary",)
    drain, haproxy, metrics = _drain(props), _haproxy(props), _metrics(props)
    if spec is None or not vips or report.problems:
        return None
    return JobConfig(
        instance=spec,
        vips=vips,
        vrrp_version=version,
        advert_int=advert_int,
        placement=placement,
        # The whole group ranks the instances, even when adverts go to a hand-written peer list.
        priority=base_priority(spec, link_peers or peers, placement),
        healthcheck=healthcheck,
        unicast=unicast,
        peers=tuple(peers),
        multicast_group_v4=group_v4,
        multicast_group_v6=group_v6,
        source_address=source or spec.ip,
        authentication=authentication,
        garp=garp,
        notification_email=email,
        notify=notify,
        extra_global_defs=extra_global,
        extra_instance_options=extra_instance,
        drain=drain,
        haproxy=haproxy,
        warnings=tuple(warnings),
        metrics=metrics,
    )


def _advert_int(props: _Props, version: int) -> float:
    name = "keepalived.advert_int"
    value = props.get(name)
    if not props.is_set(name):
        return float(value)
    if version == 2 and not (float(value).is_integer() and 1 <= value <= 255):
        props.reject(name, value, "must be whole seconds 1..255 with VRRP version 2")
    elif version == 3 and not 0.01 <= value <= 40.95:
        props.reject(name, value, "is out of range 0.01..40.95 (seconds, VRRPv3)")
    elif version == 3 and abs(value * 100 - round(value * 100)) > 1e-6:
        props.reject(name, value, "must be a multiple of 0.01 seconds (VRRPv3 counts centiseconds)")
    else:
        return float(value)
    return float(BY_NAME[name].default)


def _peers(props: _Props, link_peers: list[Peer], spec: InstanceSpec | None) -> list[Peer]:
    """`keepalived.unicast_peers` (enriched with the link's index/bootstrap) or the link's peers."""
    name = "keepalived.unicast_peers"
    raw = props.get(name)
    if not props.is_set(name) or not raw:
        return link_peers
    from_link = {p.address: p for p in link_peers}
    peers: list[Peer] = []
    seen: set[IPAddress] = set()
    for i, value in enumerate(raw):
        addr, why = address_problem(value)
        if addr is not None and addr in seen:
            why = "is listed twice"
        if why or addr is None:
            props.reject_item(name, f"{name}[{i}]", value, why or "is not an IP address")
            continue
        seen.add(addr)
        # The same list can serve every instance of the group: the own address is skipped.
        if spec is None or addr != spec.ip:
            peers.append(from_link.get(addr, Peer(address=addr)))
    return peers


def _vip_entries(props: _Props) -> list[_VipEntry]:
    one, many = "keepalived.vip", "keepalived.vips"
    if props.is_set(one) and props.is_set(many):
        props.reject(many, props.get(many), f"cannot be combined with {one}: give one of them")
        return []
    if props.is_set(one):
        addr, why = address_problem(props.get(one), "a VIP address")
        if why or addr is None:
            props.reject(one, props.get(one), why or "is not an IP address")
            return []
        return [_VipEntry(one, 0, addr)]
    if not props.is_set(many):
        if props.ok(one, many):
            props.report.add(one, MISSING, f"is required: the virtual IP address (or a list in {many})")
        return []
    raw = props.get(many)
    if not raw:
        props.reject(many, raw, "must list at least one VIP")
    return [e for i, item in enumerate(raw) if (e := _vip_entry(props, i, item)) is not None]


def _vip_entry(props: _Props, position: int, item: Any) -> _VipEntry | None:
    many = "keepalived.vips"
    path = f"{many}[{position}]"
    if isinstance(item, str):
        addr, why = address_problem(item, "a VIP address")
        if why or addr is None:
            props.reject_item(many, path, item, why or "is not an IP address")
            return None
        return _VipEntry(path, position, addr)
    if not isinstance(item, Mapping):
        props.reject_item(many, path, item, f"must be an address or a map with {', '.join(VIP_KEYS)}")
        return None
    before = props.problem_count()
    suggested = set()
    for key in item:
        if key not in VIP_KEYS:
            close = difflib.get_close_matches(str(key), VIP_KEYS, n=1)
            suggested.update(close)
            hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(VIP_KEYS)})"
            props.reject_item(many, f"{path}.{key}", item[key], f"is not a VIP key{hint}")
    raw_addr = item.get("address")
    addr, why = address_problem(raw_addr, "a VIP address") if raw_addr is not None else (None, None)
    # A misspelt `address` was reported just above; "address is required" would repeat it.
    if raw_addr is None and "address" not in suggested:
        props.reject_item(many, f"{path}.address", MISSING, "is required")
    elif why:
        props.reject_item(many, f"{path}.address", raw_addr, why)
    vrid = item.get("virtual_router_id")
    if vrid is not None and not (has_type(vrid, "integer") and 1 <= vrid <= 255):
        message = "is out of range 1..255" if has_type(vrid, "integer") else (
            f"must be a whole number, not {describe(vrid)}")
        props.reject_item(many, f"{path}.virtual_router_id", vrid, message)
    interface = item.get("interface")
    if interface is not None:
        why = f"must be a string, not {describe(interface)}" if not isinstance(interface, str) else (
            None if interface == "auto" else interface_problem(interface))
        if why:
            props.reject_item(many, f"{path}.interface", interface, why)
    if props.problem_count() > before or addr is None:
        return None
    return _VipEntry(path, position, addr, vrid, interface)


def _resolve_vips(
    props: _Props, entries: list[_VipEntry], spec: InstanceSpec | None, interface_of: InterfaceLookup | None
) -> list[tuple[_VipEntry, Vip]]:
    """VIPs with names, VRIDs and interface names (`auto` looked up once, from spec.ip)."""
    name = "keepalived.interface"
    default = props.get(name)
    why = interface_problem(default) if default != "auto" else None
    if why:
        props.reject(name, default, why)
    base = props.integer("keepalived.virtual_router_id")
    auto = _AutoInterface(props, spec, interface_of)
    resolved = []
    for entry in entries:
        if entry.interface:
            interface = auto.resolve(f"{entry.path}.interface") if entry.interface == "auto" else entry.interface
        else:
            interface = None if why else auto.resolve(name) if default == "auto" else default
        vrid = entry.virtual_router_id or base + entry.position
        if vrid > 255:
            if props.ok("keepalived.virtual_router_id"):
                props.report.add(entry.path, str(entry.address),
                                 f"gets virtual_router_id {vrid} (keepalived.virtual_router_id {base} + "
                                 f"position {entry.position}), above 255: give it its own virtual_router_id")
            continue
        # An unresolved interface ("", already reported) still lets the other VIP checks run.
        vip = Vip(name=f"vip_{entry.position + 1}", address=entry.address, virtual_router_id=vrid,
                  interface=interface or "")
        resolved.append((entry, vip))
    return resolved


class _AutoInterface:
    """`interface: auto`: the interface holding spec.ip, looked up (and any problem reported) once."""

    def __init__(self, props: _Props, spec: InstanceSpec | None, lookup: InterfaceLookup | None) -> None:
        self._props, self._spec, self._lookup = props, spec, lookup
        self._done = False
        self._found: str | None = None

    def resolve(self, path: str) -> str | None:
        if self._spec is None:  # spec.ip is missing or bad, which is reported already
            return None
        if not self._done:
            self._done = True
            found = _lookup_interface(self._lookup, self._spec.ip)
            why = interface_problem(found) if found is not None else None
            if found is None:
                self._props.report.add(path, "auto", f"found no local interface holding spec.ip "
                                       f"{self._spec.ip}: set the interface name")
            elif why:
                self._props.report.add(path, "auto", f"resolved to {found!r}, which {why}")
            else:
                self._found = found
        return self._found


def _lookup_interface(interface_of: InterfaceLookup | None, ip: IPAddress) -> str | None:
    if interface_of is None:
        from vipdrain.netstate import interface_of as default_lookup  # runs `ip`: only when needed

        return default_lookup(ip)
    return interface_of(ip)


def _check_vips(
    props: _Props,
    resolved: list[tuple[_VipEntry, Vip]],
    spec: InstanceSpec | None,
    peers: list[Peer],
    version: int,
) -> None:
    """Problems between VIPs and with the group's own addresses; each names the VIP's path."""
    first_at: dict[IPAddress, str] = {}
    vrid_owner: dict[tuple[str, int, int], Vip] = {}
    peer_at = {p.address: p for p in peers}
    vrids_known = props.ok("keepalived.virtual_router_id")
    for entry, vip in resolved:
        shown = str(vip.address)
        if vip.address in first_at:
            props.report.add(entry.path, shown, f"is listed twice (also {first_at[vip.address]})")
            continue
        first_at[vip.address] = entry.path
        if spec is not None and vip.address == spec.ip:
            props.report.add(entry.path, shown, "is this instance's own address (spec.ip); a VIP must be "
                             "an address no VM owns")
        elif vip.address in peer_at:
            props.report.add(entry.path, shown, f"is the address of a peer ({_peer_label(peer_at[vip.address])});"
                             " a VIP must be an address no VM owns")
        if vip.family == 6 and version == 2 and props.ok("keepalived.vrrp_version"):
            props.report.add(entry.path, shown, "is IPv6, which needs VRRP version 3 "
                             "(keepalived.vrrp_version is 2)")
        key = (vip.interface, vip.family, vip.virtual_router_id)
        if key in vrid_owner and vrids_known and vip.interface:
            other = vrid_owner[key]
            props.report.add(entry.path, shown, f"has virtual_router_id {vip.virtual_router_id}, already used "
                             f"by {other.name} ({other.address}) on {vip.interface} (IPv{vip.family}): "
                             "VRIDs must differ per interface and address family")
        vrid_owner.setdefault(key, vip)


def _peer_label(peer: Peer) -> str:
    return f"instance {peer.index}" if peer.index is not None else str(peer.address)


def _source_address(props: _Props, vips: tuple[Vip, ...]) -> IPAddress | None:
    name = "keepalived.source_address"
    value = props.get(name)
    if value is None:
        return None
    addr, why = address_problem(value)
    mismatch = next((v for v in vips if addr is not None and v.family != addr.version), None)
    if addr is not None and mismatch is not None:
        why = (f"is IPv{addr.version} but {mismatch.name} ({mismatch.address}) is IPv{mismatch.family}: one "
               "source address serves every VIP (leave it unset to mix address families)")
    elif addr is not None and any(v.address == addr for v in vips):
        why = "is one of the VIPs; adverts must come from the VM's own address"
    if why:
        props.reject(name, value, why)
        return None
    return addr


def _check_unicast_peers(props: _Props, resolved: list[tuple[_VipEntry, Vip]], peers: list[Peer]) -> None:
    if not peers:
        props.reject("keepalived.unicast", True, "needs peers: the keepalived link lists no other instance "
                     "and keepalived.unicast_peers is empty")
        return
    families = {p.address.version for p in peers}
    for entry, vip in resolved:
        if vip.family not in families:
            props.report.add(entry.path, str(vip.address), f"is IPv{vip.family} but no unicast peer is: "
                             f"list IPv{vip.family} peers in keepalived.unicast_peers")


def _authentication(props: _Props, version: int) -> str | None:
    name = "keepalived.authentication"
    value = props.get(name)
    if value is None:
        return None
    # The password is never echoed into problems (they end up in logs).
    if not PASSWORD.fullmatch(value):
        why = "may only hold A-Z a-z 0-9 and . _ + = : , % @ ^ * / ~ - (the value is not shown)"
    elif len(value) > MAX_PASSWORD:
        why = (f"is {len(value)} characters long; VRRPv2 PASS authentication allows 1..{MAX_PASSWORD} "
               "(the value is not shown)")
    elif version == 3 and props.ok("keepalived.vrrp_version"):
        why = "needs keepalived.vrrp_version: 2 (VRRPv3 has no authentication)"
    else:
        return value
    props.reject(name, MISSING, why)
    return None


def _multicast_groups(props: _Props) -> tuple[str, str]:
    groups = []
    for name, version in (("keepalived.multicast_group.ipv4", 4), ("keepalived.multicast_group.ipv6", 6)):
        value = props.get(name)
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            addr = None
        if addr is None or addr.version != version or not addr.is_multicast:
            props.reject(name, value, f"must be an IPv{version} multicast address")
        elif version == 6 and addr.packed[1] & 0x0F != 2:
            props.reject(name, value, "must be a link-local scope multicast address (ff02::/16 style)")
        else:
            groups.append(str(addr))
            continue
        groups.append(str(BY_NAME[name].default))
    return groups[0], groups[1]


def _healthcheck(props: _Props) -> HealthCheck:
    prefix = "keepalived.healthcheck"
    return HealthCheck(
        # "" selects vipdrain's probe; the renderer builds its command from the VM's layout.
        command=props.command(f"{prefix}.command"),
        interval=props.integer(f"{prefix}.interval"),
        timeout=props.integer(f"{prefix}.timeout"),
        fall=props.integer(f"{prefix}.fall"),
        rise=props.integer(f"{prefix}.rise"),
    )


def _legacy(props: _Props, legacy: Mapping[str, Any], command: str) -> tuple[list[str], str, bool]:
    """haproxy-boshrelease's properties set in `legacy`, with their meaning: (one warning per
    property, the health check command they ask for or "", whether to set dont_track_primary).
    `command` is keepalived.healthcheck.command as validated ("" = unset or rejected)."""
    warnings, custom, dont_track_primary = [], "", False
    for name, value in legacy.items():
        expected = LEGACY_TYPES[name]
        why = None if has_type(value, expected) else f"must be {TYPE_WORDS[expected]}, not {describe(value)}"
        advice = LEGACY[name]
        if why is None and name == "keepalived.healthcheck_command":
            why = command_problem(value)
            if why is None and command and value != command:
                why = (f"differs from keepalived.healthcheck.command ({command!r}): set only "
                       "keepalived.healthcheck.command")
            elif why is None and value == LEGACY_DEFAULT_CHECK and not command:
                advice = ("is haproxy-boshrelease's default check, which vipdrain's own check covers (haproxy's pid "
                          "file names a live process and its frontend accepts a connection): remove it, or set "
                          "keepalived.healthcheck.command for a check of your own")
            elif why is None:
                custom = value
        if why is None and name == "keepalived.dont_track_primary" and value is False:
            advice = ("false is haproxy-boshrelease's default and keepalived's: remove it "
                      "(keepalived.extra.vrrp_instance: [dont_track_primary] turns the option on)")
        if why:
            props.report.add(name, value, why)
            continue
        dont_track_primary = dont_track_primary or (name == "keepalived.dont_track_primary" and value)
        warnings.append(f"{name}: {advice}")
    return warnings, custom, dont_track_primary


def _notification_email(props: _Props) -> NotificationEmail | None:
    prefix = "keepalived.notification_email"
    to_name, from_name, server_name = f"{prefix}.to", f"{prefix}.from", f"{prefix}.smtp_server"
    recipients = []
    for i, value in enumerate(props.get(to_name) or []):
        if isinstance(value, str) and EMAIL_ADDRESS.fullmatch(value):
            recipients.append(value)
        else:
            props.reject_item(to_name, f"{to_name}[{i}]", value, "is not an email address (name@domain)")
    sender = props.get(from_name)
    if sender is not None and not EMAIL_ADDRESS.fullmatch(sender):
        props.reject(from_name, sender, "is not an email address (name@domain)")
    server = props.get(server_name)
    if server is not None:
        try:
            split_smtp_server(server)
        except ValueError as exc:
            props.reject(server_name, server, f"must be HOST, HOST:PORT or [IPv6]:PORT ({exc})")
    timeout = props.integer(f"{prefix}.smtp_connect_timeout")
    if not props.ok(to_name, from_name, server_name):
        return None
    if not recipients:
        if sender is not None or server is not None:
            props.report.add(to_name, MISSING, f"is empty, but {from_name if sender else server_name} is set: "
                             "list the recipients (or unset the other email properties)")
        return None
    if server is None:
        props.report.add(server_name, MISSING, f"is required when {to_name} is set")
        return None
    return NotificationEmail(to=tuple(recipients), from_=sender or "", smtp_server=server,
                             smtp_connect_timeout=timeout)


def _extra_lines(props: _Props, name: str, managed: Mapping[str, str], block: str) -> tuple[str, ...]:
    lines = []
    for i, line in enumerate(props.get(name) or []):
        why = extra_line_problem(line, managed, block)
        if why:
            props.reject_item(name, f"{name}[{i}]", line, why)
        else:
            lines.append(" ".join(line.split()))
    return tuple(lines)


def _drain(props: _Props) -> DrainSettings:
    prefix = "vipdrain.drain"
    return DrainSettings(
        enabled=bool(props.get(f"{prefix}.enabled")),
        timeout=props.number(f"{prefix}.timeout"),
        no_peer_policy="fail" if props.choice(f"{prefix}.no_peer_policy") == "fail"
        else "proceed",
        poll_interval=props.number(f"{prefix}.poll_interval"),
        dynamic=bool(props.get(f"{prefix}.dynamic")),
        resign_advert=bool(props.get(f"{prefix}.resign_advert")),
        peer_check=bool(props.get(f"{prefix}.peer_check")),
        preserve_connections=bool(props.get(f"{prefix}.preserve_connections")),
        preserve_grace=props.number(f"{prefix}.preserve_grace"),
        preserve_port=props.integer(f"{prefix}.preserve_port"),
    )


def _haproxy(props: _Props) -> HaproxySettings:
    prefix = "vipdrain.haproxy"
    pid_file = props.get(f"{prefix}.pid_file")
    if not ABSOLUTE_PATH.fullmatch(pid_file):
        props.reject(f"{prefix}.pid_file", pid_file,
                     "must be an absolute path of A-Z a-z 0-9 and _ . + @ % = , : ~ / -")
        pid_file = BY_NAME[f"{prefix}.pid_file"].default
    probe = props.get(f"{prefix}.probe")
    try:
        parse_probe(probe)
    except ValueError as exc:
        props.reject(f"{prefix}.probe", probe, str(exc))
        probe = BY_NAME[f"{prefix}.probe"].default
    grace_name = f"{prefix}.drain_grace_time"
    grace = props.get(grace_name)  # type and range checked against the schema; unset: None
    return HaproxySettings(pid_file=pid_file, probe=probe, drain_grace_time=grace)


def _metrics(props: _Props) -> MetricsSettings:
    prefix = "vipdrain.metrics"
    name = f"{prefix}.textfile_dir"
    directory = props.get(name) or None
    if directory is not None and not ABSOLUTE_PATH.fullmatch(directory):
        props.reject(name, directory, "must be an absolute path of A-Z a-z 0-9 and _ . + @ % = , : ~ / -")
        directory = None
    name = f"{prefix}.survey_interval"
    interval = props.get(name)
    if interval != 0 and not 10 <= interval <= 3600:
        props.reject(name, interval, "must be 0 (no periodic survey) or 10..3600 (seconds)")
        interval = 0
    return MetricsSettings(textfile_dir=directory, survey_interval=float(interval))
