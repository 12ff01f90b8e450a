"""Addresses on the local interfaces, from `ip -j addr` (in the current network namespace)."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from typing import Any

from vipdrain.errors import RuntimeFailure
from vipdrain.model import IPAddress

IP_TIMEOUT = 10.0


def parse_ip_addr_json(text: str) -> dict[str, list[IPAddress]]:
    """Interface name -> its addresses, from the JSON `ip -j addr` prints (pure).

    Interfaces without addresses are kept (with an empty list); zone ids are dropped.
    """
    try:
        links: Any = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise RuntimeFailure(f"cannot parse `ip -j addr` output: {exc}") from exc
    result: dict[str, list[IPAddress]] = {}
    for link in links if isinstance(links, list) else []:
        name = link.get("ifname")
        if not isinstance(name, str):
            continue
        addrs = result.setdefault(name, [])
        for info in link.get("addr_info") or []:
            local = str(info.get("local", "")).split("%", 1)[0]
            try:
                addrs.append(ipaddress.ip_address(local))
            except ValueError:
                continue
    return result


def local_addresses() -> dict[str, list[IPAddress]]:
    """Interface name -> addresses, as `ip -j addr` shows them now."""
    ip = shutil.which("ip") or "/sbin/ip"
    try:
        done = subprocess.run(
            [ip, "-j", "addr", "show"], capture_output=True, text=True, timeout=IP_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeFailure(f"cannot list local addresses with `{ip} -j addr`: {exc}") from exc
    if done.returncode != 0:
        raise RuntimeFailure(f"`{ip} -j addr` failed (exit {done.returncode}): {done.stderr.strip()}")
    return parse_ip_addr_json(done.stdout)


def find_interface(addresses: dict[str, list[IPAddress]], ip: IPAddress) -> str | None:
    """The first interface (in `ip` order) holding `ip`, or None (pure)."""
    return next((name for name, addrs in addresses.items() if ip in addrs), None)


def interface_of(ip: IPAddress) -> str | None:
    """The local interface holding `ip`, or None when no interface has it."""
    return find_interface(local_addresses(), ip)
