"""keepalived itself: check a config with `keepalived -t`, write it safely, build its command line,
clear pid files a previous run left behind.

What `keepalived -t -f FILE` (2.2.7) does, measured:
- exit 0 when the file is fine - and also when FILE does not exist ("Config files missing"),
  so the file is always written first; 5 on config errors *and* on warnings it corrects
  itself (a fractional VRRPv2 advert_int is "rounded"); 6 when scripts are configured but
  `enable_script_security` is not; 139 (SIGSEGV) on a line of 1024 bytes or more.
- messages go to stderr, as `(FILE: Line N) text`, some repeated several times.
- it checks that interfaces exist (and are not loopback, and support multicast unless unicast
  peers are given), duplicate VRIDs per interface and family, and that track scripts exist and
  are not writable by non-root users; it does not check notify scripts or track file paths.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from vipdrain.errors import RuntimeFailure
from vipdrain.fsutil import atomic_write
from vipdrain.layout import Layout
from vipdrain.procs import alive, read_pid, state_of

KEEPALIVED_ENV = "VIPDRAIN_KEEPALIVED"
CHECK_TIMEOUT = 30.0
#: Name the checked text gets, so keepalived's messages say `(keepalived.conf: Line N)`.
CHECK_FILE_NAME = "keepalived.conf"
_LINE_REF = re.compile(r"Line (\d+)\)")


def keepalived_binary() -> str:
    """`$VIPDRAIN_KEEPALIVED`, else `keepalived` on PATH (or in /usr/sbin, /sbin)."""
    explicit = os.environ.get(KEEPALIVED_ENV)
    if explicit:
        return explicit
    found = shutil.which("keepalived") or shutil.which("keepalived", path="/usr/sbin:/sbin:/usr/local/sbin")
    if not found:
        raise RuntimeFailure(f"keepalived not found: install it or set ${KEEPALIVED_ENV}")
    return found


def check_config(text: str) -> None:
    """Run `keepalived -t` on `text`; raise RuntimeFailure with keepalived's own messages if it
    rejects it (each message followed by the line it points at)."""
    binary = keepalived_binary()
    with tempfile.TemporaryDirectory(prefix="vipdrain-check-") as tmp:
        conf = Path(tmp) / CHECK_FILE_NAME
        conf.write_text(text)
        try:
            # Relative to cwd so messages read `(keepalived.conf: Line N)`, not the temp path.
            done = subprocess.run(
                [binary, "-t", "-f", CHECK_FILE_NAME],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=CHECK_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeFailure(f"cannot run {binary} -t: {exc}") from exc
    if done.returncode == 0:
        return
    how = f"crashed (signal {-done.returncode})" if done.returncode < 0 else f"exit {done.returncode}"
    report = explain_output(done.stderr + done.stdout, text)
    raise RuntimeFailure(f"keepalived -t rejected the configuration ({how}):\n{report}")


def explain_output(output: str, text: str) -> str:
    """keepalived's messages without repeats, each followed by the config line it names (pure)."""
    lines = text.splitlines()
    out: list[str] = []
    for message in dict.fromkeys(m.strip() for m in output.splitlines() if m.strip()):
        out.append(f"  {message}")
        ref = _LINE_REF.search(message)
        if ref and 1 <= int(ref.group(1)) <= len(lines):
            out.append(f"      line {ref.group(1)}: {lines[int(ref.group(1)) - 1].strip()}")
    return "\n".join(out) or "  (keepalived printed nothing)"


def write_checked_config(text: str, path: Path) -> None:
    """Check `text` with keepalived -t, then replace `path` atomically; nothing is written (and
    no directory is created) when the check fails."""
    check_config(text)
    try:
        # 0600: it can hold auth_pass and names the scripts keepalived runs as root.
        atomic_write(Path(path), text, mode=0o600)
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {path}: {exc.strerror or exc}") from exc


def command_line(layout: Layout, config_id: str) -> list[str]:
    """argv that runs this job's keepalived in the foreground, VRRP only, logging to stdout/stderr.

    Debian's keepalived is built without `--enable-log-file` (`-g` is refused), so the caller
    sends the output to `layout.keepalived_log`. Own pid files and config id let several
    keepalived processes (lab VMs) share one machine.
    """
    return [
        keepalived_binary(),
        "-n",  # foreground: the supervisor (monit/bpm or the lab) owns the process
        "-l",
        "-D",
        # Each message once, in the job's log (stderr): not also through syslog, which costs a
        # send per line on a VM and, where no syslog listens on /dev/log (the lab), a write to
        # /dev/console per line (LOG_CONS, from -l). keepalived takes instances over one after
        # another, logging about 10 lines each: measured with 50 VIPs, 6-14 ms per instance with
        # syslog, under 1 ms without (docs/BENCHMARKS.md).
        "-G",
        "-P",
        "-f",
        str(layout.keepalived_conf),
        "-p",
        str(layout.pid_file),
        "-r",
        str(layout.vrrp_pid_file),
        "-c",
        str(layout.checkers_pid_file),
        "-i",
        config_id,
    ]


def pid_files(layout: Layout) -> list[Path]:
    """The pid files keepalived writes for this job (parent, VRRP child, checker child)."""
    return [layout.pid_file, layout.vrrp_pid_file, layout.checkers_pid_file]


def is_ours(pid: int, layout: Layout) -> bool:
    """Is `pid` a live keepalived started with this job's pid file (parent or child)?

    The name alone is not enough: lab VMs share a PID namespace, so another VM's keepalived can
    hold a pid our stale file names.
    """
    if not alive(pid, "keepalived"):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return os.fsencode(str(layout.pid_file)) in argv


def running(layout: Layout) -> bool:
    """Is this job's keepalived running: its parent and its VRRP child both alive?"""
    return all(
        (pid := read_pid(path)) is not None and is_ours(pid, layout)
        for path in (layout.pid_file, layout.vrrp_pid_file)
    )


def started_at(layout: Layout) -> float | None:
    """Wall-clock time this job's running keepalived started, or None when it is not running.

    The parent writes its pid file once, at start, before it forks the VRRP child that reports
    states (keepalived's core/main.c, `pidfile_write(&main_pidfile)`; a reload does not rewrite
    it). A state recorded before this time was reported by an earlier keepalived.
    """
    if not running(layout):
        return None
    try:
        return layout.pid_file.stat().st_mtime
    except OSError:
        return None


def process_states(layout: Layout) -> dict[str, str | None]:
    """/proc state letter of this job's keepalived parent and VRRP child ("parent", "vrrp"), None
    for one not running: `running` in detail (a stopped keepalived, state T, is running but silent)."""
    out: dict[str, str | None] = {}
    for role, path in (("parent", layout.pid_file), ("vrrp", layout.vrrp_pid_file)):
        pid = read_pid(path)
        out[role] = state_of(pid, "keepalived") if pid is not None and is_ours(pid, layout) else None
    return out


def clear_stale_pid_files(layout: Layout) -> list[Path]:
    """Remove pid files that do not name a running keepalived of this job; return those removed.

    keepalived refuses to start ("daemon is already running") when its pid file names a live
    process, which pid reuse makes likely after a crash. When the parent is not running, every
    pid file goes (a child never outlives its parent: keepalived sets the parent-death signal).
    """
    parent = read_pid(layout.pid_file)
    parent_runs = parent is not None and is_ours(parent, layout)
    removed = []
    for path in pid_files(layout):
        pid = read_pid(path)
        if parent_runs and pid is not None and is_ours(pid, layout):
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed
