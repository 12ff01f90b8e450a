"""keepalived.conf from a validated `JobConfig`: deterministic text, no I/O.

What keepalived's parser treats as syntax lives here too (`unsafe_character`, `split_smtp_server`,
`MAX_LINE_BYTES`), so `vipdrain.config` rejects at load time exactly what this module could not
render safely. keepalived splits script/notify strings into argv itself (no shell): words are
separated by spaces, and a word with spaces is wrapped in single quotes.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import sys
from collections.abc import Iterable

from vipdrain.errors import RuntimeFailure
from vipdrain.layout import Layout
from vipdrain.model import HealthCheck, JobConfig, Vip
from vipdrain.priority import HOLD_WEIGHT, STICKY_BONUS

INDENT = "    "
HEALTHCHECK_SCRIPT = "vipdrain_healthcheck"
HOLD_TRACK = "vipdrain_hold"
MAINTENANCE_TRACK = "vipdrain_maintenance"
#: keepalived 2.2.7 segfaults (`keepalived -t` exits 139) on a config line of 1024 bytes or more
#: counting the newline (measured), so every rendered line stays at or below this many bytes.
MAX_LINE_BYTES = 1023
#: Characters keepalived.conf may read as syntax: quotes and escapes, block braces, comments,
#: `$NAME` parameter substitution. Refused in every rendered value, even inside a quoted string
#: where keepalived 2.2.7 happens to take some literally: one simple rule, no injection.
SYNTAX_CHARACTERS = {
    '"': "a quote",
    "'": "a quote",
    "\\": "an escape",
    "{": "a block brace",
    "}": "a block brace",
    "#": "a comment",
    "!": "a comment",
    "$": "parameter substitution",
}
#: Inside a double-quoted script string, single quotes group an argument with spaces.
COMMAND_QUOTES = "'"
#: The probe gets this share of the check's timeout; the rest covers the check's start-up and a
#: busy VM's scheduling delays, so the probe reports a slow frontend itself instead of being
#: killed by keepalived.
PROBE_TIMEOUT_SHARE = 0.7
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def unsafe_character(text: str, allowed: str = "") -> str | None:
    """Why `text` cannot appear in keepalived.conf as it is, or None when it can.

    `allowed` lists syntax characters the caller quotes or checks itself (e.g. `'` in commands,
    where balanced single quotes group an argument).
    """
    for ch in text:
        if ch in "\n\r":
            return "contains a line break; keepalived.conf is line-based"
        if ch != " " and not ch.isprintable():
            return f"contains the control character {ch!r}"
        if ch in SYNTAX_CHARACTERS and ch not in allowed:
            return f"contains {ch!r}, which keepalived.conf reads as {SYNTAX_CHARACTERS[ch]}"
    return None


def split_smtp_server(text: str) -> tuple[str, int | None]:
    """`HOST`, `HOST:PORT`, `IPv6` or `[IPv6]:PORT` -> (host, port or None); ValueError if not."""
    if text.count(":") > 1 and not text.startswith("["):
        return str(ipaddress.IPv6Address(text)), None
    if text.startswith("["):
        inner, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError("write an IPv6 server as [ADDRESS]:PORT")
        host, sep, port = str(ipaddress.IPv6Address(inner)), rest[:1], rest[1:]
    else:
        host, sep, port = text.partition(":")
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"host {host!r} is not a host name or an IP address")
    if sep and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"port {port!r} is not 1..65535")
    return host, int(port) if sep else None


def render_keepalived_conf(cfg: JobConfig, layout: Layout) -> str:
    """The keepalived.conf for this VM; the same inputs always give the same text."""
    sections = [
        [
            f"# keepalived.conf of {cfg.instance.name}/{cfg.instance.index}, rendered by vipdrain.",
            "# Do not edit: pre-start renders it again on every deploy.",
        ],
        _global_defs(cfg, layout),
    ]
    if cfg.healthcheck is not None:
        sections.append(_healthcheck_script(cfg, cfg.healthcheck, layout))
    # A missing file reads 0 and is created with 0 (never overwritten). After a reboot the tmpfs
    # hold file is missing: the drain or deploy that held this VM is over, and the health check's
    # init_fail keeps the VM out until its haproxy answers. Maintenance is on disk and stays.
    sections.append(_track_file(HOLD_TRACK, str(layout.hold_track_file), HOLD_WEIGHT, "0"))
    sections.append(_track_file(MAINTENANCE_TRACK, str(layout.maintenance_track_file), HOLD_WEIGHT, "0"))
    if cfg.placement == "sticky":
        for vip in cfg.vips:
            path = str(layout.holder_track_file(vip.name))
            sections.append(_track_file(holder_track_name(vip), path, STICKY_BONUS, "0 overwrite"))
    sections.extend(_vrrp_instance(cfg, vip, layout) for vip in cfg.vips)
    text = "\n\n".join("\n".join(lines) for lines in sections) + "\n"
    _check_line_lengths(text)
    return text


def holder_track_name(vip: Vip) -> str:
    """Name of the sticky-placement track file of `vip` in keepalived.conf."""
    return f"holder_{vip.name}"


def probe_command(cfg: JobConfig, layout: Layout) -> str:
    """The default health check: the job's `bin/healthcheck` (lifecycle/healthcheck), vipdrain's
    probe in bash builtins (keepalived runs it every interval; a Python start-up costs 60-90 ms of
    CPU, the script a few ms). Its failure reason goes to keepalived.log, keepalived's own log."""
    timeout = cfg.healthcheck.timeout if cfg.healthcheck else 1.0
    return _command(
        [
            str(layout.healthcheck_script),
            "--pid-file",
            cfg.haproxy.pid_file,
            "--tcp",
            cfg.haproxy.probe,
            "--timeout",
            _number(round(timeout * PROBE_TIMEOUT_SHARE, 2)),
            "--log",
            str(layout.keepalived_log),
        ]
    )


