"""VRRP on the wire against real keepalived: what it sends equals what `build_advert` builds.

Self-contained two-namespace lab (it does not need the shared `vipdrain.lab`): namespaces
`vdw-<hex>-a` and `-b` joined by a veth pair, keepalived on both with one VRRP instance per
variant (v2 with and without PASS, v3, IPv4 and IPv6, multicast and unicast). A holds priority
150, B 100. The helpers that touch sockets run inside a namespace through `ip netns exec`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labpolicy import unavailable
from vipdrain.vrrp import (
    AUTH_NONE,
    AUTH_PASS,
    MULTICAST_V4,
    MULTICAST_V6,
    Advert,
    Packet,
    build_advert,
    build_packet,
    parse_packet,
    pass_auth,
    timing,
)

pytestmark = [pytest.mark.lab, pytest.mark.slow]

SRC_DIR = Path(__file__).resolve().parents[2] / "src"
IFACE = "eth0"
A_V4, B_V4 = ipaddress.IPv4Address("192.0.2.1"), ipaddress.IPv4Address("192.0.2.2")
A_V6, B_V6 = ipaddress.IPv6Address("2001:db8::1"), ipaddress.IPv6Address("2001:db8::2")
PRIORITY_A, PRIORITY_B = 150, 100
PASSWORD = "pw123"


@dataclasses.dataclass(frozen=True)
class Instance:
    """One VRRP instance, configured identically (but for priority) on both namespaces."""

    name: str
    version: int
    vrid: int
    advert_int: float
    vips: tuple[str, ...]
    unicast: bool = False
    password: str | None = None

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.vips[0]).version

    def advert(self, priority: int) -> Advert:
        """What vipdrain would build for this instance, from its configuration alone."""
        return Advert(
            version=self.version,
            vrid=self.vrid,
            priority=priority,
            advert_int=self.advert_int,
            addresses=tuple(ipaddress.ip_address(v) for v in self.vips),
            auth_type=AUTH_PASS if self.password else AUTH_NONE,
            auth_data=pass_auth(self.password) if self.password else b"",
        )

    def destination(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """Where A sends: B's address for unicast instances, else the VRRP group."""
        if self.family == 4:
            return B_V4 if self.unicast else MULTICAST_V4
        return B_V6 if self.unicast else MULTICAST_V6

    def config(self, priority: int, own_v6: str, peer: str, hold: bool) -> str:
        lines = [
            f"vrrp_instance {self.name} {{",
            "  state BACKUP",
            f"  interface {IFACE}",
            f"  virtual_router_id {self.vrid}",
            f"  priority {priority}",
            f"  advert_int {self.advert_int}",
            f"  version {self.version}",
        ]
        if self.password:
            lines.append(f"  authentication {{\n    auth_type PASS\n    auth_pass {self.password}\n  }}")
        if self.unicast:
            lines.append(f"  unicast_peer {{\n    {peer}\n  }}")
        if self.unicast and self.family == 6:
            # Without it keepalived sends from, and binds its unicast socket to, the link-local
            # address: adverts to the peer's global address then never reach its keepalived.
            lines.append(f"  unicast_src_ip {own_v6}")
        if hold:
            lines.append("  track_file {\n    hold\n  }")
        lines.append("  virtual_ipaddress {\n" + "".join(f"    {v}\n" for v in self.vips) + "  }")
        return "\n".join(lines) + "\n}\n"


INSTANCES = (
    Instance("v2_mcast", 2, 21, 1, ("192.0.2.21",)),
    Instance("v2_pass", 2, 22, 1, ("192.0.2.22", "192.0.2.122"), password=PASSWORD),
    Instance("v2_ucast", 2, 23, 1, ("192.0.2.23",), unicast=True),
    Instance("v2_pass_ucast", 2, 24, 1, ("192.0.2.24",), unicast=True, password=PASSWORD),
    Instance("v2_ipv6", 2, 26, 1, ("2001:db8::26",)),
    Instance("v3_mcast", 3, 31, 0.5, ("192.0.2.31",)),
    Instance("v3_ucast", 3, 32, 1, ("192.0.2.32",), unicast=True),
    Instance("v3_ipv6_mcast", 3, 36, 1, ("2001:db8::36",)),
    Instance("v3_ipv6_ucast", 3, 37, 1, ("2001:db8::37",), unicast=True),
)

