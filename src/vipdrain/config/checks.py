"""The validated properties assembled into a `JobConfig`: one check per section, each reporting
its own problems (a rejected value reads as its default, so one mistake gives one problem)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vipdrain.config.compat import legacy_settings
from vipdrain.config.extra import MANAGED_GLOBAL, MANAGED_INSTANCE, extra_lines
from vipdrain.config.props import Props, Report
from vipdrain.config.schema import BY_NAME
from vipdrain.config.values import ABSOLUTE_PATH
from vipdrain.config.vips import (
    InterfaceLookup,
    check_unicast_peers,
    check_vips,
    resolve_vips,
    source_address,
    vip_entries,
    vrrp_peers,
)
from vipdrain.errors import MISSING
from vipdrain.model import (
    DrainSettings,
    Garp,
    HaproxySettings,
    HealthCheck,
    InstanceSpec,
    JobConfig,
    MetricsSettings,
    NotificationEmail,
    NotifyHooks,
    Peer,
    Placement,
)
from vipdrain.priority import base_priority
from vipdrain.probe import parse_probe
from vipdrain.render import split_smtp_server

EMAIL_ADDRESS = re.compile(r"[A-Za-z0-9._%+=-]+@[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
#: auth_pass is rendered unquoted, so no spaces, quotes or comment characters.
PASSWORD = re.compile(r"[A-Za-z0-9._+=:,%@^*/~-]+")
MAX_PASSWORD = 8


def build(
    props: Props,
    spec: InstanceSpec | None,
    link_peers: list[Peer],
    interface_of: InterfaceLookup | None,
    report: Report,
    legacy: Mapping[str, Any],
) -> JobConfig | None:
    version = props.integer("keepalived.vrrp_version")
    advert_int = _advert_int(props, version)
    chosen = props.choice("vipdrain.placement")
    placement: Placement = "sticky" if chosen == "sticky" else "preferred"
    unicast = bool(props.get("keepalived.unicast"))
    peers = vrrp_peers(props, link_peers, spec)
    resolved = resolve_vips(props, vip_entries(props), spec, interface_of)
    vips = tuple(vip for _, vip in resolved)
    check_vips(props, resolved, spec, [*peers, *link_peers], version)
    source = source_address(props, vips)
    if unicast and props.ok("keepalived.unicast_peers"):
        check_unicast_peers(props, resolved, peers)
    authentication = _authentication(props, version)
    group_v4, group_v6 = _multicast_groups(props)
    healthcheck = _healthcheck(props)
    warnings, legacy_command, dont_track_primary = legacy_settings(props, legacy, healthcheck.command)
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
    extra_global = extra_lines(props, "keepalived.extra.global_defs", MANAGED_GLOBAL, "global_defs")
    extra_instance = extra_lines(props, "keepalived.extra.vrrp_instance", MANAGED_INSTANCE, "vrrp_instance")
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


def _advert_int(props: Props, version: int) -> float:
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


def _authentication(props: Props, version: int) -> str | None:
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


def _multicast_groups(props: Props) -> tuple[str, str]:
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


def _healthcheck(props: Props) -> HealthCheck:
    prefix = "keepalived.healthcheck"
    return HealthCheck(
        # "" selects vipdrain's probe; the renderer builds its command from the VM's layout.
        command=props.command(f"{prefix}.command"),
        interval=props.integer(f"{prefix}.interval"),
        timeout=props.integer(f"{prefix}.timeout"),
        fall=props.integer(f"{prefix}.fall"),
        rise=props.integer(f"{prefix}.rise"),
    )


def _notification_email(props: Props) -> NotificationEmail | None:
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


def _drain(props: Props) -> DrainSettings:
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
        warm_start=bool(props.get(f"{prefix}.warm_start")),
        preserve_connections=bool(props.get(f"{prefix}.preserve_connections")),
        preserve_grace=props.number(f"{prefix}.preserve_grace"),
        preserve_port=props.integer(f"{prefix}.preserve_port"),
        preserve_forwarding="layer2" if props.choice(f"{prefix}.preserve_forwarding") == "layer2"
        else "encapsulated",
        preserve_tunnel_port=_tunnel_port(props),
    )


def _tunnel_port(props: Props) -> int:
    """The tunnel's UDP port, which must not be the drain notice's (nft consumes the notice port)."""
    name = "vipdrain.drain.preserve_tunnel_port"
    port = props.integer(name)
    if port == props.integer("vipdrain.drain.preserve_port"):
        props.reject(name, port, "must differ from vipdrain.drain.preserve_port (the drain notice's port)")
        return int(BY_NAME[name].default)
    return port


def _haproxy(props: Props) -> HaproxySettings:
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


def _metrics(props: Props) -> MetricsSettings:
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
