"""The command groups outside vipdrain.cli (generator, lab, demo): declared without importing their
modules, each handler found when its command runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vipdrain.cli import build_parser
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
