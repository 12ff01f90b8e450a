"""Shared fixtures of the config/render tests: a minimal valid rendered config, a builder for
variations of it, and what running the real `keepalived -t` needs (the binary, an interface)."""

from __future__ import annotations

import copy
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from labpolicy import unavailable
from vipdrain.config import parse_config
from vipdrain.errors import ConfigInvalid
from vipdrain.layout import Layout
from vipdrain.model import JobConfig

SPEC_ID = "5d3e6a0c-8f0e-4c36-9d3a-0c3f3a1e7b10"
MINIMAL: dict[str, Any] = {
    "properties": {"keepalived": {"vip": "192.0.2.100", "interface": "eth0"}},
    "spec": {
        "name": "haproxy",
        "index": 0,
        "id": SPEC_ID,
        "bootstrap": True,
        "ip": "192.0.2.10",
        "az": "z1",
        "deployment": "d",
    },
    "links": {
        "keepalived": {
            "instances": [
                {"address": "192.0.2.10", "index": 0, "bootstrap": True, "id": SPEC_ID},
                {"address": "192.0.2.11", "index": 1, "bootstrap": False, "id": "peer-1"},
                {"address": "192.0.2.12", "index": 2, "bootstrap": False, "id": "peer-2"},
            ]
        }
    },
}

MakeRaw = Callable[..., dict[str, Any]]


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


@pytest.fixture
def raw_config() -> dict[str, Any]:
    """A fresh minimal valid rendered config (instance 0, bootstrap, one VIP on eth0)."""
    return copy.deepcopy(MINIMAL)


@pytest.fixture
def make_raw() -> MakeRaw:
    """Build a variation of MINIMAL: `make_raw({"keepalived.vrrp_version": 2}, spec={...},
    links=None)`. Dotted property names become nested maps; None unsets a property or spec field
    (as BOSH renders it), `links=None` leaves the links section out."""

    def build(
        props: Mapping[str, Any] | None = None,
        *,
        spec: Mapping[str, Any] | None = None,
        links: Any = MINIMAL["links"],
    ) -> dict[str, Any]:
        doc = copy.deepcopy(MINIMAL)
        for name, value in (props or {}).items():
            _set_dotted(doc["properties"], name, value)
        for key, value in (spec or {}).items():
            _set_dotted(doc["spec"], key, value)
        if links is None:
            doc.pop("links")
        else:
            doc["links"] = copy.deepcopy(links)
        return doc

    return build


def fixed_interface(ip: Any) -> str:
    """Interface lookup for tests: every address is on eth0."""
    return "eth0"


@pytest.fixture
def parse() -> Callable[[Mapping[str, Any]], JobConfig]:
    """parse_config with `auto` resolving to eth0 (no `ip` command runs)."""
    return lambda doc: parse_config(doc, interface_of=fixed_interface)


@pytest.fixture
def problems() -> Callable[[Mapping[str, Any]], list[str]]:
    """The problems (as printed) parse_config reports for a document; fails if it accepts it."""

    def run(doc: Mapping[str, Any]) -> list[str]:
        with pytest.raises(ConfigInvalid) as info:
            parse_config(doc, interface_of=fixed_interface)
        return [str(p) for p in info.value.problems]

    return run


# --- reading rendered keepalived.conf -----------------------------------------------------------


@dataclass
class Block:
    """A keepalived.conf block: its own lines (stripped) and its sub-blocks by header."""

    lines: list[str] = field(default_factory=list)
    blocks: dict[str, Block] = field(default_factory=dict)

    def words(self, keyword: str) -> list[list[str]]:
        """The arguments of every line starting with `keyword`."""
        return [line.split()[1:] for line in self.lines if line.split()[0] == keyword]


def parse_conf(text: str) -> Block:
    """keepalived.conf text -> Block tree (a header is the text before `{`; comments dropped)."""
    root = Block()
    stack = [root]
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("{"):
            header = line[:-1].strip()
            assert header not in stack[-1].blocks, f"block {header!r} appears twice"
            stack[-1].blocks[header] = Block()
            stack.append(stack[-1].blocks[header])
        elif line == "}":
            stack.pop()
            assert stack, "unbalanced }"
        else:
            stack[-1].lines.append(line)
    assert len(stack) == 1, "unclosed block"
    return root


@pytest.fixture
def conf() -> Callable[[str], Block]:
    """Parse rendered keepalived.conf text into blocks (see Block)."""
    return parse_conf


# --- the real keepalived ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def keepalived_bin() -> str:
    """Path of keepalived; skips (fails under VIPDRAIN_REQUIRE_LAB=1) when it is not installed."""
    found = os.environ.get("VIPDRAIN_KEEPALIVED") or shutil.which(
        "keepalived", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    )
    if not found:
        unavailable("keepalived is not installed (apt-get install keepalived)")
    return str(found)


def _multicast_interfaces(links: Iterable[Mapping[str, Any]]) -> list[str]:
    return [
        link["ifname"]
        for link in links
        if "MULTICAST" in link.get("flags", []) and "LOOPBACK" not in link.get("flags", [])
    ]


@pytest.fixture(scope="session")
def vrrp_interface() -> str:
    """An existing non-loopback, multicast-capable interface: `keepalived -t` refuses VRRP
    instances on interfaces that are missing, loopback, or (multicast mode) without multicast."""
    try:
        out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        unavailable(f"cannot list interfaces with `ip -j link`: {exc}")
    names = _multicast_interfaces(json.loads(out or "[]"))
    if not names:
        unavailable("no multicast-capable non-loopback interface to render VRRP instances on")
    return names[0]


def install_healthcheck(root: Path) -> Layout:
    """A VM layout under `root` whose scripts call this interpreter (`python -m vipdrain`), with
    the job's `bin/healthcheck` installed as BOSH ships it: `keepalived -t` disables (and so
    rejects) a track script that does not exist."""
    from vipdrain.boshjob.generate import find_repo
    from vipdrain.boshjob.scripts import render_script

    layout = Layout(root=root, vipdrain_cmd=f"{shlex.quote(sys.executable)} -m vipdrain")
    layout.healthcheck_script.parent.mkdir(parents=True, exist_ok=True)
    layout.healthcheck_script.write_text(render_script(find_repo() / "lifecycle", "healthcheck"))
    layout.healthcheck_script.chmod(0o755)
    return layout


@pytest.fixture
def conf_layout(tmp_path: Path) -> Layout:
    """A VM layout under tmp_path with the job's health check installed (`install_healthcheck`)."""
    return install_healthcheck(tmp_path / "vcap")


@pytest.fixture(scope="session")
def shared_conf_layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    """`conf_layout` for tests that cannot take a function-scoped fixture (hypothesis)."""
    return install_healthcheck(tmp_path_factory.mktemp("shared") / "vcap")


# --- stand-in haproxy for the health-check tests (vipdrain.probe, lifecycle/healthcheck) --------


@pytest.fixture
def own_pid_file(tmp_path: Path) -> Path:
    """haproxy's pid file naming a live process (this one)."""
    path = tmp_path / "haproxy.pid"
    path.write_text(f"{os.getpid()}\n")
    return path


@pytest.fixture
def hung() -> Iterator[str]:
    """A listener nobody serves: the kernel completes the handshake and queues the request, as for
    a haproxy stopped with SIGSTOP; yields HOST:PORT."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"
