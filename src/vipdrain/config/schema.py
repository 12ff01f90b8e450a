"""The job's properties: name, default and description of each, in one place.

`vipdrain.config` validates against this table (unknown names are typos, and every given value
is type-checked against `type`), and the BOSH job's `spec` and the property reference in the
docs are generated from it, so the three never drift.

Conventions:
- `null` (what BOSH renders for a property without default) always means "not set".
- An optional string without default that is set to `""` is "not set" too (BOSH manifests often
  blank a property to switch a feature off).
- Every string that ends up in keepalived.conf (commands, email fields, names) must be one line
  without control characters, double quotes, backslashes, braces, `#`, `!` or `$`: keepalived
  would read them as syntax (quotes, blocks, comments, parameter substitution). Commands run
  without a shell; put shell logic in a script file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Marker for "no default": the property is required or optional-without-default.
NO_DEFAULT: Any = object()

#: The type words `PropertyDef.type` may hold (what a manifest value must be).
TYPES = ("string", "integer", "number", "boolean", "list", "map")
#: How a problem names each type.
TYPE_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "a boolean (true or false)",
    "list": "a list",
    "map": "a map",
}


@dataclass(frozen=True)
class PropertyDef:
    """One job property as an operator sets it in a manifest."""

    #: Dotted name, e.g. `keepalived.virtual_router_id`.
    name: str
    description: str
    default: Any = NO_DEFAULT
    example: Any = NO_DEFAULT
    #: A short type word for the docs: string, integer, number, boolean, list, map.
    type: str = "string"
    #: The only values allowed (empty: any of the type).
    choices: tuple[Any, ...] = ()
    #: Inclusive (lowest, highest) of an integer or number, and the unit named in the problem.
    limits: tuple[float, float] | None = None
    unit: str = ""

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT

    @property
    def range_text(self) -> str:
        """`1..255`, `0.1..3600 (seconds)`: the allowed range as problems name it."""
        assert self.limits is not None
        return f"{self.limits[0]:g}..{self.limits[1]:g}{self.unit}"


SECONDS = " (seconds)"


def has_type(value: Any, expected: str) -> bool:
    """Is `value` (as YAML or JSON gives it) of the schema type `expected`?"""
    if expected == "string":
        return isinstance(value, str)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "list":
        return isinstance(value, list)
    return isinstance(value, Mapping)


def describe(value: Any) -> str:
    """What a YAML author would call this value's type."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a map"
    return type(value).__name__


def static_problem(prop: PropertyDef, value: Any) -> str | None:
    """Why `value` breaks the checks of `prop` that need nothing else (type, choices, limits).

    The BOSH job's config template makes the same checks while the director renders it
    (`vipdrain.boshjob`), so such a mistake fails the deploy before any VM is touched.
    """
    if not has_type(value, prop.type):
        return f"must be {TYPE_WORDS[prop.type]}, not {describe(value)}"
    if prop.choices and value not in prop.choices:
        return f"must be one of {', '.join(str(c) for c in prop.choices)}"
    if prop.limits is not None and not prop.limits[0] <= value <= prop.limits[1]:
        return f"is out of range {prop.range_text}"
    return None


_P = PropertyDef

