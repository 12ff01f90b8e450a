"""Health check of the colocated haproxy: `python -m vipdrain.probe --pid-file F --tcp ENDPOINT`.

Exit 0 iff the pid file names a live process AND haproxy itself answers a request on ENDPOINT
(this VM's own frontend) within the timeout:

- `HOST:PORT` (`[IPv6]:PORT`): an HTTP/1.0 request is sent; any answer counts - bytes, or
  haproxy closing or resetting the connection (a TLS or TCP frontend answers a stray request so).
- `http://HOST:PORT/PATH`: `GET /PATH` must get an HTTP status line below 500 (haproxy's
  `monitor-uri` health frontend, or any HTTP frontend).

A completed TCP handshake proves nothing: the kernel completes it for a listener whose process is
stopped (`kill -STOP`) or hung, and every request through that VM would then time out.

The drain and post-start run `check` in-process; keepalived runs the same check every `interval`
seconds as the job's `bin/healthcheck` (lifecycle/healthcheck: bash builtins, no Python start per
check), held to the same verdicts and messages by tests/unit/test_healthcheck_script.py. It imports
only the standard library.
`killall -0 haproxy` style checks are wrong here: in the lab every VM shares one PID namespace,
and on a real VM haproxy stays alive during its soft-stop while its listeners are already closed.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vipdrain.procs import alive

if TYPE_CHECKING:
    import argparse

DEFAULT_TIMEOUT = 0.7
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})[^\r\n]*")
#: Enough of an answer to hold an HTTP status line.
_ANSWER_BYTES = 512


@dataclass(frozen=True)
class Endpoint:
    """Where the probe asks haproxy for an answer (see the module's docstring for the two forms)."""

    host: str
    port: int
    #: The HTTP path of the `http://` form (a status line below 500 required); None for HOST:PORT.
    path: str | None = None

    def at(self, host: str) -> Endpoint:
        """The same port and path on another host (a peer's own address)."""
        return Endpoint(host, self.port, self.path)

    def __str__(self) -> str:
        where = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        return f"http://{where}{self.path}" if self.path is not None else where


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


def parse_probe(text: str) -> Endpoint:
    """`HOST:PORT`, `[IPv6]:PORT` or `http://HOST:PORT/PATH` -> Endpoint; raises ValueError saying
    what is expected."""
    if not text.startswith("http://"):
        host, port = parse_endpoint(text)
        return Endpoint(host, port)
    rest = text[len("http://"):]
    authority, slash, path = rest.partition("/")
    path = slash + path
    if not _PATH.fullmatch(path):
        raise ValueError("must be HOST:PORT, [IPv6]:PORT or http://HOST:PORT/PATH (the path starts with / "
                         "and has no spaces)")
    try:
        host, port = parse_endpoint(authority)
    except ValueError as exc:
        raise ValueError(f"{exc}, or http://HOST:PORT/PATH") from None
    return Endpoint(host, port, path)


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


def _request(ep: Endpoint) -> bytes:
    host = f"[{ep.host}]" if ":" in ep.host else ep.host
    return (f"GET {ep.path or '/'} HTTP/1.0\r\nHost: {host}:{ep.port}\r\nUser-Agent: vipdrain-probe\r\n"
            "Connection: close\r\n\r\n").encode()


def answer_problem(ep: Endpoint, timeout: float) -> str | None:
    """Why haproxy at `ep` did not answer a request within `timeout` seconds (connect included),
    or None when it did (HOST:PORT: any answer; http://: a status line below 500)."""
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((ep.host, ep.port), timeout=timeout)
    except OSError as exc:
        return f"TCP connect to {ep.host}:{ep.port} failed: {exc.strerror or exc}"
    answer = b""
    with sock:
        try:
            sock.sendall(_request(ep))
            while b"\n" not in answer and len(answer) < _ANSWER_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                chunk = sock.recv(_ANSWER_BYTES)
                if not chunk:
                    break  # closed by haproxy: an answer for HOST:PORT, judged below for http://
                answer += chunk
        except TimeoutError:
            return (f"{ep} accepted the connection but did not answer within {timeout:g} s "
                    "(haproxy stopped or hung?)")
        except ConnectionResetError:
            if ep.path is None:
                return None  # haproxy refused the request itself: it is alive
            return f"{ep} reset the connection without an HTTP answer"
        except OSError as exc:
            return f"{ep}: {exc.strerror or exc}"
    if ep.path is None:
        return None
    status = _STATUS_LINE.match(answer)
    if status is None:
        return f"{ep} did not answer with an HTTP status line ({answer[:40]!r})"
    if int(status.group(1)) >= 500:
        return f"{ep} answered {status.group(0).decode(errors='replace')}"
    return None


def check(pid_file: str | os.PathLike[str], endpoint: str, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """Why haproxy cannot serve here (pid file, then an answer on `endpoint`), or None when it can."""
    ep = parse_probe(endpoint)
    return pid_file_problem(pid_file) or answer_problem(ep, timeout)


def _parser() -> argparse.ArgumentParser:
    import argparse  # here: the drain imports this module, and argparse costs it 7 ms of start-up

    p = argparse.ArgumentParser(prog="vipdrain.probe", description=__doc__.splitlines()[0])
    p.add_argument("--pid-file", required=True, help="haproxy's pid file")
    p.add_argument("--tcp", required=True, metavar="HOST:PORT|http://HOST:PORT/PATH",
                   help="frontend that must answer a request (HOST:PORT: any answer; http://: a status below 500)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help="seconds for the connect and the answer together")
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
