"""`vipdrain lab ...`: bring a lab up, look at it, run commands in its VMs, tear it down."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vipdrain.errors import EXIT_OK, EXIT_RUNTIME, RuntimeFailure


def register(subparsers: argparse._SubParsersAction, add_config_options: Callable[..., None]) -> None:  # type: ignore[type-arg]
    """Add the `lab` command group (the lab reads no job config, so `add_config_options` is unused)."""
    lab = subparsers.add_parser("lab", help="a keepalived + haproxy cluster in network namespaces (root)")
    sub = lab.add_subparsers(dest="lab_command", required=True, metavar="LAB_COMMAND")

    p = sub.add_parser("up", help="create and start a lab, print its prefix")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--prefix", help="name prefix of namespaces and files (default: random vd-xxxx)")
    p.add_argument("--advert-int", type=float, default=1.0, help="VRRP advert interval in s (default 1)")
    p.add_argument("--vips", type=int, default=1, help="number of VIPs (VRRP instances)")
    p.add_argument("--ipv6", action="store_true", help="dual-stack VMs, IPv6 VIPs")
    p.add_argument("--clients", type=int, default=1, help="number of client namespaces")
    p.add_argument("--config-overrides", metavar="FILE", help="YAML deep-merged into every VM's job properties")
    p.add_argument("--timeout", type=float, help="seconds to wait for one holder per VIP")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(handler=_cmd_up)

    p = sub.add_parser("status", help="VMs, VIP holders, keepalived states, haproxy health")
    p.add_argument("--prefix")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_status)

    p = sub.add_parser("down", help="stop the lab's processes (by pid), delete its namespaces and files")
    p.add_argument("--prefix")
    p.add_argument("--keep-files", action="store_true", help="keep the lab dir (logs) for a post-mortem")
    p.set_defaults(handler=_cmd_down)

    p = sub.add_parser("exec", help="run a command in a VM's namespace with its job environment")
    p.add_argument("--prefix")
    p.add_argument("vm", help="VM name, e.g. vm0 (or a client namespace, e.g. c0)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    p.set_defaults(handler=_cmd_exec)


@contextmanager
def _interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP raise KeyboardInterrupt, so a half-built lab is torn down like on Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _cmd_up(args: argparse.Namespace) -> int:
    import yaml

    from vipdrain.lab.cluster import Lab
    from vipdrain.lab.wait import LabTimeout

    overrides: dict[str, Any] = {}
    if args.config_overrides:
        loaded = yaml.safe_load(Path(args.config_overrides).read_text())
        if not isinstance(loaded, dict):
            raise RuntimeFailure(f"{args.config_overrides}: expected a YAML mapping of job properties")
        overrides = loaded
    with _interrupts_as_keyboard_interrupt():
        lab = Lab.up(nodes=args.nodes, prefix=args.prefix, advert_int=args.advert_int, vips=args.vips,
                     overrides=overrides, ipv6=args.ipv6, clients=args.clients, timeout=args.timeout)
        # The notify hook records states asynchronously: give it a moment so the status printed
        # agrees with the addresses; if it never does, the status shows the disagreement.
        with contextlib.suppress(LabTimeout):
            lab.wait_converged(timeout=3 * lab.advert_int + 2.0, states=True)
    _print_status(lab.status(), args.json)
    if not args.json:
        print(f"\nlab {lab.prefix} is up: `vipdrain lab exec vm0 -- vipdrain status`, "
              f"`vipdrain lab down --prefix {lab.prefix}`")
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from vipdrain.lab.cluster import Lab

    _print_status(Lab.attach(args.prefix).status(), args.json)
    return EXIT_OK


def _cmd_down(args: argparse.Namespace) -> int:
    from vipdrain.lab.cluster import Lab

    lab = Lab.attach(args.prefix)
    with _interrupts_as_keyboard_interrupt():
        lab.down(keep_files=args.keep_files)
    print(f"lab {lab.prefix} is down", file=sys.stderr)
    return EXIT_OK


def _cmd_exec(args: argparse.Namespace) -> int:
    from vipdrain.lab import netns
    from vipdrain.lab.cluster import Lab

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise RuntimeFailure("nothing to run: vipdrain lab exec VM -- COMMAND...")
    lab = Lab.attach(args.prefix)
    client = f"{lab.prefix}-{args.vm}"
    if client in lab.client_namespaces:
        argv, env = netns.exec_argv(client, cmd), None
    else:
        vm = lab.vm(args.vm)
        argv, env = netns.exec_argv(vm.namespace, cmd), vm.env
    try:
        return subprocess.run(argv, env=env, check=False).returncode
    except KeyboardInterrupt:
        return EXIT_RUNTIME


def _print_status(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(status, indent=2))
        return
    print(f"lab {status['prefix']}  advert_int {status['advert_int']:g} s  dir {status['dir']}")
    for vip, holders in status["vips"].items():
        note = "" if len(holders) == 1 else ("  <- NO HOLDER" if not holders else "  <- SPLIT BRAIN")
        print(f"VIP {vip}: {', '.join(holders) or '-'}{note}")
    print(f"{'VM':<5} {'address':<15} {'keepalived':<10} {'haproxy':<8} holds")
    for vm in status["vms"]:
        print(f"{vm['name']:<5} {vm['ip']:<15} {vm['keepalived_state']:<10} "
              f"{'ok' if vm['haproxy_ok'] else 'DOWN':<8} {', '.join(vm['holds_vips']) or '-'}")
    print(f"clients: {', '.join(status['client_namespaces'])}")
