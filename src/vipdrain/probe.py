"""Health check of the colocated haproxy: `python -m vipdrain.probe --pid-file F --tcp HOST:PORT`.

Exit 0 iff the pid file names a live process AND a TCP connection to HOST:PORT (this VM's own
frontend) opens within the timeout. keepalived runs it every `interval` seconds, so it imports
only the standard library. `killall -0 haproxy` style checks are wrong here: in the lab every VM
shares one PID namespace, and on a real VM haproxy stays alive during its soft-stop while its
listeners are already closed.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from vipdrain.procs import alive

DEFAULT_TIMEOUT = 0.7
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def parse_endpoint(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT` -> (host, port); raises ValueError saying what is expected."""
    expected = "must be HOST:PORT or [IPv6]:PORT with a port 1..65535"
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(expected) from None
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"{expected} (write an IPv6 host in brackets)")
        if host and not _HOSTNAME.fullmatch(host):
            raise ValueError(f"{expected} (HOST is an IPv4 address or a host name)")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(expected)
    return host, int(port)


def pid_file_problem(pid_file: str | os.PathLike[str]) -> str | None:
    """Why the pid file does not name a live process, or None when one of its pids is alive."""
    try:
        words = Path(pid_file).read_text().split()
    except OSError as exc:
        return f"cannot read pid file {pid_file}: {exc.strerror or exc}"
    pids = [int(w) for w in words if w.isdigit() and int(w) > 0]
    if not pids:
        return f"pid file {pid_file} holds no pid"
    if not any(alive(pid) for pid in pids):  # zombies count as dead: they serve nothing
        return f"no process of pid file {pid_file} is alive ({', '.join(map(str, pids))})"
    return None


def tcp_problem(host: str, port: int, timeout: float) -> str | None:
    """Why a TCP connection to host:port did not open within `timeout` seconds, or None."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"TCP connect to {host}:{port} failed: {exc.strerror or exc}"


def check(pid_file: str | os.PathLike[str], endpoint: str, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """Why haproxy cannot serve here (pid file, then TCP connect), or None when it can."""
    host, port = parse_endpoint(endpoint)
    return pid_file_problem(pid_file) or tcp_problem(host, port, timeout)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vipdrain.probe", description=__doc__.splitlines()[0])
    p.add_argument("--pid-file", required=True, help="haproxy's pid file")
    p.add_argument("--tcp", required=True, metavar="HOST:PORT", help="frontend that must accept a connection")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="TCP connect timeout in seconds")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0 when haproxy can serve, 1 when not (the reason goes to stderr), 2 on bad usage."""
    args = _parser().parse_args(argv)
    try:
        problem = check(args.pid_file, args.tcp, args.timeout)
    except ValueError as exc:
        print(f"vipdrain.probe: --tcp {args.tcp!r} {exc}", file=sys.stderr)
        return 2
    if problem:
        print(f"vipdrain.probe: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