# Runs inside a namespace: one job (listen, send, arp, mac) given as JSON, JSON lines out.
HELPER = r"""
import ipaddress, json, socket, sys, time
from vipdrain import vrrp

job = json.loads(sys.argv[1])
if job["kind"] == "listen":
    with vrrp.AdvertListener(job["interface"], include_outgoing=job["outgoing"]) as listener:
        print(json.dumps({"ready": time.monotonic()}), flush=True)
        end = time.monotonic() + job["seconds"]
        time.sleep(job["delay"])  # let packets wait in the socket queue
        while (packet := listener.next(end - time.monotonic())) is not None:
            print(json.dumps({"raw": packet.raw.hex(), "mac": packet.src_mac,
                              "received": packet.received, "outgoing": packet.outgoing}), flush=True)
        print(json.dumps({"end": time.monotonic(), "rejected": listener.rejected,
                          "last_error": listener.last_error}), flush=True)
elif job["kind"] == "send":
    sent = []
    for item in job["adverts"]:
        fields = dict(item["advert"])
        fields["addresses"] = tuple(ipaddress.ip_address(a) for a in fields["addresses"])
        fields["auth_data"] = bytes.fromhex(fields["auth_data"])
        sent.append(time.monotonic())
        vrrp.send_advert(vrrp.Advert(**fields), item["src"], item["dst"], job["interface"])
    print(json.dumps({"sent": sent}))
elif job["kind"] == "send_raw":
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, job["interface"].encode())
        sock.sendto(bytes.fromhex(job["packet"]), (job["dst"], 0))
    print("null")
elif job["kind"] == "arp":
    found = vrrp.arp_who_has(job["interface"], job["target"], job["sender"], job["timeout"])
    print(json.dumps([[mac, str(ip)] for mac, ip in found]))
elif job["kind"] == "mac":
    print(json.dumps(vrrp.local_mac(job["interface"])))
"""


def _unavailable(reason: str) -> None:
    unavailable(f"the VRRP wire lab cannot run: {reason}")


def _run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=30).stdout


@dataclasses.dataclass
class Heard:
    """What a listener helper reported: the adverts, its ready/end times, rejected packets."""

    packets: list[Packet]
    ready: float
    end: float
    rejected: int
    last_error: str


