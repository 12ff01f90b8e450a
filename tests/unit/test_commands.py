"""The command groups outside vipdrain.cli (generator, lab, demo): declared without importing their
modules, each handler found when its command runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vipdrain.cli import build_parser, drain_fast_args
from vipdrain.commands import LazyHandler

COMMANDS = [["generate-job"], ["keepalived-argv"], ["lab", "up"], ["lab", "status"], ["lab", "down"],
            ["lab", "exec", "vm0"], ["demo"]]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_each_handler_is_found(argv):
    handler = build_parser().parse_args(argv).handler
    assert isinstance(handler, LazyHandler)
    assert callable(handler.resolve())


def test_a_lazy_handler_calls_its_function():
    assert LazyHandler("posixpath:basename")("/var/vcap/jobs") == "jobs"


def test_the_parser_loads_none_of_their_modules():
    # Every vipdrain call builds the whole parser, a drain too: it must not pay for the lab.
    code = ("import sys, vipdrain.cli\nvipdrain.cli.build_parser()\n"
            "print(' '.join(m for m in sys.modules if m.startswith(('vipdrain.lab', 'vipdrain.boshjob'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.split() == []


# --- the drain's start-up (issue 16: it is the tail of every handoff) --------------------------

#: Everything the drain imports before its first log line and its handoff (cli._cmd_drain).
DRAIN_IMPORTS = ("import vipdrain.cli, vipdrain.drain, vipdrain.fsutil, vipdrain.keepalived, vipdrain.notify, "
                 "vipdrain.observe, vipdrain.config, vipdrain.preserve, vipdrain.hold")


def test_the_drain_loads_no_module_it_can_do_without() -> None:
    """argparse (the full parser), PyYAML (the job renders JSON) and tenacity (only a drain that
    must wait uses it) cost 25-35 ms of start-up together; a module that imports one of them
    at the top again brings that back."""
    code = (f"import sys\n{DRAIN_IMPORTS}\n"
            "print(' '.join(m for m in ('argparse', 'yaml', 'tenacity') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.split() == []


@pytest.mark.parametrize(("argv", "expected"), [
    (["job_changed", "hash_changed"], {"bosh_args": ["job_changed", "hash_changed"], "root": None, "config": None}),
    (["--root", "/var/vcap", "job_shutdown", "hash_unchanged", "haproxy"],
     {"bosh_args": ["job_shutdown", "hash_unchanged", "haproxy"], "root": "/var/vcap"}),
    (["--config=/tmp/c.yml", "-v", "job_check_status"],
     {"bosh_args": ["job_check_status"], "config": "/tmp/c.yml", "verbose": True}),
    ([], {"bosh_args": [], "verbose": False}),
])
def test_the_drains_fast_path_reads_what_argparse_would(argv: list[str], expected: dict[str, object]) -> None:
    fast = drain_fast_args(argv)
    assert fast is not None
    parsed = build_parser().parse_args(["drain", *argv])
    for key in ("bosh_args", "root", "config", "verbose", "handler"):
        assert getattr(fast, key) == getattr(parsed, key), key
    for key, value in expected.items():
        assert getattr(fast, key) == value


@pytest.mark.parametrize("argv", [["--help"], ["--root"], ["--root", "--config", "x"], ["--conf", "x"], ["-x"],
                                  ["--", "job_changed"]])
def test_anything_else_goes_to_argparse(argv: list[str]) -> None:
    assert drain_fast_args(argv) is None
