"""The edges next to keepalived: `keepalived -t` on rendered files (a matrix and a property test),
writing the config, keepalived's command line and pid files, the health-check probe, and the
interface lookup."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from frontends import answering
from vipdrain import keepalived, netstate, probe
from vipdrain.config import parse_config
from vipdrain.errors import ConfigInvalid, RuntimeFailure
from vipdrain.layout import Layout
from vipdrain.render import render_keepalived_conf

# --- keepalived -t over a matrix of valid configs ---------------------------------------------

EMAIL = {
    "keepalived.notification_email.to": ["ops@example.com", "oncall@example.org"],
    "keepalived.notification_email.from": "keepalived@example.com",
    "keepalived.notification_email.smtp_server": "192.0.2.25:2525",
}
HOOKS = {
    "keepalived.notify.master": "/var/vcap/jobs/eip/bin/claim --vip 192.0.2.100",
    "keepalived.notify.backup": "/bin/true",
    "keepalived.notify.fault": "/usr/bin/logger 'vip fault'",
    "keepalived.notify.stop": "/bin/true",
}
EXTRA = {
    "keepalived.extra.global_defs": ["vrrp_garp_interval 0.001", "vrrp_min_garp true"],
    "keepalived.extra.vrrp_instance": ["dont_track_primary", "garp_lower_prio_repeat 2"],
}
THREE_V4 = {"keepalived.vip": None, "keepalived.vips": ["192.0.2.100", "192.0.2.101", "192.0.2.102"]}
MIXED = {"keepalived.vip": None,
         "keepalived.vips": ["192.0.2.100", {"address": "2001:db8::100", "virtual_router_id": 1}, "192.0.2.102"]}
MATRIX: dict[str, dict[str, Any]] = {
    "1 vip, v3, multicast": {},
    "3 vips, v4 and v6": MIXED,
    "ipv6 only": {"keepalived.vip": "2001:db8::100"},
    "v2 with authentication": {"keepalived.vrrp_version": 2, "keepalived.authentication": "s3cret",
                               "keepalived.advert_int": 2},
    "v2, 3 vips": {"keepalived.vrrp_version": 2, **THREE_V4},
    "v3 centisecond adverts, custom groups": {"keepalived.advert_int": 0.05,
                                              "keepalived.multicast_group.ipv4": "224.0.0.19",
                                              "keepalived.multicast_group.ipv6": "ff02::13",
                                              "keepalived.source_address": "192.0.2.20"},
    "unicast from the link": {"keepalived.unicast": True},
    "unicast, both families": {"keepalived.unicast": True, **MIXED,
                               "keepalived.unicast_peers": ["192.0.2.11", "192.0.2.12", "2001:db8::11"]},
    "email": EMAIL,
    "notify hooks": HOOKS,
    "sticky, 3 vips": {"vipdrain.placement": "sticky", **THREE_V4},
    "escape hatch": EXTRA,
    "custom health check": {"keepalived.healthcheck.command": "/bin/true", "keepalived.healthcheck.interval": 2,
                            "keepalived.healthcheck.timeout": 2, "keepalived.healthcheck.fall": 3},
    "everything": {"keepalived.vrrp_version": 2, "keepalived.authentication": "pass-8ch", "keepalived.unicast": True,
                   "vipdrain.placement": "sticky", **THREE_V4, **EMAIL, **HOOKS, **EXTRA,
                   "keepalived.garp.master_delay": 0, "keepalived.garp.master_refresh": 60},
}


@pytest.fixture
def with_interface(make_raw, vrrp_interface):
    """make_raw with keepalived.interface set to an interface that exists here."""

    def build(props: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return make_raw({"keepalived.interface": vrrp_interface, **(props or {})}, **kw)

    return build


@pytest.mark.parametrize("props", MATRIX.values(), ids=MATRIX.keys())
def test_keepalived_accepts_rendered_config(keepalived_bin, with_interface, parse, conf_layout, props):
    text = render_keepalived_conf(parse(with_interface(props)), conf_layout)
    keepalived.check_config(text)


def test_keepalived_accepts_a_non_bootstrap_instance(keepalived_bin, with_interface, parse, conf_layout):
    doc = with_interface(spec={"index": 2, "bootstrap": False, "id": "peer-2", "ip": "192.0.2.12"})
    keepalived.check_config(render_keepalived_conf(parse(doc), conf_layout))


def test_rejection_carries_keepalived_messages_and_the_line(keepalived_bin, vrrp_interface):
    text = (
        "vrrp_instance v {\n"
        "    state BACKUP\n"
        f"    interface {vrrp_interface}\n"
        "    virtual_router_id 300\n"
        "    priority 100\n"
        "    virtual_ipaddress {\n        192.0.2.100/32\n    }\n"
        "}\n"
    )
    with pytest.raises(RuntimeFailure) as info:
        keepalived.check_config(text)
    message = str(info.value)
    assert message.startswith("keepalived -t rejected the configuration (exit 5):")
    assert "(keepalived.conf: Line 4) number '300' outside range [1, 255]" in message
    assert "line 4: virtual_router_id 300" in message


def test_missing_interface_is_rejected(keepalived_bin, make_raw, parse, conf_layout):
    text = render_keepalived_conf(parse(make_raw({"keepalived.interface": "vipdrainnone0"})), conf_layout)
    with pytest.raises(RuntimeFailure, match="interface vipdrainnone0 for vrrp_instance vip_1 doesn't exist"):
        keepalived.check_config(text)


def test_write_checked_config_replaces_the_file(keepalived_bin, with_interface, parse, conf_layout, tmp_path):
    target = tmp_path / "data" / "keepalived.conf"
    target.parent.mkdir()
    target.write_text("old")
    text = render_keepalived_conf(parse(with_interface()), conf_layout)
    target.chmod(0o644)
    keepalived.write_checked_config(text, target)
    assert target.read_text() == text
    assert [p.name for p in target.parent.iterdir()] == ["keepalived.conf"]
    # It can hold auth_pass and the scripts keepalived runs as root: only root reads it.
    assert target.stat().st_mode & 0o777 == 0o600


def test_write_checked_config_writes_nothing_when_rejected(keepalived_bin, tmp_path):
    target = tmp_path / "data" / "keepalived.conf"
    with pytest.raises(RuntimeFailure):
        keepalived.write_checked_config("bogus_keyword 1\n", target)
    assert not target.parent.exists()


def test_keepalived_from_the_environment(monkeypatch):
    monkeypatch.setenv(keepalived.KEEPALIVED_ENV, "/nonexistent/keepalived")
    with pytest.raises(RuntimeFailure, match="cannot run /nonexistent/keepalived -t"):
        keepalived.check_config("")


def test_keepalived_not_installed(monkeypatch):
    monkeypatch.delenv(keepalived.KEEPALIVED_ENV, raising=False)
    monkeypatch.setattr(keepalived.shutil, "which", lambda *a, **kw: None)
    with pytest.raises(RuntimeFailure, match=r"keepalived not found: install it or set \$VIPDRAIN_KEEPALIVED"):
        keepalived.check_config("")


def test_explain_output_drops_repeats_and_quotes_lines():
    output = "(keepalived.conf: Line 2) Unknown keyword 'x'\n(keepalived.conf: Line 2) Unknown keyword 'x'\nother\n"
    assert keepalived.explain_output(output, "global_defs {\n  x 1\n}\n") == (
        "  (keepalived.conf: Line 2) Unknown keyword 'x'\n      line 2: x 1\n  other")


# --- the property: no accepted config renders a file keepalived rejects -----------------------

V4_POOL = [f"192.0.2.{n}" for n in range(100, 110)] + [f"198.51.100.{n}" for n in range(1, 5)]
V6_POOL = [f"2001:db8::{n:x}" for n in range(0x100, 0x108)]
SAFE_COMMANDS = ["/bin/true", "/usr/bin/logger 'vip moved'", "/var/vcap/jobs/eip/bin/claim --vip 192.0.2.100"]
SAFE_EXTRA_GLOBAL = ["vrrp_garp_interval 0.001", "vrrp_min_garp true", "vrrp_garp_master_refresh_repeat 2"]
SAFE_EXTRA_INSTANCE = ["dont_track_primary", "garp_lower_prio_repeat 2", "lower_prio_no_advert true"]


@st.composite
def job_properties(draw: st.DrawFn) -> dict[str, Any]:
    """Properties across the whole matrix: VIP count and families, version, timing, transport,
    authentication, email, hooks, placement, escape hatch."""
    version = draw(st.sampled_from([None, 2, 3]))
    families = draw(st.lists(st.sampled_from([4, 6] if version != 2 else [4]), min_size=1, max_size=3))
    v4 = iter(draw(st.permutations(V4_POOL)))
    v6 = iter(draw(st.permutations(V6_POOL)))
    vips = [next(v4) if f == 4 else next(v6) for f in families]
    props: dict[str, Any] = {"keepalived.vip": None, "keepalived.vips": vips,
                             "keepalived.virtual_router_id": draw(st.integers(1, 250))}
    if version:
        props["keepalived.vrrp_version"] = version
    if version == 2:
        props["keepalived.advert_int"] = draw(st.integers(1, 255))
        if draw(st.booleans()):
            props["keepalived.authentication"] = draw(st.from_regex(r"[A-Za-z0-9._+=:,%@^*/~-]{1,8}", fullmatch=True))
    else:
        props["keepalived.advert_int"] = draw(st.integers(1, 4095)) / 100
    if draw(st.booleans()):
        props["keepalived.unicast"] = True
        props["keepalived.unicast_peers"] = ["192.0.2.11", "192.0.2.12", "2001:db8::11"]
    props["vipdrain.placement"] = draw(st.sampled_from(["preferred", "sticky"]))
    if draw(st.booleans()):
        props.update(EMAIL)
    for hook in ("master", "backup", "fault", "stop"):
        props[f"keepalived.notify.{hook}"] = draw(st.sampled_from([None, *SAFE_COMMANDS]))
    props["keepalived.healthcheck.command"] = draw(st.sampled_from([None, "/bin/true"]))
    props["keepalived.healthcheck.interval"] = draw(st.integers(1, 4294))
    props["keepalived.healthcheck.timeout"] = draw(st.integers(1, 4294))
    props["keepalived.healthcheck.fall"] = draw(st.integers(1, 1000))
    props["keepalived.healthcheck.rise"] = draw(st.integers(1, 1000))
    props["keepalived.garp.master_delay"] = draw(st.integers(0, 4294))
    props["keepalived.garp.master_repeat"] = draw(st.integers(1, 255))
    props["keepalived.garp.master_refresh"] = draw(st.integers(0, 86400))
    props["keepalived.extra.global_defs"] = draw(st.lists(st.sampled_from(SAFE_EXTRA_GLOBAL), unique=True))
    props["keepalived.extra.vrrp_instance"] = draw(st.lists(st.sampled_from(SAFE_EXTRA_INSTANCE), unique=True))
    return props


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(props=job_properties(), bootstrap=st.booleans())
def test_no_accepted_config_renders_a_file_keepalived_rejects(keepalived_bin, with_interface, shared_conf_layout,
                                                               props, bootstrap):
    spec = {} if bootstrap else {"index": 1, "bootstrap": False, "id": "peer-1", "ip": "192.0.2.11"}
    try:
        cfg = parse_config(with_interface(props, spec=spec))
    except ConfigInvalid:
        assume(False)
    keepalived.check_config(render_keepalived_conf(cfg, shared_conf_layout))


# --- command line and pid files ---------------------------------------------------------------


def test_command_line(monkeypatch, tmp_path):
    monkeypatch.setenv(keepalived.KEEPALIVED_ENV, "/usr/sbin/keepalived")
    layout = Layout(root=tmp_path)
    run = layout.run_dir
    assert keepalived.command_line(layout, "vm-1") == [
        "/usr/sbin/keepalived", "-n", "-l", "-D", "-G", "-P",
        "-f", str(layout.keepalived_conf),
        "-p", str(run / "keepalived.pid"), "-r", str(run / "vrrp.pid"), "-c", str(run / "checkers.pid"),
        "-i", "vm-1",
    ]


@pytest.fixture
def fake_keepalived(tmp_path) -> Iterator[Any]:
    """Start processes named `keepalived` (a python script of that name) with given arguments."""
    script = tmp_path / "bin" / "keepalived"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    script.chmod(0o755)
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> int:
        proc = subprocess.Popen([str(script), *args])
        started.append(proc)
        comm = Path(f"/proc/{proc.pid}/comm")
        for _ in range(200):  # until exec has replaced the forked pytest image
            if comm.exists() and comm.read_text().strip() == "keepalived":
                break
            time.sleep(0.01)
        return proc.pid

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def _write_pids(layout: Layout, pids: dict[str, int]) -> None:
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    for name, pid in pids.items():
        (layout.run_dir / name).write_text(f"{pid}\n")


def test_pid_files_of_a_running_keepalived_stay(tmp_path, fake_keepalived):
    layout = Layout(root=tmp_path / "vm")
    parent = fake_keepalived("-p", str(layout.pid_file))
    child = fake_keepalived("-p", str(layout.pid_file))
    _write_pids(layout, {"keepalived.pid": parent, "vrrp.pid": child})
    assert keepalived.clear_stale_pid_files(layout) == []
    assert layout.pid_file.exists() and layout.vrrp_pid_file.exists()


def test_pid_files_naming_another_vms_keepalived_go(tmp_path, fake_keepalived):
    # Lab VMs share one PID namespace: a reused pid may belong to a neighbour's keepalived.
    layout, neighbour = Layout(root=tmp_path / "vm"), Layout(root=tmp_path / "other")
    theirs = fake_keepalived("-p", str(neighbour.pid_file))
    _write_pids(layout, {"keepalived.pid": theirs, "vrrp.pid": theirs, "checkers.pid": theirs})
    assert set(keepalived.clear_stale_pid_files(layout)) == set(keepalived.pid_files(layout))
    assert not any(p.exists() for p in keepalived.pid_files(layout))


def test_pid_files_of_dead_or_foreign_processes_go(tmp_path):
    layout = Layout(root=tmp_path / "vm")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    _write_pids(layout, {"keepalived.pid": int(dead.stdout), "vrrp.pid": os.getpid()})
    (layout.run_dir / "checkers.pid").write_text("garbage")
    assert set(keepalived.clear_stale_pid_files(layout)) == set(keepalived.pid_files(layout))


def test_child_pid_file_goes_when_the_parent_is_gone(tmp_path, fake_keepalived):
    layout = Layout(root=tmp_path / "vm")
    child = fake_keepalived("-p", str(layout.pid_file))
    _write_pids(layout, {"vrrp.pid": child})
    assert keepalived.clear_stale_pid_files(layout) == [layout.vrrp_pid_file]


def test_no_pid_files_nothing_to_do(tmp_path):
    assert keepalived.clear_stale_pid_files(Layout(root=tmp_path)) == []


# --- the health-check probe -------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[str]:
    """A local haproxy frontend that answers (200); yields HOST:PORT."""
    with answering(b"HTTP/1.0 200 OK\r\ncontent-length: 4\r\n\r\nvm0\n") as where:
        yield where


@pytest.fixture
def closed_port() -> str:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    return f"127.0.0.1:{port}"


def test_probe_passes_with_a_live_pid_and_an_open_port(own_pid_file, listener):
    assert probe.check(own_pid_file, listener) is None
    assert probe.main(["--pid-file", str(own_pid_file), "--tcp", listener]) == 0


def test_probe_fails_when_the_frontend_accepts_but_never_answers(own_pid_file, hung, capsys):
    """Issue 18, item 1: a stopped haproxy's kernel still completes the TCP handshake."""
    started = time.monotonic()
    assert probe.main(["--pid-file", str(own_pid_file), "--tcp", hung, "--timeout", "0.3"]) == 1
    assert time.monotonic() - started < 2
    err = capsys.readouterr().err
    assert err.startswith("vipdrain.probe: ") and f"{hung} accepted the connection but did not answer" in err


