"""VIP addresses vipdrain itself adds or removes, outside keepalived.

A silent copy of every VIP on `lo`, on every VM, from pre-start on: packets already on their
way when the VIP moves still land. When a new master announces itself, the old one drops the VIP
from its interface at the moment the clients learn the new MAC (gratuitous ARP); a SYN sent in
between reaches the old VM for an address it no longer has and is dropped (the client retries
after 1 s: a timeout). That happens on every move - a drain, and also the bootstrap VM taking the
VIP back, or a split brain healing while clients still use the loser's MAC. With the VIP also on
`lo`, the old VM accepts such packets and its haproxy answers. `arp_ignore=1` / `arp_announce=2`
on the VIP's interface keep the copy silent: a VM never answers ARP for it from `lo`, so it
attracts no traffic of its own. Copies of VIPs a new release no longer has are removed by
pre-start (they are recorded in the job's data dir).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from vipdrain import rtnl
from vipdrain.errors import RuntimeFailure
from vipdrain.fsutil import atomic_write
from vipdrain.layout import Layout
from vipdrain.model import Vip

LOOPBACK = "lo"


def _prefix(vip: Vip) -> str:
    return f"{vip.address}/{32 if vip.family == 4 else 128}"


def _set_address(add: bool, prefix: str, interface: str) -> None:
    """`ip addr replace|del PREFIX dev INTERFACE`, over rtnetlink: no `ip` process per VIP (a
    drain of 50 VIPs spent a third of a second starting them). Failures name that command."""
    try:
        net = ipaddress.ip_interface(prefix)
        rtnl.change_address(add, net.ip, net.network.prefixlen, interface)
    except (OSError, ValueError) as exc:
        raise RuntimeFailure(f"ip addr {'replace' if add else 'del'} {prefix} dev {interface}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from exc


def quiet_arp(interface: str, proc_sys: Path = Path("/proc/sys")) -> None:
    """Answer ARP on `interface` only for addresses configured on it (not for a copy on lo)."""
    for key, value in (("arp_ignore", "1"), ("arp_announce", "2")):
        (proc_sys / "net/ipv4/conf" / interface / key).write_text(value)


def keep_on_loopback(vip: Vip) -> str:
    """Add the VIP to `lo` (idempotent); returns what was done, in a sentence."""
    if vip.family == 4:
        try:
            quiet_arp(vip.interface)
        except OSError as exc:
            raise RuntimeFailure(f"cannot make {vip.interface} quiet for ARP ({exc.strerror}): not copying "
                                 f"{vip.address} to lo") from exc
    _set_address(True, _prefix(vip), LOOPBACK)
    return f"{vip.address} also on lo (silent), for packets already on their way when it moves"


def _record(layout: Layout) -> Path:
    return layout.data_dir / "loopback-copies"


def sync_loopback(layout: Layout, vips: tuple[Vip, ...]) -> list[str]:
    """pre-start: a copy of every VIP on lo; copies of VIPs no longer configured removed.

    Returns sentences about what changed or failed (a copy is an improvement, never a reason to
    fail the deploy).
    """
    said = []
    try:
        previous = set(_record(layout).read_text().split())
    except FileNotFoundError:
        previous = set()
    wanted = {_prefix(v) for v in vips}
    for prefix in sorted(previous - wanted):
        try:
            _set_address(False, prefix, LOOPBACK)
        except RuntimeFailure:
            continue  # not there any more (lo is emptied at boot): nothing to say
        said.append(f"removed {prefix} from lo (no longer a VIP of this job)")
    for vip in vips:
        try:
            keep_on_loopback(vip)
        except RuntimeFailure as exc:
            said.append(str(exc))
    atomic_write(_record(layout), "\n".join(sorted(wanted)) + "\n")
    return said


def remove_stale(vip: Vip) -> str:
    """Remove a VIP a dead keepalived left on its interface (once a peer is proven to hold it)."""
    _set_address(False, _prefix(vip), vip.interface)
    return f"removed {vip.address} from {vip.interface}: keepalived is not running here and a peer holds it"
