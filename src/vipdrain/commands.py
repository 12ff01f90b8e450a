"""Command groups that live outside `vipdrain.cli`: the BOSH job generator, the lab, the demo.

Each registrar is `register(subparsers, add_config_options) -> None`. Their arguments are declared
here and their handlers are imported only when one of their commands runs: every `vipdrain` call,
a drain too, builds the whole parser, and importing the generator, lab and demo modules for it
added 3-5 ms to each call's start-up (about 10 ms where Python keeps no bytecode cache).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vipdrain.errors import RuntimeFailure
from vipdrain.layout import DEFAULT_JOB


@dataclass(frozen=True)
class LazyHandler:
    """A command's handler named `module:function`, imported when the command runs."""

    target: str

    def resolve(self) -> Callable[[argparse.Namespace], int]:
        module, _, function = self.target.partition(":")
        try:
            imported = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not exc.name.startswith("vipdrain.lab"):
                raise
            # The BOSH package leaves the lab out (packages/vipdrain/spec, excluded_files).
            raise RuntimeFailure(
                "vipdrain lab and vipdrain demo need the lab (vipdrain.lab), which the BOSH package "
                "does not ship: run them from a checkout of vipdrain (make setup)"
            ) from None
        handler: Callable[[argparse.Namespace], int] = getattr(imported, function)
        return handler

    def __call__(self, args: argparse.Namespace) -> int:
        return self.resolve()(args)


def register_boshjob(subparsers: Any, add_config_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """`generate-job` and `keepalived-argv` (vipdrain.boshjob)."""
    p = subparsers.add_parser(
        "generate-job",
        help="write jobs/keepalived/ and docs/PROPERTIES.md from lifecycle/ and the property schema",
    )
    p.add_argument("--repo", metavar="DIR", help="release root holding lifecycle/ (default: found from here)")
    p.add_argument("--out", metavar="DIR", help="write under DIR instead of the release root")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated file is stale")
    p.set_defaults(handler=LazyHandler("vipdrain.boshjob.generate:cmd_generate_job"))

    p = subparsers.add_parser(
        "keepalived-argv",
        help="print the command line that runs this job's keepalived, one argument per line",
    )
    add_config_options(p)
    p.add_argument("--config-id", default=DEFAULT_JOB, metavar="ID",
                   help=f"keepalived's -i config id (default: {DEFAULT_JOB})")
    p.set_defaults(handler=LazyHandler("vipdrain.boshjob.generate:cmd_keepalived_argv"))


def register_lab(subparsers: Any, add_config_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """The `lab` command group (vipdrain.lab.cli; the lab reads no job config, so
    `add_config_options` is unused)."""
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
    p.set_defaults(handler=LazyHandler("vipdrain.lab.cli:cmd_up"))

    p = sub.add_parser("status", help="VMs, VIP holders, keepalived states, haproxy health")
    p.add_argument("--prefix")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=LazyHandler("vipdrain.lab.cli:cmd_status"))

    p = sub.add_parser("down", help="stop the lab's processes (by pid), delete its namespaces and files")
    p.add_argument("--prefix")
    p.add_argument("--keep-files", action="store_true", help="keep the lab dir (logs) for a post-mortem")
    p.set_defaults(handler=LazyHandler("vipdrain.lab.cli:cmd_down"))

    p = sub.add_parser("exec", help="run a command in a VM's namespace with its job environment")
    p.add_argument("--prefix")
    p.add_argument("vm", help="VM name, e.g. vm0 (or a client namespace, e.g. c0)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    p.set_defaults(handler=LazyHandler("vipdrain.lab.cli:cmd_exec"))


def register_demo(subparsers: Any, add_config_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """`demo` (vipdrain.lab.demo)."""
    p = subparsers.add_parser("demo", help="rolling bosh deploy of 3 lab VMs under load, with a report (root)")
    p.add_argument("--out", default="out/demo", help="where the report and timeline picture go")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--rate", type=float, default=200.0, help="client requests per second")
    p.add_argument("--advert-int", type=float, default=1.0)
    p.add_argument("--no-preserve", action="store_true",
                   help="deploy without vipdrain.drain.preserve_connections (see docs/BENCHMARKS.md)")
    p.set_defaults(handler=LazyHandler("vipdrain.lab.demo:cmd_demo"))


REGISTRARS: list[Callable[..., None]] = [register_boshjob, register_lab, register_demo]