@pytest.mark.parametrize("reply", [b"\x15\x03\x01\x00\x02\x02\x46", None],
                         ids=["tls-alert", "closed"])
def test_probe_host_port_counts_any_answer(own_pid_file, reply):
    """A TLS or TCP frontend does not speak HTTP, but a live haproxy still answers or closes."""
    with answering(reply) as where:
        assert probe.check(own_pid_file, where) is None


@pytest.mark.parametrize(("reply", "problem"), [
    (b"HTTP/1.0 200 OK\r\n\r\n", None),
    (b"HTTP/1.1 404 Not Found\r\n\r\n", None),
    (b"HTTP/1.0 503 Service Unavailable\r\n\r\n", "answered HTTP/1.0 503 Service Unavailable"),
    (b"SSH-2.0-x\r\n", "did not answer with an HTTP status line"),
    (None, "did not answer with an HTTP status line"),
])
def test_probe_http_form_needs_a_status_below_500(own_pid_file, reply, problem):
    with answering(reply) as where:
        found = probe.check(own_pid_file, f"http://{where}/health")
    assert found == problem if problem is None else problem in found


def test_probe_http_form_on_a_hung_frontend(own_pid_file, hung):
    assert "did not answer within 0.2 s" in probe.check(own_pid_file, f"http://{hung}/health", 0.2)


