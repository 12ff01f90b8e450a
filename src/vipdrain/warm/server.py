"""The warm drain's server (`vipdrain drain-server`): imports the drain once, then forks a child
per request that runs `cli.main` with the client's fds, environment and working directory.

Started next to keepalived (the job's keepalived_ctl; the lab's `VM.start_keepalived`) and
stopped with it. It holds no state between drains: each child reads the config, takes the drain
lock and decides as an in-process drain does. A server that is gone, stopped or hung only costs
the start-up it saves (the client runs the drain itself); a child never outlives its client.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import resource
import signal
import socket
import sys
import threading
import traceback
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from vipdrain.fsutil import atomic_write
from vipdrain.layout import Layout
from vipdrain.procs import read_pid
from vipdrain.warm.client import (
    EXITED,
    GO,
    HANDSHAKE_TIMEOUT,
    MAX_REQUEST,
    READY,
    REQUEST_FDS,
    STARTED,
    decode_request,
)

log = logging.getLogger("vipdrain.warm")

#: What a child runs with the request's argv; returns the exit code.
Runner = Callable[[list[str]], int]

#: What a drain imports (cli._cmd_drain and the calls after it), loaded once by the server.
PRELOAD = ("vipdrain.cli", "vipdrain.drain", "vipdrain.fsutil", "vipdrain.keepalived", "vipdrain.notify",
           "vipdrain.observe", "vipdrain.config", "vipdrain.preserve", "vipdrain.hold", "vipdrain.metrics",
           "tenacity")
#: Seconds a connected client has to send its whole request (a client that stalls must not
#: keep the next drain waiting longer than this).
REQUEST_TIMEOUT = 2.0
#: Seconds between checks that the socket file is still ours (a removed or replaced socket:
#: this server can no longer be reached and exits).
IDLE_CHECK = 5.0


@dataclass(frozen=True)
class Request:
    """One drain to run: its command line, environment, working directory, umask and fds 0, 1, 2."""

    argv: list[str]
    env: dict[bytes, bytes]
    cwd: bytes
    umask: int
    fds: list[int]


def receive(conn: socket.socket) -> Request:
    """Read one request (`vipdrain.warm.client.encode_request`) and the fds it carries.
    ValueError or OSError when it is incomplete or malformed; its fds are closed then."""
    fds: list[int] = []
    try:
        head, ancillary, _flags, _addr = conn.recvmsg(4, socket.CMSG_SPACE(REQUEST_FDS * 4))
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += array("i", data[: len(data) - len(data) % 4]).tolist()
        if len(head) < 4:
            head += _read(conn, 4 - len(head))
        size = int.from_bytes(head, "big")
        if size > MAX_REQUEST:
            raise ValueError(f"request of {size} bytes (at most {MAX_REQUEST})")
        if len(fds) != REQUEST_FDS:
            raise ValueError(f"request with {len(fds)} fds (expected {REQUEST_FDS})")
        argv, env, cwd, umask = decode_request(_read(conn, size))
        return Request(argv, env, cwd, umask, fds)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ValueError(f"request cut short after {len(data)} of {n} bytes")
        data += chunk
    return data


def _die_with_client(conn: socket.socket) -> None:
    """In the child, after GO: the client went away (killed, or its drain script was), so this
    drain dies as an in-process one would have with it."""
    try:
        while conn.recv(64):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)


def run_child(conn: socket.socket, request: Request, run: Runner) -> int:
    """In the forked child: become the client's process, wait for its GO, run the drain."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for target, fd in enumerate(request.fds):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environb.update(request.env)
    os.umask(request.umask)  # the files the drain creates (its log) get the caller's mode
    try:
        os.chdir(request.cwd)
    except OSError:
        os.chdir("/")
    conn.settimeout(HANDSHAKE_TIMEOUT * 4)
    try:
        conn.sendall(STARTED)
        if conn.recv(1) != GO:
            return 0  # the client gave up before GO and runs the drain itself
    except OSError:
        return 0
    conn.settimeout(None)
    threading.Thread(target=_die_with_client, args=(conn,), daemon=True).start()
    try:
        code = run(request.argv)
    except SystemExit as exc:  # argparse's errors
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    # This process's cost, which no rusage of the client's sees (the benchmark reads it here).
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"drain server child {os.getpid()}: exit {code}, CPU user {own.ru_utime + kids.ru_utime:.3f} s "
          f"+ sys {own.ru_stime + kids.ru_stime:.3f} s (with its own children), peak RSS {own.ru_maxrss} KiB",
          file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    conn.sendall(EXITED + b"%d\n" % code)
    return code


def handle(conn: socket.socket, listener: socket.socket, run: Runner) -> None:
    """Take one connection: READY, its request, a child for it (the server goes on at once)."""
    conn.settimeout(REQUEST_TIMEOUT)
    try:
        conn.sendall(READY)
        request = receive(conn)
    except (OSError, ValueError) as exc:
        log.warning("drain server: dropped a request: %s", exc)
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            listener.close()
            code = run_child(conn, request, run)
        finally:
            os._exit(code)
    for fd in request.fds:
        os.close(fd)
    conn.close()
    log.info("drain server: %s in child %d", " ".join(request.argv), pid)


def server_note(warm_start: bool, path: str) -> str | None:
    """A sentence for `vipdrain status` when the drain server should answer and does not, else
    None. Not a problem: every drain still runs, in a process of its own."""
    if not warm_start or answers(path):
        return None
    return (f"the drain server does not answer on {path}: BOSH drains start in a process of their own "
            "(about 0.1 s later); keepalived_ctl start starts a new one")


def answers(path: str) -> bool:
    """Does a live server answer READY at `path`?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(HANDSHAKE_TIMEOUT)
        try:
            probe.connect(path)
            return probe.recv(1) == READY
        except OSError:
            return False


def serve(layout: Layout, run: Runner | None = None) -> int:
    """Listen on `layout.drain_socket` until SIGTERM or until the socket is no longer ours; each
    request runs `run(argv)` (default `vipdrain.cli.main`) in a child."""
    for name in PRELOAD:
        importlib.import_module(name)
    if run is None:
        from vipdrain.cli import main as run
    path = str(layout.drain_socket)
    if answers(path):
        log.error("drain server: another server answers on %s; not starting a second", path)
        return 1
    # Before the socket: whoever sees the socket (keepalived_ctl, a test) finds the pid too.
    atomic_write(layout.drain_server_pid, f"{os.getpid()}\n")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    old_umask = os.umask(0o177)  # root only: a request runs a drain
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    inode = os.stat(path).st_ino
    listener.listen(16)
    listener.settimeout(IDLE_CHECK)

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    # Children are reaped by the kernel; each sets SIGCHLD back for the drain's own subprocesses.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    os.chdir("/")
    log.info("drain server: listening on %s (pid %d)", path, os.getpid())
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                if not _still_ours(path, inode):
                    log.warning("drain server: %s was removed or replaced; exiting", path)
                    return 0
                continue
            handle(conn, listener, run)
    finally:
        listener.close()
        if _still_ours(path, inode):
            os.unlink(path)
        if read_pid(layout.drain_server_pid) == os.getpid():
            layout.drain_server_pid.unlink(missing_ok=True)
        log.info("drain server: stopped")


def _still_ours(path: str, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False
