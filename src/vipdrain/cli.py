"""The `vipdrain` command line: the only module that prints for humans or exits.

Library modules return values or raise `VipdrainError`s; this maps them to exit codes:
0 ok, 2 invalid configuration, 1 anything else that failed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Union

from vipdrain import __version__
from vipdrain.errors import EXIT_OK, EXIT_RUNTIME, ConfigInvalid, VipdrainError
from vipdrain.layout import Layout

if TYPE_CHECKING:
    import argparse

#: What a handler gets: argparse's namespace, or the drain's fast path's (`drain_fast_args`).
Args = Union["argparse.Namespace", SimpleNamespace]
Handler = Callable[[Args], int]


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """Options every command that reads the job's config shares."""
    p.add_argument(
        "--config",
        metavar="FILE",
        help="the job's rendered config file (default: <root>/jobs/keepalived/config/vipdrain.yml)",
    )
    p.add_argument("--root", metavar="DIR", help="BOSH root (default: $VIPDRAIN_ROOT or /var/vcap)")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug details")


def _layout(args: Args) -> Layout:
    return Layout.from_env(getattr(args, "root", None))


def _config_path(args: Args) -> Path:
    return Path(args.config) if args.config else _layout(args).config_file


def _cmd_check(args: Args) -> int:
    from vipdrain.config import load_config

    cfg = load_config(_config_path(args))
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"ok: {len(cfg.vips)} VIP(s), priority {cfg.priority}, placement {cfg.placement}", file=sys.stderr)
    return EXIT_OK


def _cmd_render(args: Args) -> int:
    from vipdrain.config import load_config
    from vipdrain.keepalived import write_checked_config
    from vipdrain.render import render_keepalived_conf

    layout = _layout(args)
    cfg = load_config(_config_path(args))
    text = render_keepalived_conf(cfg, layout)
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    write_checked_config(text, Path(args.out))
    print(f"wrote {args.out}", file=sys.stderr)
    return EXIT_OK


def _setup_logging(layout: Layout, verbose: bool = False) -> None:
    """Log to stderr and, when the job's log dir is writable, to `vipdrain.log` there (bosh logs)."""
    import logging

    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger("vipdrain")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.handlers.clear()
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(fmt)
    root.addHandler(err)
    try:
        layout.log_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(layout.vipdrain_log)
    except OSError:
        return
    fh.setFormatter(fmt)
    root.addHandler(fh)


def _load(args: Args):  # -> JobConfig (imported lazily to keep --help fast)
    from vipdrain.config import load_config

    return load_config(_config_path(args))


def _cmd_pre_start(args: Args) -> int:
    import logging

    from vipdrain.foreign import refuse_foreign_groups
    from vipdrain.fsutil import atomic_write
    from vipdrain.lifecycle import pre_start
    from vipdrain.render import render_keepalived_conf

    layout = _layout(args)
    _setup_logging(layout, args.verbose)
    cfg = _load(args)
    text = _config_path(args).read_text()  # loaded just now: readable UTF-8
    # Before anything changes on this VM: another VRRP group announcing our VIP means split brain.
    refuse_foreign_groups(cfg, layout)
    for warning in (*cfg.warnings, *pre_start(cfg, layout, render_keepalived_conf(cfg, layout))):
        logging.getLogger("vipdrain").warning(warning)
    # The drain's fallback: keepalived now runs from this config, whatever the next deploy renders.
    # Root only, like the rendered file: it may hold the VRRP password.
    atomic_write(layout.last_good_config, text, mode=0o600)
    logging.getLogger("vipdrain").info("pre-start: %s ready; joining held until post-start", layout.keepalived_conf)
    return EXIT_OK


def _haproxy_check(cfg) -> Callable[[], str | None]:  # cfg: JobConfig (imported lazily)
    from vipdrain.probe import check

    return lambda: check(cfg.haproxy.pid_file, cfg.haproxy.probe)