class Lab:
    """Two namespaces, a veth pair, keepalived in each; everything removed by `close`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.prefix = f"vdw-{secrets.token_hex(3)}"
        self.ns_a, self.ns_b = f"{self.prefix}-a", f"{self.prefix}-b"
        self.namespaces: list[str] = []
        #: (process, config file, VRRP child pid file) per keepalived started.
        self.keepalived: list[tuple[subprocess.Popen[bytes], Path, Path]] = []
        self.ll_a = self.ll_b = ipaddress.IPv6Address(0)
        self.mac_a = self.mac_b = ""
        #: First advert keepalived on A sent for each VRID, as B received it.
        self.captured: dict[int, Packet] = {}
        #: A's track file: 1 lowers A's priority by 100 (to 50, below B), as vipdrain's hold does.
        self.hold_file = workdir / "hold"

    # setup / teardown -------------------------------------------------------------------------

    def build_network(self) -> None:
        for ns in (self.ns_a, self.ns_b):
            _run("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            # No DAD: the link-local address (the IPv6 advert source) is usable at once.
            for conf in ("all", "default"):
                _run("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{conf}.accept_dad=0")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", self.ns_a, "link", "add", IFACE, "type", "veth", "peer", "name", IFACE, "netns", self.ns_b)
        for ns, v4, v6 in ((self.ns_a, A_V4, A_V6), (self.ns_b, B_V4, B_V6)):
            _run("ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", IFACE)
            _run("ip", "-n", ns, "addr", "add", f"{v6}/64", "dev", IFACE, "nodad")
            _run("ip", "-n", ns, "link", "set", IFACE, "up")
        self.ll_a, self.mac_a = self._link_local(self.ns_a)
        self.ll_b, self.mac_b = self._link_local(self.ns_b)

    def _link_local(self, ns: str) -> tuple[ipaddress.IPv6Address, str]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            (link,) = json.loads(_run("ip", "-n", ns, "-j", "addr", "show", "dev", IFACE))
            for addr in link.get("addr_info", []):
                if addr.get("scope") == "link" and addr["family"] == "inet6" and not addr.get("tentative"):
                    return ipaddress.IPv6Address(addr["local"]), link["address"]
            time.sleep(0.05)
        raise RuntimeError(f"no link-local address on {ns}/{IFACE}")

    def start_keepalived(
        self, ns: str, tag: str, priority: int, own_v6: str, peer_v4: str, peer_v6: str, hold: bool
    ) -> None:
        conf = self.workdir / f"keepalived-{tag}.conf"
        body = f"global_defs {{\n  router_id {self.prefix}-{tag}\n}}\n"
        if hold:
            self.set_hold(0)
            body += f"vrrp_track_file hold {{\n  file {self.hold_file}\n  weight -100\n}}\n"
        for inst in INSTANCES:
            body += inst.config(priority, own_v6, peer_v4 if inst.family == 4 else peer_v6, hold)
        conf.write_text(body)
        files = {flag: str(self.workdir / f"{tag}-{name}.pid") for flag, name in (("-p", "main"), ("-r", "vrrp"))}
        files["-c"] = str(self.workdir / f"{tag}-checker.pid")
        log = (self.workdir / f"keepalived-{tag}.log").open("wb")
        command = ["ip", "netns", "exec", ns, "keepalived", "-n", "-l", "-D", "-P", "-f", str(conf)]
        command += [arg for flag, path in files.items() for arg in (flag, path)]
        command += ["-i", f"{self.prefix}-{tag}"]
        # `ip netns exec` execs keepalived, so this pid is keepalived's own.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.keepalived.append((process, conf, Path(files["-r"])))

    def set_hold(self, value: int) -> None:
        self.hold_file.write_text(f"{value}\n")

    def wait_until_a_is_master(self, timeout: float = 20) -> dict[int, Packet]:
        """Listen on B until A advertised every instance at its full priority; the first of each."""
        wanted = {inst.vrid for inst in INSTANCES}
        first: dict[int, Packet] = {}
        deadline = time.monotonic() + timeout
        while set(first) != wanted and time.monotonic() < deadline:
            for vrid, packet in _first_per_vrid(self.listen(self.ns_b, 1.2).packets, self.mac_a, PRIORITY_A).items():
                first.setdefault(vrid, packet)
        assert set(first) == wanted, f"A is not master of {sorted(wanted - set(first))}"
        return first

    def close(self) -> None:
        for process, conf, vrrp_pid_file in self.keepalived:
            child = _read_pid(vrrp_pid_file)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
            # The VRRP child normally exits with its parent; stop it if not, and only if that
            # pid is still our keepalived (pid files can outlive their process).
            if child is not None and not _wait_gone(child) and str(conf) in _cmdline(child):
                os.kill(child, signal.SIGKILL)
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)

    # helpers in a namespace -------------------------------------------------------------------

    def _helper(self, ns: str, job: dict) -> subprocess.Popen[str]:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(SRC_DIR), os.environ.get("PYTHONPATH")])))
        command = ["ip", "netns", "exec", ns, sys.executable, "-c", HELPER, json.dumps(job)]
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def call(self, ns: str, job: dict) -> object:
        process = self._helper(ns, job)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        return json.loads(out)

    def start_listener(
        self, ns: str, seconds: float, outgoing: bool = False, delay: float = 0.0
    ) -> tuple[subprocess.Popen[str], float]:
        """Start a listener helper; returns once its socket is open, with the time it opened.

        The helper reads nothing for the first `delay` seconds.
        """
        job = {"kind": "listen", "interface": IFACE, "seconds": seconds, "outgoing": outgoing, "delay": delay}
        process = self._helper(ns, job)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, process.stderr.read() if process.stderr else "listener died"
        return process, json.loads(line)["ready"]

    def collect(self, listening: tuple[subprocess.Popen[str], float]) -> Heard:
        process, ready = listening
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        *lines, summary = [json.loads(line) for line in out.splitlines()]
        packets = [
            dataclasses.replace(
                parse_packet(bytes.fromhex(r["raw"])), src_mac=r["mac"], received=r["received"], outgoing=r["outgoing"]
            )
            for r in lines
        ]
        return Heard(packets, ready, summary["end"], summary["rejected"], summary["last_error"])

    def listen(self, ns: str, seconds: float, outgoing: bool = False, delay: float = 0.0) -> Heard:
        return self.collect(self.start_listener(ns, seconds, outgoing, delay))

    def send(self, ns: str, adverts: list[tuple[Advert, object, object]]) -> list[float]:
        items = []
        for advert, src, dst in adverts:
            fields = dataclasses.asdict(advert)
            fields["addresses"] = [str(a) for a in advert.addresses]
            fields["auth_data"] = advert.auth_data.hex()
            items.append({"advert": fields, "src": str(src), "dst": str(dst)})
        result = self.call(ns, {"kind": "send", "interface": IFACE, "adverts": items})
        assert isinstance(result, dict)
        return result["sent"]

    def source_a(self, inst: Instance) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """keepalived's source address on A: the IPv4 address; for IPv6 the link-local one
        unless `unicast_src_ip` says otherwise."""
        if inst.family == 4:
            return A_V4
        return A_V6 if inst.unicast else self.ll_a


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _first_per_vrid(packets: list[Packet], mac: str, priority: int) -> dict[int, Packet]:
    first: dict[int, Packet] = {}
    for packet in packets:
        if packet.src_mac == mac and packet.advert.priority == priority:
            first.setdefault(packet.advert.vrid, packet)
    return first


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        _unavailable("needs root (CAP_NET_ADMIN, CAP_NET_RAW)")
    for tool in ("ip", "keepalived"):
        if shutil.which(tool) is None:
            _unavailable(f"`{tool}` is not installed")
    lab = Lab(tmp_path_factory.mktemp("vrrp-wire"))
    try:
        try:
            lab.build_network()
        except subprocess.CalledProcessError as error:
            _unavailable(f"network namespaces: {' '.join(error.cmd)}: {error.stderr.strip()}")
        # A first, alone, so it is master of every instance before B (lower priority) joins.
        lab.start_keepalived(lab.ns_a, "a", PRIORITY_A, str(A_V6), str(B_V4), str(B_V6), hold=True)
        lab.captured = lab.wait_until_a_is_master()
        lab.start_keepalived(lab.ns_b, "b", PRIORITY_B, str(B_V6), str(A_V4), str(A_V6), hold=False)
        time.sleep(1.5)  # B starts as BACKUP and hears A within one advert interval.
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def resign(lab: Lab) -> tuple[float, Heard, Heard]:
    """The fast drain of issue 9 on A: hold on (priority 50), then one priority-0 advert per instance.

    B records the resign adverts, A records B's answers. Returns (send time, B heard, A heard)
    after clearing A's hold and waiting until A is master again, so later tests find it so.
    """
    at_b = lab.start_listener(lab.ns_b, 2.5)
    at_a = lab.start_listener(lab.ns_a, 2.5)
    lab.set_hold(1)
    time.sleep(0.2)  # keepalived reads the track file through inotify: its next advert says 50.
    sent = lab.send(lab.ns_a, [(inst.advert(0), lab.source_a(inst), inst.destination()) for inst in INSTANCES])
    try:
        return sent[0], lab.collect(at_b), lab.collect(at_a)
    finally:
        lab.set_hold(0)
        lab.wait_until_a_is_master()


@pytest.mark.parametrize("inst", INSTANCES, ids=lambda i: i.name)
def test_keepalived_sends_exactly_what_build_advert_builds(lab: Lab, inst: Instance) -> None:
    packet = lab.captured[inst.vrid]
    advert = packet.advert
    assert (advert.src, advert.dst) == (lab.source_a(inst), inst.destination())
    payload = build_advert(inst.advert(PRIORITY_A), advert.src, advert.dst)
    assert packet.raw.endswith(payload), "VRRP bytes differ from keepalived's"
    assert packet.tos == 0xC0
    # keepalived leaves IPv6 unicast adverts at the kernel's default hop limit.
    assert packet.ttl == (64 if inst.family == 6 and inst.unicast else 255)


@pytest.mark.parametrize("inst", INSTANCES, ids=lambda i: i.name)
def test_resign_advert_equals_keepalived_but_priority_and_checksum(
    lab: Lab, resign: tuple[float, Heard, Heard], inst: Instance
) -> None:
    _, at_b, _ = resign
    ours = _first_per_vrid(at_b.packets, lab.mac_a, 0)[inst.vrid]
    theirs = lab.captured[inst.vrid]
    assert at_b.rejected == 0, at_b.last_error
    assert ours.src_mac == theirs.src_mac == lab.mac_a
    assert (ours.advert.src, ours.advert.dst) == (theirs.advert.src, theirs.advert.dst)
    assert ours.tos == theirs.tos
    a, b = ours.raw, theirs.raw
    assert len(a) == len(b)
    if inst.family == 4:
        # Same IPv4 header but for the id (kernel-chosen) and the header checksum that follows it.
        assert a[:4] + a[6:10] + a[12:20] == b[:4] + b[6:10] + b[12:20]
        header = 20
    else:
        # Same version, traffic class, payload length, next header, addresses; flow label aside.
        assert (a[0], a[1] >> 4) == (b[0], b[1] >> 4)
        assert a[4:7] + a[8:40] == b[4:7] + b[8:40]
        assert a[7] == 255 and ours.ttl == 255
        header = 40
    differing = {i for i, (x, y) in enumerate(zip(a[header:], b[header:], strict=True)) if x != y}
    assert differing <= {2, 6, 7}
    assert ours.advert.priority == 0
    assert dataclasses.replace(ours.advert, priority=PRIORITY_A, checksum=None) == dataclasses.replace(
        theirs.advert, checksum=None
    )


@pytest.mark.parametrize("inst", INSTANCES, ids=lambda i: i.name)
def test_keepalived_accepts_the_resign_advert(lab: Lab, resign: tuple[float, Heard, Heard], inst: Instance) -> None:
    """B's keepalived takes over after its skew time, well before its Master_Down_Interval."""
    sent, _, at_a = resign
    answer = _first_per_vrid([p for p in at_a.packets if p.received >= sent], lab.mac_b, PRIORITY_B).get(inst.vrid)
    assert answer is not None, f"B never became master of {inst.name} after the resign advert"
    assert answer.received is not None
    skew = timing.skew(PRIORITY_B, inst.advert_int)
    assert answer.received - sent < skew + 0.5 < timing.master_down_interval(PRIORITY_B, inst.advert_int)


