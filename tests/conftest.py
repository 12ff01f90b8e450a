"""Suite-wide test policy: lab tests (marker `lab`) run only where the lab can run.

Without root, network namespaces, or the keepalived/haproxy/nft/tc binaries, every `lab` test is
skipped with the reason - except when VIPDRAIN_REQUIRE_LAB=1 (CI), where it fails instead, so a
broken environment never passes as "all skipped".
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from labpolicy import unavailable

if TYPE_CHECKING:
    from vipdrain.lab.cluster import Lab

LAB_BINARIES = ("ip", "keepalived", "haproxy", "nft", "tc")


@functools.lru_cache(maxsize=1)
def lab_unavailable_reason() -> str | None:
    """Why the lab cannot run here, or None when it can (checked once per session)."""
    if os.geteuid() != 0:
        return "the lab needs root (CAP_NET_ADMIN) to create network namespaces"
    missing = [b for b in LAB_BINARIES if shutil.which(b) is None]
    if missing:
        return f"the lab needs {', '.join(missing)} on PATH (Debian: keepalived haproxy iproute2 nftables)"
    probe = f"vdcheck-{secrets.token_hex(3)}"
    try:
        added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` cannot run: {exc}"
    if added.returncode != 0:
        return f"`ip netns add` failed: {added.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10, check=False)
    return None


def lab_available() -> bool:
    """Can lab tests run on this machine?"""
    return lab_unavailable_reason() is None


def pytest_configure(config: pytest.Config) -> None:
    # A CI timeout or `kill` sends SIGTERM: turn it into KeyboardInterrupt so pytest still runs the
    # fixtures' teardown (labs are stopped by pid and their namespaces deleted) before exiting.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt("SIGTERM")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("lab") is None:
        return
    reason = lab_unavailable_reason()
    if reason is None:
        return
    unavailable(f"the lab cannot run: {reason}")


#: Short adverts where timing is not the point: VRRPv3 accepts 0.01..40.95 s.
FAST_ADVERT = 0.2
DEFAULTS: dict[str, Any] = {"nodes": 3, "advert_int": FAST_ADVERT}

LabFactory = Callable[..., "Lab"]


@pytest.fixture
def lab_factory() -> Iterator[LabFactory]:
    """`make(**Lab.up kwargs) -> Lab`; every lab made is torn down after the test (lab tests and
    BDD scenarios alike; the defaults suit tests where timing is not the point)."""
    from vipdrain.lab import netns
    from vipdrain.lab.cluster import Lab

    labs: list[Lab] = []

    def make(**kwargs: Any) -> Lab:
        lab = Lab.up(**{**DEFAULTS, **kwargs})
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.down()
    leftovers = [ns for lab in labs for ns in lab.namespaces if netns.exists(ns)]
    assert not leftovers, f"teardown left namespaces: {leftovers}"