def _cmd_post_start(args: Args) -> int:
    import logging

    from vipdrain.lifecycle import post_start

    layout = _layout(args)
    _setup_logging(layout, args.verbose)
    cfg = _load(args)
    from vipdrain.observe import LiveObserver
    from vipdrain.preemption import await_preemption, settle_arms

    started = post_start(cfg, layout, _haproxy_check(cfg), timeout=args.timeout)
    logging.getLogger("vipdrain").info("post-start: ready after %.1f s; joining hold released", started.waited)
    # Return only once a takeover this release causes is done: the director stops the next VM next.
    with LiveObserver(cfg, layout) as observer:
        for warning in (*await_preemption(cfg, layout, observer), *settle_arms(cfg, layout, observer, started.armed)):
            logging.getLogger("vipdrain").warning(warning)
    return EXIT_OK


def _cmd_drain(args: Args) -> int:
    """BOSH's drain: whatever happens, stdout gets one integer line or nothing at all."""
    import contextlib
    import logging
    import os
    import time

    from vipdrain.drain import Drain, drain_lock_busy, parse_drain_args
    from vipdrain.fsutil import LockBusy, locked
    from vipdrain.keepalived import running
    from vipdrain.notify import find_readers, reader_problem
    from vipdrain.observe import LiveObserver

    began = time.monotonic()
    layout = _layout(args)
    dargs = parse_drain_args(args.bosh_args)
    # Keep fd 1 for the final integer only: our logs and any child process write to stderr.
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        _setup_logging(layout, args.verbose)
        cfg = _drain_config(args, layout, dargs.manual)
        if cfg is not None:
            progress = (lambda line: print(line, file=sys.stderr, flush=True)) if dargs.manual else None
            try:
                with contextlib.ExitStack() as stack:
                    try:
                        # A drain stopped while holding the lock (Ctrl-Z) must not make BOSH wait forever.
                        stack.enter_context(locked(layout.drain_lock, timeout=cfg.drain.timeout))
                    except LockBusy as exc:
                        outcome = drain_lock_busy(cfg, dargs, str(exc))
                    else:
                        observer = stack.enter_context(LiveObserver(cfg, layout))
                        outcome = Drain(cfg, layout, observer, progress=progress, began=began).run(dargs)
            except VipdrainError:
                _drain_metrics(cfg, layout, None)
                raise
            finally:
                # After the drain's work, not before: a warning for the operator, and the scan
                # of /proc is milliseconds of start-up, which is the tail of the handoff.
                if problem := reader_problem(running(layout), find_readers(layout)):
                    logging.getLogger("vipdrain").warning("%s", problem)
            _drain_metrics(cfg, layout, outcome)
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)
    if cfg is None:
        sys.stdout.write("0\n")
        return EXIT_OK
    for warning in outcome.warnings:  # once, after the drain: stderr and vipdrain.log, never stdout
        logging.getLogger("vipdrain").warning("%s", warning)
    logging.getLogger("vipdrain").info("drain: %s", outcome.summary)
    if dargs.manual:
        print(f"maintenance on: {outcome.summary}")
    else:
        sys.stdout.write(f"{outcome.value}\n")
    return EXIT_OK


def _drain_config(args: Args, layout: Layout, manual: bool):  # -> JobConfig | None
    """The config a BOSH drain works with; None: nothing to hand over (the drain prints 0).

    The drain must not fail on a config it cannot load: a pre-start that rejected it left the
    new job applied, and its drain runs first on the next deploy. keepalived runs (if at all)
    from the config the last successful pre-start passed and saved, so that one describes what
    there is to hand over; without keepalived there is nothing. A manual drain (maintenance on)
    keeps refusing an invalid config: an operator is there to read why.
    """
    import logging

    from vipdrain import keepalived
    from vipdrain.config import load_config

    try:
        return _load(args)
    except ConfigInvalid as exc:
        if manual:
            raise
        log = logging.getLogger("vipdrain")
        problems = "; ".join(str(p) for p in exc.problems)
        if not keepalived.running(layout):
            log.warning("drain: the job's config cannot be loaded (%s); keepalived is not running, so this VM "
                        "holds no VIP to hand over: returning 0", problems)
            return None
        try:
            cfg = load_config(layout.last_good_config)
        except ConfigInvalid as saved:
            log.error("drain: the job's config cannot be loaded and keepalived runs; the config of the last "
                      "successful pre-start is no help either (%s)", "; ".join(str(p) for p in saved.problems))
            raise exc from None
        log.warning("drain: the job's config cannot be loaded (%s); handing over with the config of the last "
                    "successful pre-start (%s), which keepalived runs with", problems, layout.last_good_config)
        return cfg