#: Order is the order of the generated spec.
PROPERTIES: tuple[PropertyDef, ...] = (
    # --- the VIPs -------------------------------------------------------------------------
    _P(
        "keepalived.vip",
        "The virtual IP (one IPv4 or IPv6 address, no prefix length) the group shares; compatible "
        "with haproxy-boshrelease's keepalived job. Give this or keepalived.vips, not both. "
        "Rendered as VRRP instance vip_1 with keepalived.virtual_router_id.",
        example="192.0.2.100",
    ),
    _P(
        "keepalived.vips",
        "Several virtual IPs, each its own VRRP instance (vip_1, vip_2, ... in list order). Each "
        "entry is an address string or a map {address, virtual_router_id, interface}. Without "
        "an explicit virtual_router_id an entry gets keepalived.virtual_router_id + its position "
        "(0-based). An IPv6 VIP needs VRRPv3.",
        example=["192.0.2.100", {"address": "2001:db8::100", "virtual_router_id": 7}],
        type="list",
    ),
    _P(
        "keepalived.interface",
        "Interface that carries the VIPs and the VRRP adverts: `auto` (the interface holding the "
        "instance's own IP, spec.ip) or a Linux interface name (1..15 of A-Z a-z 0-9 _ . : -). "
        "A VIP map may override it.",
        default="auto",
        example="eth0",
    ),
    _P(
        "keepalived.virtual_router_id",
        "VRRP virtual router id (1..255) of the first VIP; further VIPs count up from it. Must be "
        "unique per network segment among all VRRP groups.",
        default=1,
        example=51,
        type="integer",
        limits=(1, 255),
    ),
    _P(
        "keepalived.vrrp_version",
        "VRRP protocol version, 2 or 3. IPv6 VIPs need 3; authentication needs 2.",
        default=3,
        type="integer",
        choices=(2, 3),
    ),
    _P(
        "keepalived.advert_int",
        "Seconds between VRRP adverts. VRRPv3: 0.01..40.95 in steps of 0.01; VRRPv2: whole "
        "seconds 1..255. A backup takes over about 3 x advert_int after the master goes silent.",
        default=1,
        example=0.5,
        type="number",
    ),
    # --- health check ---------------------------------------------------------------------
    _P(
        "keepalived.healthcheck.command",
        "Command keepalived runs to decide whether this VM may hold the VIPs (exit 0 = healthy; "
        "a failing check puts the VM in FAULT, so it never holds a VIP it cannot serve). Runs as "
        "root without a shell. Default (unset): the job's bin/healthcheck (vipdrain's probe in bash "
        "builtins, a few ms of CPU) - the haproxy pid file names a live process and haproxy answers "
        "a request on vipdrain.haproxy.probe within the timeout; why it failed goes to keepalived.log.",
        example="/var/vcap/jobs/haproxy/bin/healthy",
    ),
    _P(
        "keepalived.healthcheck.interval",
        "Seconds between health checks (whole seconds, 1..4294).",
        default=1,
        type="integer",
        limits=(1, 4294),
        unit=SECONDS,
    ),
    _P(
        "keepalived.healthcheck.timeout",
        "Seconds after which a running health check counts as failed (whole seconds, 1..4294).",
        default=1,
        type="integer",
        limits=(1, 4294),
        unit=SECONDS,
    ),
    _P(
        "keepalived.healthcheck.fall",
        "Consecutive failed checks (1..1000) before the VM goes to FAULT and gives up its VIPs.",
        default=2,
        type="integer",
        limits=(1, 1000),
    ),
    _P(
        "keepalived.healthcheck.rise",
        "Consecutive good checks (1..1000) before a VM in FAULT may hold VIPs again.",
        default=2,
        type="integer",
        limits=(1, 1000),
    ),
    # --- transport ------------------------------------------------------------------------
    _P(
        "keepalived.unicast",
        "Send adverts by unicast to the peers instead of multicast. Peers come from the "
        "`keepalived` link (every other instance of the group) or keepalived.unicast_peers; "
        "unicast without peers is an error.",
        default=False,
        type="boolean",
    ),
    _P(
        "keepalived.unicast_peers",
        "Addresses of the other VRRP routers, replacing the `keepalived` link's instances (this "
        "instance's own address may be listed; it is skipped). Each VIP uses the peers of its "
        "address family.",
        default=[],
        example=["192.0.2.11", "192.0.2.12"],
        type="list",
    ),
    _P(
        "keepalived.multicast_group.ipv4",
        "IPv4 multicast group of the VRRP adverts (multicast mode).",
        default="224.0.0.18",
    ),
    _P(
        "keepalived.multicast_group.ipv6",
        "IPv6 multicast group of the VRRP adverts (multicast mode); must be link-local scope "
        "(ff02::/16 style).",
        default="ff02::12",
    ),
    _P(
        "keepalived.source_address",
        "Source address of the adverts (mcast_src_ip / unicast_src_ip). Default: the instance's "
        "own IP (spec.ip) for VIPs of its family; an IPv6 VIP of an IPv4 instance uses the "
        "interface's link-local address. If set, every VIP must have its address family.",
        example="192.0.2.10",
    ),
    _P(
        "keepalived.authentication",
        "VRRPv2 simple password (PASS), 1..8 characters of A-Z a-z 0-9 and . _ - + = : , % @ ^ * / ~ "
        "(needs keepalived.vrrp_version 2; VRRPv3 has no authentication). Unset: none.",
        example="s3cret",
    ),
    # --- gratuitous ARP -------------------------------------------------------------------
    _P(
        "keepalived.garp.master_delay",
        "Seconds (0..4294) after becoming MASTER before the second burst of gratuitous ARPs / "
        "unsolicited NAs; 0 = no second burst.",
        default=1,
        type="integer",
        limits=(0, 4294),
        unit=SECONDS,
    ),
    _P(
        "keepalived.garp.master_repeat",
        "Gratuitous ARPs / unsolicited NAs (1..255) sent per burst.",
        default=3,
        type="integer",
        limits=(1, 255),
    ),
    _P(
        "keepalived.garp.master_refresh",
        "Seconds (0..86400) between gratuitous ARP refreshes while MASTER; 0 = no refresh.",
        default=0,
        type="integer",
        limits=(0, 86400),
        unit=SECONDS,
    ),
    # --- email ----------------------------------------------------------------------------
    _P(
        "keepalived.notification_email.to",
        "Addresses keepalived mails on every VRRP transition. Empty: no email.",
        default=[],
        example=["ops@example.com"],
        type="list",
    ),
    _P(
        "keepalived.notification_email.from",
        "Sender address of the emails. Unset: keepalived@<host name>.",
        example="keepalived@example.com",
    ),
    _P(
        "keepalived.notification_email.smtp_server",
        "SMTP server: a host name or IP address, optionally with :PORT ([IPv6]:PORT); port 25 "
        "if not given. Required when notification_email.to is set.",
        example="192.0.2.25:25",
    ),
    _P(
        "keepalived.notification_email.smtp_connect_timeout",
        "Seconds (1..4294) to wait for the SMTP server.",
        default=30,
        type="integer",
        limits=(1, 4294),
        unit=SECONDS,
    ),
    # --- operator hooks -------------------------------------------------------------------
    _P(
        "keepalived.notify.master",
        "Command run (as root, no shell) when this VM becomes MASTER of a VIP, e.g. to move a "
        "cloud elastic IP: the absolute path of a program, then its arguments (single quotes "
        "group an argument with spaces). Runs before vipdrain's own notify hook.",
        example="/var/vcap/jobs/eip/bin/claim",
    ),
    _P("keepalived.notify.backup", "Command run when this VM becomes BACKUP of a VIP (absolute path, then "
       "arguments).", example="/bin/true"),
    _P("keepalived.notify.fault", "Command run when this VM goes to FAULT (health check failed; absolute path, "
       "then arguments).", example="/bin/true"),
    _P("keepalived.notify.stop", "Command run when keepalived stops a VRRP instance (absolute path, then "
       "arguments).", example="/bin/true"),
    # --- escape hatch ---------------------------------------------------------------------
    _P(
        "keepalived.extra.global_defs",
        "Extra keepalived global_defs lines, one `keyword value...` per entry (no blocks, "
        "comments or includes; every keyword vipdrain renders itself, e.g. "
        "vrrp_higher_prio_send_advert or vrrp_notify_fifo, is refused). Checked by `keepalived -t` "
        "when rendered.",
        default=[],
        example=["vrrp_garp_interval 0.001"],
        type="list",
    ),
    _P(
        "keepalived.extra.vrrp_instance",
        "Extra lines for every vrrp_instance block, one `keyword value...` per entry (no blocks, "
        "comments or includes; priority, state, nopreempt, virtual_router_id, interface, "
        "track_*, notify*, virtual_ipaddress and the other keywords vipdrain sets are refused, "
        "and so is any keyword that opens a block, such as virtual_routes).",
        default=[],
        example=["dont_track_primary", "garp_lower_prio_repeat 2"],
        type="list",
    ),
    # --- vipdrain -------------------------------------------------------------------------
    _P(
        "vipdrain.placement",
        "Where the VIP lives between deploys. preferred: the bootstrap instance always takes it "
        "back (two VIP moves per deploy). sticky: whoever holds it keeps it until it drains (one "
        "move per deploy).",
        default="preferred",
        choices=("preferred", "sticky"),
    ),
    _P(
        "vipdrain.drain.enabled",
        "Hand the VIPs over (and verify the handoff) before this VM stops. false: BOSH drain "
        "returns at once.",
        default=True,
        type="boolean",
    ),
    _P(
        "vipdrain.drain.timeout",
        "Seconds (0.1..3600) to wait for a verified handoff before no_peer_policy applies.",
        default=30,
        type="number",
        limits=(0.1, 3600),
        unit=SECONDS,
    ),
    _P(
        "vipdrain.drain.no_peer_policy",
        "What a drain does when no peer takes the VIP in time: proceed (let the VM stop; the VIP "
        "goes down with it) or fail (fail the drain, so BOSH stops the deploy).",
        default="proceed",
        choices=("proceed", "fail"),
    ),
    _P(
        "vipdrain.drain.poll_interval",
        "Seconds (0.01..10) between observations while waiting for the handoff.",
        default=0.1,
        type="number",
        limits=(0.01, 10),
        unit=SECONDS,
    ),
    _P(
        "vipdrain.drain.dynamic",
        "Use BOSH dynamic draining (print a negative number and let the agent call back) "
        "instead of waiting inside the drain script.",
        default=False,
        type="boolean",
    ),
    _P(
        "vipdrain.drain.resign_advert",
        "Right after lowering the priority, send one priority-0 advert so the best backup takes "
        "over after its skew time (~0.7 s) instead of 3 x advert_int.",
        default=True,
        type="boolean",
    ),
    _P(
        "vipdrain.drain.warm_start",
        "Keep a drain server (`vipdrain drain-server`, started and stopped with keepalived, about "
        "27 MB of memory) that has the drain already loaded, so BOSH's drain starts its work about "
        "25 ms after the call instead of about 0.1 s: the drain's start-up is the tail of every "
        "handoff. Off, or with the server gone, every drain starts in a Python process of its own, "
        "with the same outcome.",
        default=True,
        type="boolean",
    ),
    _P(
        "vipdrain.drain.peer_check",
        "Hand over only to a peer whose haproxy answers: the request of vipdrain.haproxy.probe "
        "(same port and path) sent to the peer's own address. Before the handoff the peer that "
        "will take over (the highest priority) must answer; one that does not is waited for until "
        "keepalived there has fenced it (healthcheck fall x interval), then the next one is checked "
        "(no peer answers: no_peer_policy at once). After the handoff the new holder must keep "
        "advertising and answering for a short confirmation window (IPv4 peers). Turn it off when "
        "haproxy does not listen on the VMs' own addresses.",
        default=True,
        type="boolean",
    ),
    _P(
        "vipdrain.drain.preserve_connections",
        "Keep connections open on the draining VM alive after the VIP moved: it keeps serving "
        "them from a silent copy of the VIP on lo while every peer, told by a notice it receives "
        "before the handoff, forwards their packets back to it (nftables; how: "
        "preserve_forwarding) for preserve_grace seconds; the BOSH drain then returns "
        "preserve_grace so haproxy is stopped only after that. A VM that takes a VIP back by "
        "preemption (placement preferred) arms itself the same way first. Needs nft on the VMs. "
        "Also closes the window in which a connection being opened at the moment of the handoff "
        "is reset.",
        default=True,
        type="boolean",
    ),
    _P(
        "vipdrain.drain.preserve_grace",
        "Seconds (1..3600) that connections opened before a drain are kept alive "
        "(preserve_connections).",
        default=30,
        type="number",
        limits=(1, 3600),
        unit=SECONDS,
    ),
    _P(
        "vipdrain.drain.preserve_port",
        "UDP port (1..65535) of the drain notice between peers (preserve_connections); the same on "
        "every VM. Nothing listens on it: the peers' nftables rules consume the notice.",
        default=7112,
        type="integer",
        limits=(1, 65535),
    ),
    _P(
        "vipdrain.drain.preserve_forwarding",
        "How a peer sends a draining VM's connections back to it (preserve_connections). "
        "encapsulated: inside VXLAN (UDP preserve_tunnel_port) between the two VMs' own "
        "addresses, which passes cloud anti-spoofing (OpenStack port security, vSphere forged "
        "transmits); needs the vxlan kernel module and the ip and bridge programs (iproute2). "
        "layer2: as ethernet frames carrying the client's source address, which anti-spoofing drops.",
        default="encapsulated",
        choices=("encapsulated", "layer2"),
    ),
    _P(
        "vipdrain.drain.preserve_tunnel_port",
        "UDP port (1..65535) of the VXLAN tunnel between peers (preserve_forwarding encapsulated); "
        "the same on every VM, different from preserve_port. Security groups must pass it, and "
        "its fragments, between the group's VMs.",
        default=7113,
        type="integer",
        limits=(1, 65535),
    ),
    _P(
        "vipdrain.haproxy.pid_file",
        "Absolute path of the colocated haproxy's pid file (checked by the default health check).",
        default="/var/vcap/sys/run/bpm/haproxy/haproxy.pid",
    ),
    _P(
        "vipdrain.haproxy.probe",
        "Local haproxy frontend that must answer a request for this VM to hold the VIPs. "
        "HOST:PORT ([IPv6]:PORT): an HTTP/1.0 request is sent and any answer counts (bytes, or "
        "haproxy closing the connection: fits HTTP, TLS and TCP frontends). "
        "http://HOST:PORT/PATH: GET PATH must return a status below 500 (e.g. haproxy-boshrelease's "
        "health frontend http://127.0.0.1:8080/health). A TCP handshake alone is not enough: "
        "the kernel completes it for a hung haproxy.",
        default="127.0.0.1:80",
        example="http://127.0.0.1:8080/health",
    ),
    _P(
        "vipdrain.haproxy.drain_grace_time",
        "Seconds the colocated haproxy job waits before soft-stopping in its own drain, if it "
        "drains too (ha_proxy.drain_frontend_grace_time); a warning is given when shorter than "
        "vipdrain.drain.timeout. Unset: haproxy does not drain.",
        example=30,
        type="number",
        limits=(0, 86400),
        unit=SECONDS,
    ),
    # --- metrics --------------------------------------------------------------------------
    _P(
        "vipdrain.metrics.textfile_dir",
        "Directory of a node_exporter textfile collector: vipdrain writes its Prometheus metrics "
        "there as vipdrain.prom (atomically) on every VRRP transition, after every drain and every "
        "vipdrain.metrics.survey_interval seconds. The directory must exist (vipdrain never creates "
        "it). Unset: no metrics. With the node_exporter job of node-exporter-boshrelease on the same "
        "VM: /var/vcap/jobs/node_exporter/config (see docs/BOSH.md).",
        example="/var/vcap/jobs/node_exporter/config",
    ),
    _P(
        "vipdrain.metrics.survey_interval",
        "Seconds (0 or 10..3600) between surveys of who holds each VIP (the holders, split-brain and "
        "unowned metrics), run by keepalived's notify reader while metrics are on; each survey "
        "listens 1.5 x advert_int. 0: no periodic survey (run `vipdrain metrics` yourself).",
        default=60,
        type="number",
    ),
)

#: Name -> definition.
BY_NAME: dict[str, PropertyDef] = {p.name: p for p in PROPERTIES}
