"""Processes by pid file: is the process a pid file names alive, and is it the one we expect?

Lab VMs share one PID namespace and pids get reused, so "a process with that pid exists" is not
enough: the command name must match too.
"""

from __future__ import annotations

from pathlib import Path


def read_pid(pid_file: Path) -> int | None:
    """The pid in `pid_file`, or None when the file is missing or does not hold a number."""
    try:
        text = pid_file.read_text().strip()
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        return None
    return int(text) if text.isdigit() else None


def alive(pid: int, name: str | None = None) -> bool:
    """Is `pid` running (not a zombie), and - if `name` is given - is its command `name`?"""
    return state_of(pid, name) is not None


def state_of(pid: int, name: str | None = None) -> str | None:
    """The /proc state letter of `pid` (R, S, D, T for stopped...), None when it is gone, a zombie,
    or - if `name` is given - not running command `name`."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # Field 3, after the parenthesised command (which may itself contain spaces or parens).
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    state = stat[stat.rindex(")") + 2 :].split(" ", 1)[0]
    if state in ("Z", "X") or (name is not None and comm != name[:15]):
        return None
    return state


def running_pid(pid_file: Path, name: str | None = None) -> int | None:
    """The pid from `pid_file` if that process is alive (and named `name`), else None."""
    pid = read_pid(pid_file)
    return pid if pid is not None and alive(pid, name) else None
