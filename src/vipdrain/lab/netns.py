"""Network namespaces for the lab: create, delete, run commands in them, and enter them from a thread.

Everything the lab creates is named `<prefix>-<role>`, and a namespace is only ever deleted by the
run that created it (the caller passes exact names; nothing here lists and deletes by pattern).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from vipdrain.errors import RuntimeFailure

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000

T = TypeVar("T")


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0,
        input: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output as text; raise RuntimeFailure (with its stderr) if `check`."""
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, input=input, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeFailure(f"{' '.join(argv)} did not finish within {timeout:g} s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise RuntimeFailure(f"{' '.join(argv)} failed with exit code {proc.returncode}: {detail}")
    return proc


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run iproute2's `ip` with `args`."""
    return run(["ip", *args], check=check)


def exists(name: str) -> bool:
    """Is there a named network namespace `name`?"""
    return (NETNS_DIR / name).exists()


def add(name: str) -> None:
    """Create namespace `name` and bring its loopback up (many tools expect 127.0.0.1 to work)."""
    ip("netns", "add", name)
    ip("-n", name, "link", "set", "lo", "up")


def delete(name: str) -> None:
    """Delete namespace `name` if it exists (idempotent)."""
    if exists(name):
        ip("netns", "del", name, check=False)


def exec_argv(name: str, argv: Sequence[str]) -> list[str]:
    """argv that runs `argv` inside namespace `name`.

    `ip netns exec` execs the command in place, so the pid a caller gets from Popen is the
    command's own pid - which is what lets the lab stop its processes by pid.
    """
    return ["ip", "netns", "exec", name, *argv]


def pids(name: str) -> list[int]:
    """Pids of every process whose network namespace is `name` (empty if it does not exist)."""
    if not exists(name):
        return []
    out = ip("netns", "pids", name, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def _setns(name: str) -> None:
    """Move the *calling thread* into namespace `name` (network namespaces are per thread)."""
    fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        setns = getattr(os, "setns", None)  # Python >= 3.12
        if setns is not None:
            setns(fd, CLONE_NEWNET)
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def call_in(name: str, fn: Callable[..., T], *args: object, timeout: float = 30.0) -> T:
    """Call `fn(*args)` in a fresh thread that has entered namespace `name`; return its result.

    Sockets opened there stay in that namespace after the thread ends, so the lab can probe,
    watch addresses (netlink) and send ARP from inside a VM or client without a subprocess.
    """
    box: dict[str, object] = {}

    def target() -> None:
        try:
            _setns(name)
            box["result"] = fn(*args)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise RuntimeFailure(f"call in namespace {name} did not finish within {timeout:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def set_sysctl(name: str, key: str, value: str) -> None:
    """Set a per-namespace sysctl (`net/...`) inside `name` (procfs resolves net/ per thread)."""

    def write() -> None:
        Path("/proc/sys", key).write_text(value)

    call_in(name, write)