def _metrics_module():  # -> the vipdrain.metrics module, or None
    """vipdrain.metrics, or None (with a warning) when prometheus_client cannot be imported: the
    drain and the notify reader never depend on their metrics."""
    import logging

    try:
        from vipdrain import metrics
    except ImportError as exc:
        logging.getLogger("vipdrain").warning("metrics: cannot import them (%s); carrying on without", exc)
        return None
    return metrics


def _drain_metrics(cfg, layout: Layout, outcome) -> None:  # cfg: JobConfig, outcome: DrainOutcome | None
    """Count the drain in the metrics (vipdrain.metrics.textfile_dir); never fails the drain."""
    if cfg.metrics.textfile_dir is None or (metrics := _metrics_module()) is None:
        return
    metrics.best_effort("recording the drain", lambda: metrics.record_drain(cfg, layout, outcome))


def _cmd_drain_server(args: Args) -> int:
    """The warm drain's server (vipdrain.warm), until SIGTERM; nothing when the job turned it off."""
    import logging

    from vipdrain.warm.server import serve

    layout = _layout(args)
    _setup_logging(layout, args.verbose)
    if not _load(args).drain.warm_start:
        logging.getLogger("vipdrain").info("drain server: not started (vipdrain.drain.warm_start: false)")
        return EXIT_OK
    return serve(layout)


def _cmd_metrics(args: Args) -> int:
    """One survey of the holders, kept for the metrics, and the metrics written (or printed)."""
    from prometheus_client import generate_latest

    from vipdrain import metrics

    layout = _layout(args)
    _setup_logging(layout, args.verbose)
    cfg = _load(args)
    path = metrics.survey_now(cfg, layout)
    if path is None:
        sys.stdout.write(generate_latest(metrics.build_registry(metrics.snapshot(cfg, layout))).decode())
    else:
        print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


def _cmd_post_deploy(args: Args) -> int:
    from vipdrain.foreign import ForeignWatch
    from vipdrain.lifecycle import post_deploy
    from vipdrain.observe import LiveObserver
    from vipdrain.survey import format_survey
    from vipdrain.vrrp.timing import settle_budget

    layout = _layout(args)
    _setup_logging(layout, args.verbose)
    cfg = _load(args)
    budget = args.timeout if args.timeout is not None else settle_budget(cfg.advert_int)
    foreign = ForeignWatch(cfg)
    with foreign.watching(LiveObserver(cfg, layout)) as observer:
        report = post_deploy(cfg, layout, observer, budget)
    rogues = [f.sentence() for f in foreign.found()]
    print(format_survey(cfg, report.survey))
    for w in report.warnings:
        print(f"  ! {w}")
    for r in rogues:
        print(f"  ! {r}")
    return EXIT_RUNTIME if report.problems or rogues else EXIT_OK


def _cmd_status(args: Args) -> int:
    import json

    from vipdrain.foreign import ForeignWatch
    from vipdrain.observe import LiveObserver
    from vipdrain.survey import format_survey, survey_dict, take_survey
    from vipdrain.vrrp.timing import hear_every_master
    from vipdrain.warm.server import server_note

    layout = _layout(args)
    cfg = _load(args)
    foreign = ForeignWatch(cfg)
    with foreign.watching(LiveObserver(cfg, layout)) as observer:
        survey = take_survey(cfg, layout, observer, listen=args.listen or hear_every_master(cfg.advert_int))
    survey.drain_server_note = server_note(cfg.drain.warm_start, str(layout.drain_socket))
    rogues = [f.sentence() for f in foreign.found()]
    if args.json:
        print(json.dumps({**survey_dict(cfg, survey), "foreign_groups": rogues}, indent=2, default=str))
    else:
        print("\n".join([format_survey(cfg, survey), *(f"  ! {r}" for r in rogues)]))
    return EXIT_RUNTIME if survey.problems or rogues else EXIT_OK


