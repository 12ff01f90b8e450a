"""Checks of single values that several config sections share: commands, addresses, interfaces."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from vipdrain.config.schema import describe
from vipdrain.model import IPAddress
from vipdrain.names import INTERFACE_NAME
from vipdrain.render import MAX_LINE_BYTES, unsafe_character

#: Longest operator command or extra line: rendered lines must stay within keepalived's limit
#: (MAX_LINE_BYTES) including indentation and keyword.
MAX_COMMAND_BYTES = MAX_LINE_BYTES - 100
#: haproxy's pid file becomes one word of the health-check command.
ABSOLUTE_PATH = re.compile(r"/[A-Za-z0-9_.+@%=,:~/-]*")


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