def test_probe_fails_on_a_closed_port(own_pid_file, closed_port, capsys):
    assert probe.main(["--pid-file", str(own_pid_file), "--tcp", closed_port, "--timeout", "0.5"]) == 1
    assert f"TCP connect to {closed_port} failed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "cannot read pid file"), ("", "holds no pid"), ("haproxy\n", "holds no pid"),
     ("999999999\n", "no process of pid file")],
)
def test_probe_fails_without_a_live_pid(tmp_path, listener, content, expected):
    path = tmp_path / "haproxy.pid"
    if content is not None:
        path.write_text(content)
    assert expected in probe.check(path, listener)


def test_probe_accepts_any_live_pid_of_several(tmp_path, listener):
    path = tmp_path / "haproxy.pid"
    path.write_text(f"999999999\n{os.getpid()}\n")
    assert probe.check(path, listener) is None


def test_probe_bad_endpoint_is_a_usage_error(own_pid_file, capsys):
    assert probe.main(["--pid-file", str(own_pid_file), "--tcp", "localhost"]) == 2
    assert "must be HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:80", ("127.0.0.1", 80)), ("localhost:8443", ("localhost", 8443)), ("[::1]:443", ("::1", 443))],
)
def test_parse_endpoint(text, expected):
    assert probe.parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", ":80", "host:0", "host:65536", "::1:80", "[x]:80", "a b:80",
                                  "host:8o", "[::1]80"])
