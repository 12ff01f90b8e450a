"""Fixtures of the BOSH release tests (tests/bosh): rendered templates and a fake VM."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bosh_harness import REPO, FakeVM, make_fake_vm, render

# The release tooling (scripts/release_rules.py, scripts/release_blobs.py) is tested here.
sys.path.insert(0, str(REPO / "scripts"))


@pytest.fixture(scope="module")
def rendered_job() -> dict[str, str]:
    """Every template of the committed job, rendered for a bootstrap instance with one VIP."""
    return render({"keepalived": {"vip": "192.0.2.100"}})


@pytest.fixture
def vm(tmp_path: Path, rendered_job: dict[str, str]) -> Iterator[FakeVM]:
    """A fake VM root with the rendered job; fake keepalived processes a test leaves running
    are stopped by pid afterwards."""
    fake = make_fake_vm(tmp_path, rendered_job)
    yield fake
    _stop_fake_keepalived(fake)


def _stop_fake_keepalived(fake: FakeVM) -> None:
    """SIGKILL every fake keepalived this VM started that still runs - by pid, and only after
    checking that the pid still is that process (its command line names this VM's pid file)."""
    for line in fake.calls():
        if not line.startswith("fake keepalived: started "):
            continue
        pid = int(line.rsplit(" ", 1)[1])
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if os.fsencode(str(fake.pid_file)) in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