def notify_fifo_command(layout: Layout) -> str:
    """vipdrain's reader of keepalived's notify FIFO; keepalived appends the FIFO's path."""
    words = _vipdrain_words(layout)
    return _command([*words, "notify-fifo", "--root", str(layout.root)])


# --- sections ---------------------------------------------------------------------------------


def _global_defs(cfg: JobConfig, layout: Layout) -> list[str]:
    lines = [
        f"router_id {cfg.instance.name}-{cfg.instance.index}",
        # Scripts run as root (they write under /var/vcap and may move addresses); keepalived
        # then refuses any script a non-root user could replace.
        "script_user root",
        "enable_script_security",
        f"vrrp_garp_master_delay {cfg.garp.master_delay}",
        f"vrrp_garp_master_repeat {cfg.garp.master_repeat}",
        f"vrrp_garp_master_refresh {cfg.garp.master_refresh}",
        # When a split brain heals, clients may still send the VIP to the losing master's MAC.
        # A master that hears a lower-priority master re-announces the VIP, in the bursts it
        # sends on becoming MASTER (keepalived's default too; written out so it visibly follows
        # keepalived.garp.*). It must hear the loser, though: a master that hears a higher
        # priority steps down silently, so the loser sends one last advert before it does.
        f"vrrp_garp_lower_prio_repeat {cfg.garp.master_repeat}",
        f"vrrp_garp_lower_prio_delay {cfg.garp.master_delay}",
        "vrrp_higher_prio_send_advert true",
        # Transitions through one FIFO, read by one process: in the order keepalived made them.
        # (Per-transition notify scripts run concurrently and can record an old state last.)
        f"vrrp_notify_fifo {_quoted(str(layout.notify_fifo))}",
        f"vrrp_notify_fifo_script {_quoted(notify_fifo_command(layout), allowed=COMMAND_QUOTES)}",
    ]
    if not cfg.unicast:
        lines += [f"vrrp_mcast_group4 {cfg.multicast_group_v4}", f"vrrp_mcast_group6 {cfg.multicast_group_v6}"]
    email = cfg.notification_email
    if email is not None:
        lines += _block("notification_email", email.to)
        if email.from_:
            lines.append(f"notification_email_from {email.from_}")
        host, port = split_smtp_server(email.smtp_server)
        lines.append(f"smtp_server {host}" + (f" {port}" if port else ""))
        lines.append(f"smtp_connect_timeout {email.smtp_connect_timeout}")
    lines += cfg.extra_global_defs
    return _block("global_defs", lines)


def _healthcheck_script(cfg: JobConfig, check: HealthCheck, layout: Layout) -> list[str]:
    command = check.command or probe_command(cfg, layout)
    return _block(
        f"vrrp_script {HEALTHCHECK_SCRIPT}",
        [
            f"script {_quoted(command, allowed=COMMAND_QUOTES)}",
            f"interval {_number(check.interval)}",
            f"timeout {_number(check.timeout)}",
            f"fall {check.fall}",
            f"rise {check.rise}",
            # Weight 0: a failing check means FAULT, so a VM whose haproxy cannot serve never
            # holds the VIP (a negative weight would only lower it and could leave it master).
            "weight 0",
            # A VM that just started has not shown that its haproxy answers: it starts in FAULT
            # and joins only after `rise` good checks, so it can never grab the VIP too early.
            "init_fail",
        ],
    )


