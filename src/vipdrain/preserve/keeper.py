"""The drain's side of the handoff: `start_handoff` sends the first notices and leaves a detached
repeater (`python -m vipdrain.preserve keep`) announcing while the VIPs are still here;
`end_handoff` stops it. `main` is the repeater's (and `cleanup`'s) command line."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vipdrain import netstate
from vipdrain.errors import RuntimeFailure
from vipdrain.layout import Layout
from vipdrain.model import IPAddress, JobConfig, Vip
from vipdrain.preserve.nft import remove_forwarder
from vipdrain.preserve.notice import (
    NOTICE_BURST,
    NOTICE_INTERVAL,
    Sender,
    notice_source,
    notice_targets,
    send_notices,
)
from vipdrain.procs import read_pid

if TYPE_CHECKING:
    import argparse

log = logging.getLogger("vipdrain.preserve")

#: The repeater announces for the drain's deadline plus this, then gives up.
ANNOUNCE_SLACK = 5.0


def keeper_pid_file(layout: Layout) -> Path:
    """Pid file of the notice repeater (`python -m vipdrain.preserve keep`)."""
    return layout.run_dir / "preserve-keeper.pid"


def is_keeper_cmdline(args: Sequence[str], root: Path) -> bool:
    """Is `args` (a /proc/PID/cmdline, split) our repeater for the job under `root`?"""
    try:
        i = list(args).index("vipdrain.preserve")
    except ValueError:
        return False
    rest = list(args[i + 1:])
    return rest[:1] == ["keep"] and "--root" in rest and rest[rest.index("--root") + 1:][:1] == [str(root)]


def running_keeper(layout: Layout) -> int | None:
    """The live repeater's pid, checked by its command line (pids are reused)."""
    pid = read_pid(keeper_pid_file(layout))
    if pid is None:
        return None
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    return pid if is_keeper_cmdline(args, layout.root) else None


def _stop_keeper(layout: Layout, timeout: float = 2.0) -> None:
    """SIGTERM the repeater, if it runs, and wait (briefly) until it is gone."""
    pid = running_keeper(layout)
    keeper_pid_file(layout).unlink(missing_ok=True)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and not _is_zombie(pid):
        time.sleep(0.02)
    log.info("stopped the drain-notice repeater (pid %d)", pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2:].startswith(("Z", "X"))


def keeper_argv(cfg: JobConfig, layout: Layout, vips: Sequence[Vip], targets: Sequence[IPAddress]) -> list[str]:
    """Command line of the repeater for `vips` (everything it needs is on it: no config load)."""
    argv = [sys.executable, "-m", "vipdrain.preserve", "keep", "--root", str(layout.root), "--job", layout.job,
            "--source", str(notice_source(cfg)), "--port", str(cfg.drain.preserve_port),
            "--announce-for", f"{cfg.drain.timeout + ANNOUNCE_SLACK:g}"]
    for target in targets:
        argv += ["--peer", str(target)]
    for vip in vips:
        argv += ["--vip", f"{vip.address},{vip.interface}"]
    return argv


def _spawn_detached(argv: Sequence[str]) -> int:
    """Start `argv` in its own session with no inherited descriptors: BOSH reads the drain's
    stdout until it closes, so the repeater must not hold it."""
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
    return proc.pid


def start_handoff(
    cfg: JobConfig,
    layout: Layout,
    vips: Sequence[Vip],
    send: Sender = send_notices,
    spawn: Callable[[Sequence[str]], int] = _spawn_detached,
) -> list[str]:
    """Old master, in the drain: announce that `vips` (held here, already copied to `lo`) are
    about to be handed over gracefully. Call it after the `lo` copies exist and BEFORE the resign
    advert: a peer must be armed before it takes over. Logs what it did; returns warnings.

    Sends NOTICE_BURST notices at once, then leaves a detached repeater that sends one every
    NOTICE_INTERVAL while a VIP is still on its interface (the peers' arms then last
    `preserve_grace` from the takeover). Never raises: the handoff itself does not depend on it.
    """
    if not cfg.drain.preserve_connections or not vips:
        return []
    source = notice_source(cfg)
    targets = notice_targets(source, cfg.peers)
    if not targets:
        return [f"connection preservation: no IPv{source.version} peer to notify; connections will not be kept"]
    addresses = [v.address for v in vips]
    warnings: list[str] = []
    for _ in range(NOTICE_BURST):
        warnings += [p for p in send(source, targets, addresses, cfg.drain.preserve_port) if p not in warnings]
    log.info("drain notice for %s sent to %s: their connections are forwarded here for %g s after the handoff",
             ", ".join(map(str, addresses)), ", ".join(map(str, targets)), cfg.drain.preserve_grace)
    _stop_keeper(layout)
    try:
        pid = spawn(keeper_argv(cfg, layout, vips, targets))
    except OSError as exc:
        return [*warnings, f"drain-notice repeater not started ({exc}); the grace period counts from now"]
    keeper_pid_file(layout).parent.mkdir(parents=True, exist_ok=True)
    keeper_pid_file(layout).write_text(f"{pid}\n")
    return warnings


