"""The validated job configuration: typed, immutable, with every default applied.

`vipdrain.config` builds these from the file BOSH renders; everything downstream (renderer,
drain, lifecycle, lab) reads only these types, never raw dictionaries.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Placement = Literal["preferred", "sticky"]
NoPeerPolicy = Literal["proceed", "fail"]
Forwarding = Literal["encapsulated", "layer2"]


@dataclass(frozen=True)
class InstanceSpec:
    """The BOSH instance this config was rendered for (`spec` in the rendered file)."""

    name: str
    index: int
    id: str
    bootstrap: bool
    ip: IPAddress
    az: str = ""
    deployment: str = ""


@dataclass(frozen=True)
class Peer:
    """Another instance of the group, from the `keepalived` link (or `keepalived.unicast_peers`)."""

    address: IPAddress
    index: int | None = None
    bootstrap: bool = False
    id: str = ""


@dataclass(frozen=True)
class Vip:
    """One virtual IP = one VRRP instance in keepalived.conf."""

    #: keepalived's `vrrp_instance` name, e.g. `vip_1`; also names state and track files.
    name: str
    address: IPAddress
    virtual_router_id: int
    #: Resolved interface name (`auto` is resolved at load time from the instance's IP).
    interface: str

    @property
    def family(self) -> int:
        return self.address.version


@dataclass(frozen=True)
class HealthCheck:
    """keepalived `vrrp_script` that decides whether this VM may hold the VIP."""

    #: The operator's command; "" means vipdrain's probe (the renderer builds its command line
    #: from the VM's layout and `JobConfig.haproxy`).
    command: str
    #: Whole seconds: keepalived 2.2 refuses fractional script intervals and timeouts.
    interval: float = 1.0
    timeout: float = 1.0
    fall: int = 2
    rise: int = 2


@dataclass(frozen=True)
class Garp:
    master_delay: int = 1
    master_repeat: int = 3
    master_refresh: int = 0


@dataclass(frozen=True)
class NotificationEmail:
    to: tuple[str, ...]
    from_: str
    smtp_server: str
    smtp_connect_timeout: int = 30


@dataclass(frozen=True)
class NotifyHooks:
    """Operator commands keepalived runs on transitions (e.g. move a cloud elastic IP)."""

    master: str = ""
    backup: str = ""
    fault: str = ""
    stop: str = ""


@dataclass(frozen=True)
class DrainSettings:
    """How `vipdrain drain` hands the VIP over."""

    enabled: bool = True
    #: Seconds to wait for a verified handoff before `no_peer_policy` applies.
    timeout: float = 30.0
    no_peer_policy: NoPeerPolicy = "proceed"
    #: Seconds between observations while waiting.
    poll_interval: float = 0.1
    #: BOSH dynamic draining: print a negative number and let the agent call back
    #: (`job_check_status`) instead of waiting inside the script.
    dynamic: bool = False
    #: Send a priority-0 advert right after lowering the priority (fast make-before-break).
    resign_advert: bool = True
    #: Hand over only to a peer whose haproxy answers on its own address (the probe's request).
    peer_check: bool = True
    #: A drain server keeps the drain loaded, so BOSH's drain starts in milliseconds (vipdrain.warm).
    warm_start: bool = True
    #: Connections open on the old master survive the handoff: the new master forwards their
    #: packets back to it for `preserve_grace` seconds (vipdrain.preserve).
    preserve_connections: bool = True
    preserve_grace: float = 30.0
    #: UDP port of the drain notice the old master sends its peers (matched by nftables, no listener).
    preserve_port: int = 7112
    #: How forwarded packets travel: inside a VXLAN tunnel (vipdrain.preserve.tunnel) or as frames.
    preserve_forwarding: Forwarding = "encapsulated"
    #: UDP port of that tunnel.
    preserve_tunnel_port: int = 7113


@dataclass(frozen=True)
class HaproxySettings:
    """Where vipdrain finds the colocated haproxy, to check it before taking the VIP."""

    pid_file: str = "/var/vcap/sys/run/bpm/haproxy/haproxy.pid"
    #: HOST:PORT or http://HOST:PORT/PATH of a haproxy frontend that must answer a request
    #: (vipdrain.probe.parse_probe).
    probe: str = "127.0.0.1:80"
    #: The colocated haproxy job's drain settings, if it drains too (see docs): seconds it waits
    #: before soft-stopping. Used to warn when shorter than the handoff deadline.
    drain_grace_time: float | None = None


@dataclass(frozen=True)
class MetricsSettings:
    """Prometheus metrics for node_exporter's textfile collector (vipdrain.metrics)."""

    #: Directory the collector reads `*.prom` files from; None: metrics off.
    textfile_dir: str | None = None
    #: Seconds between the notify reader's surveys of the VIPs' holders; 0: none.
    survey_interval: float = 60.0


@dataclass(frozen=True)
class JobConfig:
    """Everything vipdrain needs, validated."""

    instance: InstanceSpec
    vips: tuple[Vip, ...]
    vrrp_version: int = 3
    advert_int: float = 1.0
    placement: Placement = "preferred"
    #: This VM's base priority (before track-file weights), decided from spec and peers.
    priority: int = 100
    healthcheck: HealthCheck | None = None
    unicast: bool = False
    #: Unicast peers (excluding this VM); also the peers vipdrain expects to see.
    peers: tuple[Peer, ...] = ()
    multicast_group_v4: str = "224.0.0.18"
    multicast_group_v6: str = "ff02::12"
    #: Source address of adverts; defaults to the instance's IP.
    source_address: IPAddress | None = None
    authentication: str | None = None
    garp: Garp = field(default_factory=Garp)
    notification_email: NotificationEmail | None = None
    notify: NotifyHooks = field(default_factory=NotifyHooks)
    #: Escape hatch: extra keepalived lines, validated as `keyword value...` single lines.
    extra_global_defs: tuple[str, ...] = ()
    extra_instance_options: tuple[str, ...] = ()
    drain: DrainSettings = field(default_factory=DrainSettings)
    haproxy: HaproxySettings = field(default_factory=HaproxySettings)
    #: Sentences for the operator about accepted but outdated settings (haproxy-boshrelease's
    #: property names); `vipdrain check` and pre-start print each once.
    warnings: tuple[str, ...] = ()
    metrics: MetricsSettings = field(default_factory=MetricsSettings)

    @property
    def is_bootstrap(self) -> bool:
        return self.instance.bootstrap
