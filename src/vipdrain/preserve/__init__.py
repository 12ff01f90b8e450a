"""Connection-preserving handoff: streams open on a draining VM finish there after the VIP moved.

When the VIP moves, clients' packets follow the new master's MAC. For a connection the old master
accepted, the new master has no socket and answers with a reset. This module keeps such
connections alive for a grace period:

- The **old master** (the drain, once the VIP also sits on `lo`, see vipdrain.vipaddr) sends
  every peer a small *drain notice* - a UDP datagram `VDP1` + the VIP's address bytes, from its
  own address, TTL 255 - and keeps repeating it (a detached `keep` process) while the VIP is still
  on its interface. It stops as soon as the VIP has left: a notice that reached a peer already
  serving the VIP unarmed would make it forward the connections it accepted itself.
- Every **peer** carries one standing nftables table (`netdev vipdrain_preserve`, an ingress chain
  per VIP interface), installed by pre-start. The kernel itself is the listener: a notice from a
  known peer address, with TTL 255 (sent on-link, never routed), *arms* the VIP for
  `preserve_grace` seconds and records the sender's MAC. While a VIP is armed, the VM
    * remembers every connection to it that starts here (a SYN without ACK) and
    * sends every other TCP packet for the VIP - one that is not a SYN and belongs to no
      connection started here - back to the old master (`fwd`): by default inside a VXLAN
      tunnel between the two VMs' own addresses (`tunnel`; `preserve_forwarding: encapsulated`),
      which passes a cloud's anti-spoofing, or as a frame straight to the old master's MAC
      (`preserve_forwarding: layer2`), which carries the client's source address,
  so its own new connections stay local and the old ones reach the VM whose haproxy has them.
  Arms expire in the kernel: nothing to remove when the grace period ends, no process to leak.

Why not a listener started by keepalived's notify hook on MASTER (and forwarding by policy
routing)? The first packets of the old connections reach the new master within milliseconds of
its gratuitous ARP, and the notify hook alone takes ~90 ms before a listener could even start.
Measured in the lab (2 VMs, 3 raw TCP streams, 50 req/s), arming the forwarding 250 ms after the
takeover: all 3 old streams reset, and 3 connections the new master accepted in those 250 ms were
then forwarded to the old master and reset too; 50 ms after: the streams survived, one short
request did not. Here the notice travels before the resign advert that makes the peer take over
(same sender, same link: wire order), so arming always precedes the takeover. `fwd` in
the ingress hook also needs no `ip_forward`, no ICMP-redirect change, no policy routing table or
moved `local` rule, and works the same for IPv6 VIPs (no global IPv6 forwarding, which would
purge RA-learned default routes); the one rp_filter change is on the tunnel device's own
setting (see `tunnel`).

A VIP also moves without a drain when a VM outranks the master (placement `preferred`: the
bootstrap VM after its update or `undrain`). That master keeps serving and sends no notice, so
the VM about to take over arms itself (`arm_takeover`, before it releases its hold) towards the
master's MAC, seen in its adverts, and marks its own connections to the VIP as local; if the
takeover does not happen (another VM won the election), it takes the arm back once it knows
(`disarm_takeover`), so a later crash of that master finds nothing armed. Frames
from a MAC this VM forwards to are never forwarded again: two VMs armed towards each other
(a drain soon after such a takeover) would otherwise bounce a packet between them forever.

A crash failover sends no notice: nothing is armed and clients get a reset at once, as before.
Requirements: the `nft` binary (nftables) with netdev `fwd` (Linux >= 4.5; tested on 6.x), the
old and new master on the same layer-2 segment as the VIP (as VRRP needs anyway); encapsulated:
the `vxlan` module and iproute2's `ip` and `bridge`; layer 2: a network that lets a VM send frames
carrying a client's source address (no anti-spoofing port security).

Modules: `notice` (the datagram and its sender), `nft` (the standing table, arming, `install`),
`tunnel` (the VXLAN device), `flows` (this VM's connections, from /proc), `keeper` (the drain's
`start_handoff`/`end_handoff` and the repeater process).

Entry points (run by vipdrain itself): `python -m vipdrain.preserve keep ...` (the repeater the
drain spawns), `python -m vipdrain.preserve cleanup --root DIR` (stop the repeater, remove the table).
"""

from vipdrain.preserve.flows import (
    Flow,
    local_flows,
    open_connections,
    own_flows,
    read_proc_tcp,
)
from vipdrain.preserve.keeper import (
    ANNOUNCE_SLACK,
    announce,
    build_parser,
    end_handoff,
    is_keeper_cmdline,
    keeper_argv,
    keeper_pid_file,
    main,
    running_keeper,
    start_handoff,
)
from vipdrain.preserve.nft import (
    FORWARD_MACS,
    INGRESS_PRIORITY,
    LOCAL_FLOW_LINGER,
    LOCAL_FLOW_SLACK,
    LOCAL_FLOWS_MAX,
    NFT_TIMEOUT,
    TABLE,
    TABLE_FAMILY,
    Armed,
    Forwarder,
    Runner,
    arm_ruleset,
    arm_takeover,
    disarm_argv,
    disarm_takeover,
    existing_elements,
    forwarder_ruleset,
    forwarding_now,
    install,
    interface_numbers,
    list_table_argv,
    parse_armed,
    preempted_adverts,
    program,
    remove_forwarder,
    run_command,
    takeover_arms,
)
from vipdrain.preserve.notice import (
    MAGIC,
    NOTICE_BURST,
    NOTICE_INTERVAL,
    NOTICE_TTL,
    Sender,
    encode_notice,
    notice_source,
    notice_targets,
    send_notices,
)
from vipdrain.preserve.tunnel import (
    DUMMY_IPV4,
    TUNNEL_DEVICE,
    TUNNEL_VNI,
    Tunnel,
    peers_by_mac,
    tunnel_commands,
    tunnel_mac,
    tunnel_problems,
)

__all__ = [
    "ANNOUNCE_SLACK",
    "DUMMY_IPV4",
    "FORWARD_MACS",
    "INGRESS_PRIORITY",
    "LOCAL_FLOWS_MAX",
    "LOCAL_FLOW_LINGER",
    "LOCAL_FLOW_SLACK",
    "MAGIC",
    "NFT_TIMEOUT",
    "NOTICE_BURST",
    "NOTICE_INTERVAL",
    "NOTICE_TTL",
    "TABLE",
    "TABLE_FAMILY",
    "TUNNEL_DEVICE",
    "TUNNEL_VNI",
    "Armed",
    "Flow",
    "Forwarder",
    "Runner",
    "Sender",
    "Tunnel",
    "announce",
    "arm_ruleset",
    "arm_takeover",
    "build_parser",
    "disarm_argv",
    "disarm_takeover",
    "encode_notice",
    "end_handoff",
    "existing_elements",
    "forwarder_ruleset",
    "forwarding_now",
    "install",
    "interface_numbers",
    "is_keeper_cmdline",
    "keeper_argv",
    "keeper_pid_file",
    "list_table_argv",
    "local_flows",
    "main",
    "notice_source",
    "notice_targets",
    "open_connections",
    "own_flows",
    "parse_armed",
    "peers_by_mac",
    "preempted_adverts",
    "program",
    "read_proc_tcp",
    "remove_forwarder",
    "run_command",
    "running_keeper",
    "send_notices",
    "start_handoff",
    "takeover_arms",
    "tunnel_commands",
    "tunnel_mac",
    "tunnel_problems",
]
