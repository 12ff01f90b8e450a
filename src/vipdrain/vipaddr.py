"""VIP addresses vipdrain itself adds or removes, outside keepalived.

A copy of a VIP on `lo` while it is handed over: packets already on their way still land.

When the new master announces itself, the old one drops the VIP from its interface at the same
moment the clients learn the new MAC (gratuitous ARP); a SYN sent in between reaches the old VM
for an address it no longer has and is dropped (the client retries after 1 s: a timeout). With
the VIP also on `lo`, the old VM still accepts it and its haproxy - still running while drain
waits - answers. `arp_ignore=1` / `arp_announce=2` on the VIP's interface keep the copy silent:
this VM never answers ARP for the VIP from `lo`, so it attracts no new traffic.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from vipdrain.errors import RuntimeFailure
from vipdrain.model import Vip

LOOPBACK = "lo"


def _prefix(vip: Vip) -> str:
    return f"{vip.address}/{32 if vip.family == 4 else 128}"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


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
    proc = _ip("addr", "replace", _prefix(vip), "dev", LOOPBACK)
    if proc.returncode != 0:
        raise RuntimeFailure(f"ip addr replace {_prefix(vip)} dev lo: {proc.stderr.strip()}")
    return f"{vip.address} also on lo until the next start, for packets already on their way"


def release_loopback(vips: list[Vip] | tuple[Vip, ...]) -> list[str]:
    """Remove the VIPs' copies from `lo` (pre-start, undrain); returns what was removed."""
    removed = []
    for vip in vips:
        if _ip("addr", "del", _prefix(vip), "dev", LOOPBACK).returncode == 0:
            removed.append(f"removed {vip.address} from lo")
    return removed


def remove_stale(vip: Vip) -> str:
    """Remove a VIP a dead keepalived left on its interface (once a peer is proven to hold it)."""
    proc = _ip("addr", "del", _prefix(vip), "dev", vip.interface)
    if proc.returncode != 0:
        raise RuntimeFailure(f"ip addr del {_prefix(vip)} dev {vip.interface}: {proc.stderr.strip()}")
    return f"removed {vip.address} from {vip.interface}: keepalived is not running here and a peer holds it"