def test_parse_endpoint_refuses(text):
    with pytest.raises(ValueError, match="HOST:PORT"):
        probe.parse_endpoint(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:80", probe.Endpoint("127.0.0.1", 80)),
    ("http://127.0.0.1:8080/health", probe.Endpoint("127.0.0.1", 8080, "/health")),
    ("http://[::1]:8080/", probe.Endpoint("::1", 8080, "/")),
    ("http://localhost:80/a/b?c=d", probe.Endpoint("localhost", 80, "/a/b?c=d")),
])
def test_parse_probe(text, expected):
    assert probe.parse_probe(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["http://127.0.0.1/health", "http://127.0.0.1:80", "http://h:80/a b",
                                  "https://h:443/", "http://::1:80/"])
def test_parse_probe_refuses(text):
    with pytest.raises(ValueError, match=r"HOST:PORT"):
        probe.parse_probe(text)


def test_probe_runs_as_a_module_importing_only_the_standard_library(own_pid_file, listener):
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['probe', '--pid-file', {str(own_pid_file)!r}, '--tcp', {listener!r}]\n"
        "try:\n    runpy.run_module('vipdrain.probe', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    mods = sorted(m for m in sys.modules if m.startswith(('vipdrain', 'yaml', 'requests', 'tenacity')))\n"
        "    print(exc.code, mods)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    # run_module executes the probe as __main__: besides the package, only the stdlib-only procs.
    assert done.stdout.strip() == "0 ['vipdrain', 'vipdrain.procs']"


# --- interfaces -------------------------------------------------------------------------------

def test_find_interface():
    found = {"lo": [ipaddress.ip_address("127.0.0.1")],
             "eth0": [ipaddress.ip_address(a) for a in ("192.0.2.10", "2001:db8::10")], "eth1": []}
    assert netstate.find_interface(found, ipaddress.ip_address("2001:db8::10")) == "eth0"
    assert netstate.find_interface(found, ipaddress.ip_address("192.0.2.99")) is None


def test_local_addresses_and_interface_of_agree():
    found = netstate.local_addresses()
    assert "lo" in found
    name, addrs = next(((n, a) for n, a in found.items() if a), ("", []))
    assert addrs and netstate.interface_of(addrs[0]) == name
