"""The drain lock has a deadline: a drain stopped while holding it (Ctrl-Z) cannot hang BOSH.

Real processes, no lab: the holder is a real process with a real flock on the job's drain lock,
stopped with SIGSTOP (as Ctrl-Z does); the drain is the real CLI in a subprocess. Nothing past
the lock runs (no keepalived, no sockets), so no root is needed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vipdrain import hold
from vipdrain.fsutil import LockBusy, lock_holders, locked
from vipdrain.layout import Layout

HOLD = ("import fcntl, sys, time\n"
        "f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX)\n"
        "print('locked', flush=True); time.sleep(600)\n")
#: Python start-up and config loading on a busy 2-core machine, beyond drain.timeout.
SLACK = 10.0


@contextlib.contextmanager
def stopped_holding(lock: Path) -> Iterator[int]:
    """A process holding a flock on `lock`, stopped (SIGSTOP); killed by pid afterwards."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
        os.kill(proc.pid, signal.SIGSTOP)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def stopped_holder(tmp_path: Path) -> Iterator[int]:
    """A stopped process holding the job's drain lock."""
    with stopped_holding(Layout(root=tmp_path).drain_lock) as pid:
        yield pid


def drain(tmp_path: Path, raw_config: dict[str, Any], policy: str, *bosh_args: str) -> tuple[
        subprocess.CompletedProcess[str], float]:
    raw_config["properties"]["vipdrain"] = {"drain": {"timeout": 1, "no_peer_policy": policy}}
    config = tmp_path / "vipdrain.yml"
    config.write_text(yaml.safe_dump(raw_config))
    env = {k: v for k, v in os.environ.items() if k not in ("VIPDRAIN_CMD", "VIPDRAIN_ROOT")}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "vipdrain", "drain", "--root", str(tmp_path), "--config",
                           str(config), *bosh_args], capture_output=True, text=True, timeout=60, env=env)
    return done, time.monotonic() - started


def test_bosh_drain_with_proceed_prints_0_within_the_deadline(tmp_path, raw_config, stopped_holder):
    done, took = drain(tmp_path, raw_config, "proceed", "job_changed", "hash_changed")
    assert (done.returncode, done.stdout) == (0, "0\n"), done
    assert took < 1 + SLACK
    assert f"held by pid {stopped_holder}" in done.stderr and "NO VERIFIED HANDOFF" in done.stderr


def test_bosh_drain_with_fail_prints_nothing_and_fails_within_the_deadline(tmp_path, raw_config, stopped_holder):
    done, took = drain(tmp_path, raw_config, "fail", "job_changed", "hash_changed")
    assert done.returncode == 1 and done.stdout == "", done
    assert took < 1 + SLACK
    assert "another drain holds the drain lock" in done.stderr


def test_manual_drain_fails_whatever_the_policy(tmp_path, raw_config, stopped_holder):
    done, _ = drain(tmp_path, raw_config, "proceed")
    assert done.returncode == 1 and "Maintenance is not on" in done.stderr, done


def test_locked_gives_up_and_names_the_holder(tmp_path, stopped_holder):
    lock = Layout(root=tmp_path).drain_lock
    assert lock_holders(lock) == [stopped_holder]
    with pytest.raises(LockBusy, match=f"pid {stopped_holder}"), locked(lock, timeout=0.2):
        pass


def test_locked_with_a_deadline_takes_a_free_lock(tmp_path):
    with locked(tmp_path / "free.lock", timeout=0.2):
        assert lock_holders(tmp_path / "free.lock") == [os.getpid()]


def test_the_hold_lock_has_a_deadline_too(tmp_path, monkeypatch):
    layout = Layout(root=tmp_path)
    monkeypatch.setattr(hold, "HOLD_LOCK_TIMEOUT", 0.2)
    with stopped_holding(layout.run_dir / "hold.lock") as pid, pytest.raises(LockBusy, match=f"pid {pid}"):
        hold.set_hold(layout, add=("drain",))