def _settle(cfg, layout, armed) -> list[str]:  # JobConfig, Layout, preserve.Armed (imported lazily)
    """After undrain armed a takeover: wait for it like post-start does, disarm what it did not take."""
    if not armed.arms:
        return []
    from vipdrain.observe import LiveObserver
    from vipdrain.preemption import await_preemption, settle_arms

    try:
        with LiveObserver(cfg, layout) as observer:
            return [*await_preemption(cfg, layout, observer, step="undrain"),
                    *settle_arms(cfg, layout, observer, armed)]
    except OSError as exc:
        return [f"cannot listen for adverts ({exc}): the takeover arm of "
                f"{', '.join(str(v.address) for v, _ in armed.arms)} stays until it runs out"]


def _cmd_undrain(args: Args) -> int:
    from dataclasses import replace

    from vipdrain.hold import Reason, set_hold
    from vipdrain.lifecycle import release_hold
    from vipdrain.preserve import end_handoff

    layout = _layout(args)
    _setup_logging(layout, args.verbose)
    end_handoff(layout)
    reasons: tuple[Reason, ...] = ("maintenance", "drain")
    try:
        cfg = _load(args)
    except ConfigInvalid as exc:
        # Maintenance off must work whatever the config says; only the takeover is not armed.
        print(f"warning: {exc}; connections of the current master are not preserved", file=sys.stderr)
        hold = set_hold(layout, remove=reasons)
    else:
        released = release_hold(cfg, layout, reasons)
        hold = replace(released.hold, warnings=(*released.hold.warnings, *_settle(cfg, layout, released.armed)))
    for warning in hold.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    left = f" (still held: {', '.join(hold.reasons)})" if hold.reasons else ""
    print(f"maintenance off{left}")
    return EXIT_OK