def test_listener_skips_this_hosts_own_adverts_unless_asked(lab: Lab) -> None:
    plain = lab.start_listener(lab.ns_a, 1.5)
    with_own = lab.start_listener(lab.ns_a, 1.5, outgoing=True)
    plain_heard, own_heard = lab.collect(plain), lab.collect(with_own)
    assert not [p for p in plain_heard.packets if p.outgoing or p.src_mac == lab.mac_a]
    own = [p for p in own_heard.packets if p.outgoing]
    assert own and all(p.src_mac == lab.mac_a for p in own)
    assert {p.advert.vrid for p in own} == {inst.vrid for inst in INSTANCES}


def test_listener_times_are_arrival_times(lab: Lab) -> None:
    # Nothing is read for the first second: those packets still carry their arrival time.
    heard = lab.listen(lab.ns_b, 1.6, delay=1.0)
    assert heard.packets
    for packet in heard.packets:
        assert packet.received is not None
        assert heard.ready <= packet.received <= heard.end
    assert min(p.received for p in heard.packets if p.received is not None) < heard.ready + 0.9


def test_listener_skips_and_counts_damaged_adverts(lab: Lab) -> None:
    inst = INSTANCES[0]
    damaged = bytearray(build_packet(inst.advert(PRIORITY_A), A_V4, MULTICAST_V4))
    damaged[-1] ^= 0xFF  # last byte of the authentication data: the VRRP checksum no longer holds
    listening = lab.start_listener(lab.ns_b, 0.8)
    lab.call(lab.ns_a, {"kind": "send_raw", "interface": IFACE, "packet": damaged.hex(), "dst": str(MULTICAST_V4)})
    heard = lab.collect(listening)
    assert heard.rejected == 1
    assert heard.last_error == f"{lab.mac_a}: bad VRRPv2 checksum 0x86d2 in advert from {A_V4}"
    assert heard.packets, "valid adverts still come through"


