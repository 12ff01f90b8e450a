"""Small file helpers with the guarantees vipdrain needs: atomic replace, locks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vipdrain.errors import RuntimeFailure
from vipdrain.waiting import wait_until

#: How often a lock with a deadline is tried again.
LOCK_POLL = 0.05


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` so readers (keepalived's inotify watch) never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class LockBusy(RuntimeFailure):
    """Another process held the lock for the whole deadline."""

    def __init__(self, path: Path, waited: float, holders: list[int]):
        who = f"pid {', '.join(map(str, holders))}" if holders else "another process"
        super().__init__(f"{path} is held by {who}: not acquired within {waited:g} s")
        self.path, self.waited, self.holders = path, waited, holders


def lock_holders(path: Path, proc_locks: Path = Path("/proc/locks")) -> list[int]:
    """Pids holding a flock on `path` (from /proc/locks, matched by inode), best effort."""
    try:
        st = os.stat(path)
        lines = proc_locks.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        words = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 00:2c:1234 0 EOF"; blocked waiters carry "->".
        if len(words) >= 6 and words[1] == "FLOCK" and "->" not in words:
            pid, dev_ino = words[4], words[5].rsplit(":", 1)
            if len(dev_ino) == 2 and dev_ino[1] == str(st.st_ino) and pid.isdigit():
                out.append(int(pid))
    return out


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def locked(path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if needed); released even if we are killed.

    With `timeout`, give up after that many seconds with `LockBusy` (a holder can be stopped,
    SIGSTOP or Ctrl-Z, and would make us wait forever).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        if timeout is None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        elif not _try_flock(fh.fileno()) and not wait_until(lambda: _try_flock(fh.fileno()), budget=timeout,
                                                             step=LOCK_POLL):
            raise LockBusy(path, timeout, lock_holders(path))
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