def _cmd_notify_fifo(args: Args) -> int:
    import threading

    from vipdrain.config import load_config
    from vipdrain.notify import follow_fifo

    layout = _layout(args)
    _setup_logging(layout, args.verbose)
    # Metrics ride along in threads of their own, best effort: the transitions are recorded
    # whatever happens to them, and without waiting for them.
    writer = None
    stop = threading.Event()
    if (metrics := _metrics_module()) is not None:
        load = metrics.ConfigCache(_config_path(args), load_config)
        metrics.start_survey_loop(layout, load, stop)
        writer = metrics.TransitionWriter(layout, load)

    # keepalived keeps the FIFO open for writing while it runs: EOF means it stopped.
    try:
        with open(args.fifo) as fifo:
            follow_fifo(layout, fifo, on_transition=writer.put if writer is not None else None)
    finally:
        stop.set()
        if writer is not None:
            writer.close()
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The full parser; sub-packages add their own commands through `register` functions."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="vipdrain", description="Hand a keepalived virtual IP over, verifiably, before haproxy stops."
    )
    parser.add_argument("--version", action="version", version=f"vipdrain {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="validate the job's config and report every problem")
    _add_config_options(p)
    p.set_defaults(handler=_cmd_check)

    p = sub.add_parser("render", help="render keepalived.conf (checked with keepalived -t when written)")
    _add_config_options(p)
    p.add_argument("--out", metavar="PATH", help="write here (atomically, after keepalived -t) instead of stdout")
    p.set_defaults(handler=_cmd_render)

    p = sub.add_parser("pre-start", help="BOSH pre-start: validate, render keepalived.conf, join held")
    _add_config_options(p)
    p.set_defaults(handler=_cmd_pre_start)

    p = sub.add_parser("post-start", help="BOSH post-start: wait until haproxy and keepalived are ready, release")
    _add_config_options(p)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    p.set_defaults(handler=_cmd_post_start)

    p = sub.add_parser(
        "drain",
        help="hand this VM's VIPs to a peer, verified (BOSH drain; without arguments: maintenance on)",
    )
    _add_config_options(p)
    p.add_argument("bosh_args", nargs="*", metavar="BOSH_ARG", help="job_changed|job_shutdown|... as BOSH passes")
    p.set_defaults(handler=_cmd_drain)

    p = sub.add_parser("post-deploy", help="BOSH post-deploy: clear leftover holds, verify one holder per VIP")
    _add_config_options(p)
    p.add_argument("--timeout", type=float, help="seconds to wait for the cluster to settle")
    p.set_defaults(handler=_cmd_post_deploy)

    p = sub.add_parser("status", help="per VIP: state here, priority, holder, peers heard, hold, transitions")
    _add_config_options(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--listen", type=float, help="seconds to listen for adverts (default 1.5 x advert_int)")
    p.set_defaults(handler=_cmd_status)

    p = sub.add_parser("undrain", help="maintenance off: this VM takes part in elections again")
    _add_config_options(p)
    p.set_defaults(handler=_cmd_undrain)

    # Listed for --help only: main() hands `probe` to vipdrain.probe before parsing (it runs every
    # second under keepalived, so it skips this parser and every other import).
    sub.add_parser("probe", help="keepalived's health check of the local haproxy (vipdrain probe --help)")

    p = sub.add_parser("notify-fifo", help="reads keepalived's notify FIFO (started by keepalived, not by hand)")
    _add_config_options(p)
    p.add_argument("fifo", help="the FIFO keepalived writes transitions to (it passes the path)")
    p.set_defaults(handler=_cmd_notify_fifo)

    p = sub.add_parser("drain-server", help="keeps the drain imported, so a BOSH drain starts in milliseconds "
                       "(started with keepalived, not by hand; docs/BOSH.md)")
    _add_config_options(p)
    p.set_defaults(handler=_cmd_drain_server)

    p = sub.add_parser("metrics", help="survey the VIPs' holders once and write the Prometheus metrics "
                       "(to vipdrain.metrics.textfile_dir; unset: to stdout)")
    _add_config_options(p)
    p.set_defaults(handler=_cmd_metrics)

    for register in _registrars():
        register(sub, _add_config_options)
    return parser


def _registrars() -> list[Callable[..., None]]:
    """Command groups defined in `vipdrain.commands` (generate-job, lab, demo...): their parsers
    are built here, their modules imported only when one of their commands runs."""
    from vipdrain import commands

    return commands.REGISTRARS


#: The drain's options (`_add_config_options`) that take a value.
_DRAIN_VALUE_OPTIONS = ("--config", "--root")


def drain_fast_args(argv: Sequence[str]) -> SimpleNamespace | None:
    """The drain's arguments (after `drain`) without argparse, when they are only what the job's
    drain script and operators pass: `--root DIR`, `--config FILE` (or `--opt=VALUE`), `-v`/
    `--verbose` and the BOSH arguments. Anything else (`--help`, an unknown option, a missing
    value) gives None, and argparse parses it as always, with its messages.

    Why: building the parser (argparse's import and 14 sub-commands) is 10 ms of the drain's
    start-up, which is the tail of every handoff (docs/BENCHMARKS.md).
    """
    found: dict[str, str | None] = dict.fromkeys(("config", "root"))
    verbose = False
    bosh_args: list[str] = []
    rest = list(argv)
    while rest:
        word = rest.pop(0)
        name, eq, value = word.partition("=")
        if name in _DRAIN_VALUE_OPTIONS:
            if not eq:
                if not rest or rest[0].startswith("-"):
                    return None
                value = rest.pop(0)
            found[name[2:]] = value
        elif word in ("-v", "--verbose"):
            verbose = True
        elif word.startswith("-"):
            return None
        else:
            bosh_args.append(word)
    return SimpleNamespace(command="drain", handler=_cmd_drain, verbose=verbose, bosh_args=bosh_args, **found)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vipdrain` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["probe"]:
        from vipdrain.probe import main as probe_main

        return probe_main(argv[1:])
    args = drain_fast_args(argv[1:]) if argv[:1] == ["drain"] else None
    if args is None:
        args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigInvalid as exc:
        print(f"vipdrain: invalid configuration ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return exc.exit_code
    except VipdrainError as exc:
        print(f"vipdrain: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vipdrain: interrupted", file=sys.stderr)
        return EXIT_RUNTIME
