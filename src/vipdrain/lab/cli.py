"""`vipdrain lab ...`: bring a lab up, look at it, run commands in its VMs, tear it down.

The handlers of the `lab` commands; their arguments are declared in `vipdrain.commands`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vipdrain.errors import EXIT_OK, EXIT_RUNTIME, RuntimeFailure
from vipdrain.vrrp.timing import master_down_bound


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


def cmd_up(args: argparse.Namespace) -> int:
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
            lab.wait_converged(timeout=master_down_bound(lab.advert_int) + 2.0, states=True)
    _print_status(lab.status(), args.json)
    if not args.json:
        print(f"\nlab {lab.prefix} is up: `vipdrain lab exec vm0 -- vipdrain status`, "
              f"`vipdrain lab down --prefix {lab.prefix}`")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from vipdrain.lab.cluster import Lab

    _print_status(Lab.attach(args.prefix).status(), args.json)
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    from vipdrain.lab.cluster import Lab

    lab = Lab.attach(args.prefix)
    with _interrupts_as_keyboard_interrupt():
        lab.down(keep_files=args.keep_files)
    print(f"lab {lab.prefix} is down", file=sys.stderr)
    return EXIT_OK


def cmd_exec(args: argparse.Namespace) -> int:
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