def test_listener_proves_the_peer_is_master(lab: Lab) -> None:
    # What the drain checks on B: adverts for our VRIDs from another address with a higher priority.
    heard = lab.listen(lab.ns_b, 1.2)
    ours = {B_V4, B_V6, lab.ll_b}
    proof = {p.advert.vrid for p in heard.packets if p.advert.src not in ours and p.advert.priority > PRIORITY_B}
    assert proof >= {inst.vrid for inst in INSTANCES if inst.advert_int <= 1}


def test_arp_who_has_finds_the_vip_holder(lab: Lab) -> None:
    held = lab.call(
        lab.ns_b, {"kind": "arp", "interface": IFACE, "target": "192.0.2.21", "sender": str(B_V4), "timeout": 0.5}
    )
    assert held == [[lab.mac_a, "192.0.2.21"]]
    nobody = lab.call(
        lab.ns_b, {"kind": "arp", "interface": IFACE, "target": "192.0.2.250", "sender": "0.0.0.0", "timeout": 0.3}
    )
    assert nobody == []
    # A holds it: A's own probe gets no answer (no host answers its own request).
    local = lab.call(
        lab.ns_a, {"kind": "arp", "interface": IFACE, "target": "192.0.2.21", "sender": str(A_V4), "timeout": 0.3}
    )
    assert local == []


def test_local_mac(lab: Lab) -> None:
    assert lab.call(lab.ns_a, {"kind": "mac", "interface": IFACE}) == lab.mac_a
    assert lab.call(lab.ns_b, {"kind": "mac", "interface": IFACE}) == lab.mac_b