def _track_file(name: str, path: str, weight: int, init: str) -> list[str]:
    return _block(f"track_file {name}", [f"file {_quoted(path)}", f"weight {weight}", f"init_file {init}"])


def _vrrp_instance(cfg: JobConfig, vip: Vip, layout: Layout) -> list[str]:
    # IPv6 VRRP exists only in version 3; config refuses an explicit 2 with IPv6 VIPs.
    version = 3 if vip.family == 6 else cfg.vrrp_version
    prefix = 32 if vip.family == 4 else 128
    lines = [
        # Every VM starts BACKUP with preemption on: the election, not the config, picks the
        # master, and a lowered priority (drain) makes the master step down.
        "state BACKUP",
        f"interface {vip.interface}",
        f"virtual_router_id {vip.virtual_router_id}",
        f"priority {cfg.priority}",
        f"advert_int {_number(cfg.advert_int)}",
        f"version {version}",
        *_transport(cfg, vip),
    ]
    if cfg.authentication and version == 2:
        lines += _block("authentication", ["auth_type PASS", f"auth_pass {cfg.authentication}"])
    lines += _block("virtual_ipaddress", [f"{vip.address}/{prefix} dev {vip.interface}"])
    if cfg.healthcheck is not None:
        lines += _block("track_script", [HEALTHCHECK_SCRIPT])
    tracks = [HOLD_TRACK, MAINTENANCE_TRACK] + ([holder_track_name(vip)] if cfg.placement == "sticky" else [])
    lines += _block("track_file", tracks)
    hooks = cfg.notify
    for state, command in (("master", hooks.master), ("backup", hooks.backup), ("fault", hooks.fault),
                           ("stop", hooks.stop)):
        if command:
            lines.append(f"notify_{state} {_quoted(command, allowed=COMMAND_QUOTES)}")
    if cfg.notification_email is not None:
        lines.append("smtp_alert true")
    lines += cfg.extra_instance_options
    return _block(f"vrrp_instance {vip.name}", lines)


def _transport(cfg: JobConfig, vip: Vip) -> list[str]:
    """Advert source (and unicast peers): only addresses of the VIP's family fit its instance."""
    source = cfg.source_address if cfg.source_address and cfg.source_address.version == vip.family else None
    if not cfg.unicast:
        return [f"mcast_src_ip {source}"] if source else []
    peers = [str(p.address) for p in cfg.peers if p.address.version == vip.family]
    return ([f"unicast_src_ip {source}"] if source else []) + _block("unicast_peer", peers)


# --- text helpers -----------------------------------------------------------------------------


def _block(head: str, body: Iterable[str]) -> list[str]:
    return [f"{head} {{", *(INDENT + line for line in body), "}"]


def _number(value: float) -> str:
    """1 -> '1', 0.5 -> '0.5', 0.01 -> '0.01' (keepalived reads both forms)."""
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}".rstrip("0")


def _vipdrain_words(layout: Layout) -> list[str]:
    return shlex.split(layout.vipdrain_cmd) or [sys.executable, "-m", "vipdrain"]


def _word(word: str) -> str:
    """One argv word as keepalived splits script strings: single quotes group spaces."""
    if "'" in word or not word:
        raise RuntimeFailure(f"cannot pass {word!r} to a keepalived script: empty or holds a single quote")
    return f"'{word}'" if any(ch.isspace() for ch in word) else word


def _command(words: Iterable[str]) -> str:
    return " ".join(_word(w) for w in words)


def _quoted(text: str, allowed: str = "") -> str:
    """A double-quoted keepalived string. Config values reach here validated; paths from the
    layout are checked here (a root directory with a quote in its name cannot be rendered)."""
    reason = unsafe_character(text, allowed)
    if reason:
        raise RuntimeFailure(f"cannot render {text!r} into keepalived.conf: it {reason}")
    return f'"{text}"'


def _check_line_lengths(text: str) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        size = len(line.encode())
        if size > MAX_LINE_BYTES:
            raise RuntimeFailure(
                f"line {number} of keepalived.conf would be {size} bytes; keepalived 2.2 crashes on "
                f"lines over {MAX_LINE_BYTES} bytes (shorten the command or path): {line[:80]}..."
            )