def end_handoff(layout: Layout) -> None:
    """Undrain, pre-start, or a handoff that failed: stop announcing at once.

    Arms already set on peers run out by themselves within their grace period.
    """
    _stop_keeper(layout)


def announce(
    vips: Sequence[tuple[IPAddress, str]],
    send: Callable[[Sequence[IPAddress]], list[str]],
    addresses: Callable[[], Mapping[str, Sequence[IPAddress]]],
    budget: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = NOTICE_INTERVAL,
) -> list[IPAddress]:
    """Repeat notices for the VIPs still on their interface, until none is or `budget` runs out.

    Returns the VIPs still here at the end (a handoff that did not happen). A VIP that left is
    never announced again: a notice reaching a peer that already serves the VIP could make it
    forward connections it accepted itself.
    """
    deadline = clock() + budget
    pending = list(vips)
    while pending:
        try:
            here = addresses()
        except RuntimeFailure as exc:
            log.warning("cannot list addresses (%s); announcing as before", exc)
        else:
            pending = [(vip, dev) for vip, dev in pending if vip in here.get(dev, ())]
        if not pending or clock() >= deadline:
            break
        for problem in send([vip for vip, _ in pending]):
            log.warning(problem)
        sleep(interval)
    return [vip for vip, _ in pending]


def _keep(args: argparse.Namespace) -> int:
    layout = Layout(root=Path(args.root), job=args.job)
    source = ipaddress.ip_address(args.source)
    targets = [ipaddress.ip_address(p) for p in args.peer]
    vips = []
    for item in args.vip:
        address, _, dev = item.partition(",")
        vips.append((ipaddress.ip_address(address), dev))
    log.info("announcing the drain of %s to %s", ", ".join(str(v) for v, _ in vips), ", ".join(args.peer))
    left = announce(vips, lambda these: send_notices(source, targets, these, args.port),
                    netstate.local_addresses, args.announce_for)
    if left:
        log.warning("gave up announcing after %g s: %s still here (no handoff)", args.announce_for,
                    ", ".join(map(str, left)))
    else:
        log.info("every announced VIP has left this VM; the peers forward its connections for their grace period")
    if read_pid(keeper_pid_file(layout)) == os.getpid():
        keeper_pid_file(layout).unlink(missing_ok=True)
    return 0


def _cleanup(args: argparse.Namespace) -> int:
    end_handoff(Layout(root=Path(args.root), job=args.job))
    remove_forwarder()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """`keep` (the repeater the drain starts) and `cleanup` (undo everything now)."""
    import argparse  # here: the drain imports this module for its handoff, argparse is its own CLI's

    from vipdrain import preserve  # the package's docstring describes the command

    parser = argparse.ArgumentParser(prog="python -m vipdrain.preserve", description=preserve.__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("keep", help="repeat drain notices while the VIPs are still here (started by the drain)")
    p.add_argument("--root", required=True)
    p.add_argument("--job", default="keepalived")
    p.add_argument("--source", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--announce-for", type=float, required=True, help="give up after this many seconds")
    p.add_argument("--peer", action="append", required=True)
    p.add_argument("--vip", action="append", required=True, metavar="ADDRESS,INTERFACE")
    p.set_defaults(handler=_keep)
    p = sub.add_parser("cleanup", help="stop the repeater and remove the nft table (undo everything now)")
    p.add_argument("--root", required=True)
    p.add_argument("--job", default="keepalived")
    p.set_defaults(handler=_cleanup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m vipdrain.preserve keep|cleanup ...`."""
    args = build_parser().parse_args(argv)
    layout = Layout(root=Path(args.root), job=args.job)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=_log_handlers(layout))
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


def _log_handlers(layout: Layout) -> list[logging.Handler]:
    """stderr (an operator's cleanup) and the job's vipdrain.log when writable (the repeater has
    no terminal: its stderr is /dev/null)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    try:
        layout.log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(layout.vipdrain_log))
    except OSError:
        pass
    return handlers
