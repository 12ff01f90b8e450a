"""The escape hatch (keepalived.extra.*): raw keepalived lines, minus what vipdrain manages."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vipdrain.config.props import Props
from vipdrain.config.schema import describe
from vipdrain.config.values import MAX_COMMAND_BYTES
from vipdrain.render import unsafe_character

EXTRA_KEYWORD = re.compile(r"[a-z][a-z0-9_]*")

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


def extra_lines(props: Props, name: str, managed: Mapping[str, str], block: str) -> tuple[str, ...]:
    lines = []
    for i, line in enumerate(props.get(name) or []):
        why = extra_line_problem(line, managed, block)
        if why:
            props.reject_item(name, f"{name}[{i}]", line, why)
        else:
            lines.append(" ".join(line.split()))
    return tuple(lines)
