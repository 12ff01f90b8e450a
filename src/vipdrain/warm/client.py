"""The warm drain's client, and the entry point of every `vipdrain` call (`main`).

Import-light on purpose: this module runs before anything else in every call, so it uses only
modules built into the interpreter (`_socket`, `select`) and `os`/`sys`. A BOSH drain
(`vipdrain drain ACTION ...`) goes to the resident server when one answers; everything else, and
a drain no server takes, runs in this process through `vipdrain.cli`, as before.

The exchange, over the server's unix socket (`socket_path`):

    server: R                      ready (a stopped or hung server never says it: fall back)
    client: request + fds          argv, environment, cwd, umask; stdin, a pipe for stdout, stderr
    child:  S                      forked, about to run
    client: G                      go (the client's last moment to fall back: it closes instead)
    child:  X<exit code>\\n         cli.main returned; its stdout is already in the pipe

Before G either side may give up and nothing has happened; after G the client waits for the
child, and the child dies when the client does (`vipdrain.warm.server`).
"""

from __future__ import annotations

import _socket
import os
import select
import sys

# What collections.abc re-exports, already loaded by `os`: collections.abc itself would import
# the `collections` package, 2 ms of every vipdrain call.
from _collections_abc import Mapping, Sequence

#: The server's socket, in the job's run directory (tmpfs: gone after a reboot).
SOCKET_NAME = "drain.sock"
#: `VIPDRAIN_WARM=0`: every drain runs in-process (benchmarks compare the two ways).
WARM_ENV = "VIPDRAIN_WARM"
READY, STARTED, GO, EXITED = b"R", b"S", b"G", b"X"
#: Seconds for the server's READY and the child's STARTED. Past them the drain runs in-process,
#: which is slower to start (about 0.1 s) than any server that is merely busy.
HANDSHAKE_TIMEOUT = 0.5
#: A request larger than this is refused (argv and environment are a few KiB).
MAX_REQUEST = 1 << 20
#: The fds a request carries: the child's 0, 1 and 2.
REQUEST_FDS = 3
_OPTIONS_WITH_VALUE = ("--root", "--config")


def socket_path(root: str | None, job: str = "keepalived") -> str:
    """Where the server listens for the job at `root` (`vipdrain.layout.Layout.drain_socket`)."""
    return os.path.join(root or "/var/vcap", "sys", "run", job, SOCKET_NAME)


def warm_root(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The root to find a server under when `argv` is a BOSH drain (`drain ACTION ...`: the job's
    drain script), else None. A manual drain (no positional argument) stays in-process: it talks
    to a person at a terminal, whose Ctrl-C it must get."""
    if argv[:1] != ["drain"] or environ.get(WARM_ENV) == "0":
        return None
    root = environ.get("VIPDRAIN_ROOT")
    bosh = False
    words = list(argv[1:])
    while words:
        word = words.pop(0)
        name, eq, value = word.partition("=")
        if name in _OPTIONS_WITH_VALUE:
            value = value if eq else (words.pop(0) if words else "")
            if name == "--root":
                root = value
        elif word.startswith("-"):
            if word not in ("-v", "--verbose"):
                return None  # --help and anything unusual: argparse, in-process
        else:
            bosh = True
    return (root or "/var/vcap") if bosh else None


def encode_request(argv: Sequence[str], environ: Mapping[bytes, bytes], cwd: bytes, umask: int) -> bytes:
    """One request: a 4-byte length, then NUL-separated cwd, umask, argc, argv and KEY=VALUE pairs."""
    fields = [cwd, b"%o" % umask, b"%d" % len(argv), *(os.fsencode(a) for a in argv),
              *(k + b"=" + v for k, v in environ.items())]
    body = b"\0".join(fields)
    return len(body).to_bytes(4, "big") + body


def decode_request(body: bytes) -> tuple[list[str], dict[bytes, bytes], bytes, int]:
    """The inverse of `encode_request` (without the length); ValueError when malformed."""
    cwd, umask, argc, *rest = body.split(b"\0")
    mask = int(umask, 8)
    if not 0 <= mask <= 0o777:
        raise ValueError(f"umask {umask!r}")
    n = int(argc)
    if n < 0 or n > len(rest):
        raise ValueError(f"argc {n} with {len(rest)} fields")
    env: dict[bytes, bytes] = {}
    for pair in rest[n:]:
        key, eq, value = pair.partition(b"=")
        if not eq or not key:
            raise ValueError(f"environment entry without '=': {pair[:40]!r}")
        env[key] = value
    return [os.fsdecode(a) for a in rest[:n]], env, cwd, mask


def _recv_exact(sock: _socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _stdin_fd() -> int:
    try:
        os.fstat(0)
        return 0
    except OSError:  # closed: the child gets /dev/null, as a process started without stdin would
        return os.open(os.devnull, os.O_RDONLY)


def run_warm(argv: Sequence[str], path: str) -> int | None:
    """Run `vipdrain ARGV` in a child of the server at `path`; its exit code, or None when no
    server took it (then nothing ran: the caller runs it in-process)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    read_end, write_end = os.pipe()
    try:
        sock.settimeout(HANDSHAKE_TIMEOUT)
        try:
            sock.connect(path)
            if _recv_exact(sock, 1) != READY:
                return None
            umask = os.umask(0)
            os.umask(umask)
            request = encode_request(argv, dict(os.environb), os.getcwdb(), umask)
            fds = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in (_stdin_fd(), write_end, 2))
            sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
            if _recv_exact(sock, 1) != STARTED:
                return None
            sock.sendall(GO)
        except OSError:  # no server, a stale socket, a timeout: nothing ran
            return None
        os.close(write_end)
        write_end = -1
        sock.settimeout(None)
        stdout, read_end = read_end, -1  # _relay closes it
        return _relay(sock, stdout)
    finally:
        sock.close()
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)


def _relay(sock: _socket.socket, stdout: int) -> int:
    """Copy the child's stdout to ours until it reports its exit code (1 if it died without one)."""
    poll = select.poll()
    poll.register(stdout, select.POLLIN)
    poll.register(sock.fileno(), select.POLLIN)
    status = b""
    pipe_open = True
    try:
        while True:
            for fd, _ in poll.poll():
                if fd == stdout:
                    if data := os.read(stdout, 65536):
                        os.write(1, data)
                    else:
                        poll.unregister(stdout)
                        pipe_open = False
                    continue
                data = sock.recv(64)
                if not data:
                    print("vipdrain: the warm drain's process ended without an exit code (killed?)",
                          file=sys.stderr)
                    return 1
                status += data
                if status.endswith(b"\n"):
                    # What the child wrote to stdout is in the pipe already. A process it left
                    # behind (the notice repeater) may hold the pipe open: take what is there.
                    if pipe_open:
                        _copy_available(stdout)
                    return _exit_code(status)
    finally:
        os.close(stdout)


def _copy_available(fd: int) -> None:
    os.set_blocking(fd, False)
    try:
        while data := os.read(fd, 65536):
            os.write(1, data)
    except BlockingIOError:
        pass


def _exit_code(status: bytes) -> int:
    try:
        return int(status[len(EXITED):-1]) if status.startswith(EXITED) else 1
    except ValueError:
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vipdrain` console script and of `python -m vipdrain`."""
    args = list(sys.argv[1:] if argv is None else argv)
    root = warm_root(args, os.environ)
    if root is not None:
        code = run_warm(args, socket_path(root))
        if code is not None:
            return code
    from vipdrain.cli import main as cli_main

    return cli_main(args)
