"""Connection-preserving handoff on real keepalived and haproxy (vipdrain.preserve).

Two lab VMs (`vipdrain.lab`), the standing nftables table installed on both as pre-start would,
long-lived streams through the VIP, then:
- a drain of the holder with the drain notice -> the streams opened on the old VM finish there,
  short requests (one connection each) never fail and go to the new master, the old VM stays
  silent for ARP, and afterwards nothing is armed, the repeater is gone, and cleanup leaves no table;
- a crash of the holder (no notice) -> nothing is armed and the old connections get a reset at once;
- a takeover that another VM won leaves no arm; a client port reused from a connection that ended
  on the taker keeps its new connection on the peer; an IPv6 VIP taken back by preemption (adverts
  from a link-local address) is armed towards the peer named by the advert's MAC;
- on a switch that enforces anti-spoofing, the streams survive through the tunnel (the default)
  and die with layer-2 forwarding.

Everything goes through the job's own steps: the lab VMs' pre-start installs the table from
`vipdrain.drain.preserve_connections`, and `vipdrain drain` sends the notices before its resign advert.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from vipdrain import preserve
from vipdrain.hold import read_hold
from vipdrain.lab import netns
from vipdrain.lab.client import CONTENT_LENGTH, ClientRun, Stream
from vipdrain.lab.cluster import OBSERVER_OFFSET, VM, Lab
from vipdrain.lab.wait import until
from vipdrain.vrrp import arp_who_has

pytestmark = [pytest.mark.lab, pytest.mark.slow]

GRACE = 8.0
STREAM_SECONDS = 8.0


PRESERVING = {"vipdrain": {"drain": {"preserve_connections": True, "preserve_grace": GRACE}}}


def our_tables(vm: VM) -> list[str]:
    out = vm.run(["nft", "-j", "list", "tables"]).stdout
    return [t["table"]["name"] for t in json.loads(out)["nftables"]
            if "table" in t and t["table"]["name"] == preserve.TABLE]


@pytest.fixture
def two_vms(request: pytest.FixtureRequest, lab_factory: Callable[..., Lab]) -> Iterator[Lab]:
    """Two VMs with connection preservation on (pre-start installed the table); the repeater is
    stopped whatever happens."""
    lab = lab_factory(nodes=2, overrides=PRESERVING, **getattr(request, "param", {}))
    for vm in lab.vms:
        assert our_tables(vm) == [preserve.TABLE]
    try:
        yield lab
    finally:
        for vm in lab.vms:
            preserve.end_handoff(vm.layout)


def before(streams: list[Stream], t: float) -> list[Stream]:
    return [s for s in streams if s.time < t]


def drain_under_streams(old: VM, runs: list[ClientRun], on_port_80: int) -> tuple[float, float]:
    """Start `runs`, wait until their streams are open on `old` (2 raw TCP ones on port 81,
    `on_port_80` HTTP ones), then drain it the BOSH way: (when the drain began, when it returned).
    The caller stops the runs."""
    for run in runs:
        run.start()
    until(lambda: old.established(81) >= 2 and old.established(80) >= on_port_80, 10, interval=0.05,
          what="the streams to be open on the old VM")
    drain_started = time.time()
    drained = old.vipdrain("drain", "job_changed", "hash_changed")
    # BOSH waits out the grace period before it stops haproxy: the streams have it.
    assert drained.stdout == f"{int(GRACE)}\n", drained.stderr
    assert "drain notice for" in drained.stderr
    return drain_started, time.time()


@pytest.mark.parametrize("two_vms", [{"advert_int": 1.0}, {"advert_int": 1.0, "ipv6": True}],
                         indirect=True, ids=["ipv4", "ipv6"])
def test_streams_opened_before_a_drain_finish_on_the_old_vm(two_vms: Lab) -> None:
    lab = two_vms
    old, new = lab.vms
    vip = lab.vips[0]
    assert lab.wait_converged() == {vip: old.name}
    runs = [
        lab.client(rate=100, streams=2, stream_mode="tcp", stream_seconds=STREAM_SECONDS),
        lab.client(rate=0, streams=2, stream_mode="http", stream_seconds=STREAM_SECONDS),
        lab.client(rate=0, streams=2, stream_mode="keepalive", stream_seconds=STREAM_SECONDS),
    ]
    try:
        drain_started, handed_over = drain_under_streams(old, runs, on_port_80=4)
        assert lab.holders(vip) == [new.name]
        assert new.forwarding() == {vip: old.name}
        if ipaddress.ip_address(vip).version == 4:
            # The old VM keeps the VIP on lo but never answers ARP for it.
            observer_ip = f"192.0.2.{OBSERVER_OFFSET}"
            answers = netns.call_in(lab.observer_namespace, arp_who_has, "eth0", vip, observer_ip, 0.5)
            assert [mac for mac, _ in answers] == [new.mac]
        until(lambda: all(len(before(r.streams(), drain_started)) >= 2 for r in runs),
              STREAM_SECONDS + 5, interval=0.2, what="the streams opened before the drain to end")
    finally:
        for run in runs:
            run.stop()

    for run in runs:
        early = before(run.streams(), drain_started)
        assert early, f"{run.name}: no stream was open during the handoff"
        for s in early:
            assert (s.outcome, s.vm) == ("finished", old.name), s
            assert s.end > handed_over, f"{s} ended before the handoff"
        late = [s for s in run.streams() if s.time > handed_over and s.outcome != "cancelled"]
        assert all((s.outcome, s.vm) == ("finished", new.name) for s in late), late
    # IPv6 as IPv4: not one failed request. (The "first SYN dropped after the NA" seen without
    # preservation was no drop: a connection whose SYN reached the old VM and whose request
    # reached the new one, where a TIME_WAIT socket of the same 4-tuple - the client reuses ports
    # - answered with bare ACKs until the client timed out. The forwarding sends it back.)
    summary = runs[0].summary()
    assert summary.failures == 0, str(summary)
    after = runs[0].summary(start=handed_over)
    assert after.total > 0 and set(after.by_vm) == {new.name}, str(after)

    # Nothing outlives the grace period: the arm expires in the kernel, the repeater has exited.
    until(lambda: not new.forwarding(), GRACE + 3, interval=0.2, what="the arm to expire")
    assert preserve.running_keeper(old.layout) is None
    assert not preserve.keeper_pid_file(old.layout).exists()
    old.vipdrain("undrain")
    assert vip in old.addresses(include_loopback=True)  # the silent copy on lo stays (vipdrain.vipaddr)
    for vm in lab.vms:
        vm.run([sys.executable, "-m", "vipdrain.preserve", "cleanup", "--root", str(vm.root)])
        assert our_tables(vm) == []


@pytest.mark.parametrize(("mode", "kept"), [("encapsulated", True), ("layer2", False)])
def test_on_a_switch_with_port_security_only_encapsulated_forwarding_keeps_the_streams(
        lab_factory: Callable[..., Lab], mode: str, kept: bool) -> None:
    """The lab switch drops what OpenStack port security drops (vipdrain.lab.portsec): a frame
    whose source is not its port's own MAC and address or an allowed pair (the VIPs). Layer-2
    forwarding sends the client's packets with the client's source address: dropped, and the
    streams open on the old VM die. Through the tunnel the outer source is the new master's own
    address: every stream finishes on the old VM, and no request fails."""
    overrides = {"vipdrain": {"drain": {**PRESERVING["vipdrain"]["drain"], "preserve_forwarding": mode}}}
    lab = lab_factory(nodes=2, advert_int=1.0, overrides=overrides, anti_spoofing=True)
    old, new = lab.vms
    vip = lab.vips[0]
    assert lab.wait_converged() == {vip: old.name}
    runs = [lab.client(rate=100, streams=2, stream_mode="tcp", stream_seconds=STREAM_SECONDS),
            lab.client(rate=0, streams=2, stream_mode="keepalive", stream_seconds=STREAM_SECONDS)]
    try:
        drain_started, _ = drain_under_streams(old, runs, on_port_80=2)
        assert lab.holders(vip) == [new.name] and new.forwarding() == {vip: old.name}
        until(lambda: all(len(before(r.streams(), drain_started)) >= 2 for r in runs),
              STREAM_SECONDS + 10, interval=0.2, what="the streams opened before the drain to end")
    finally:
        for run in runs:
            run.stop()
        preserve.end_handoff(old.layout)
    early = [s for run in runs for s in before(run.streams(), drain_started)]
    if kept:
        assert all((s.outcome, s.vm) == ("finished", old.name) for s in early), early
        summary = runs[0].summary()
        assert summary.failures == 0, str(summary)
    else:
        assert not any(s.outcome == "finished" for s in early), early


@pytest.mark.parametrize("two_vms", [{"advert_int": 0.2}], indirect=True)
def test_a_crash_failover_arms_nothing_and_old_connections_are_reset_at_once(two_vms: Lab) -> None:
    lab = two_vms
    old, new = lab.vms
    vip = lab.vips[0]
    lab.wait_converged()
    # keep-alive streams: the client keeps sending, so the new master sees their packets.
    run = ClientRun(lab, target=vip, namespace=lab.client_namespaces[0], rate=0, streams=2,
                    stream_mode="keepalive", stream_seconds=30)
    with run:
        until(lambda: old.established(80) >= 2, 10, interval=0.05, what="the streams to be open on the old VM")
        crashed = time.time()
        with lab.faults.link_cut(old):
            lab.wait_holder(vip, new.name, timeout=10)
            until(lambda: len(before(run.streams(), crashed)) >= 2, 5, interval=0.05,
                  what="the old connections to end")
            assert new.forwarding() == {}
    broken = before(run.streams(), crashed)
    # A reset from the new master, not the client's 2 s idle timeout of a black hole.
    assert all((s.vm, s.outcome) == (old.name, "broken") and "Reset" in s.error for s in broken), broken


def test_a_takeover_that_another_vm_won_leaves_no_arm(lab_factory: Callable[..., Lab]) -> None:
    """Two VMs released one after the other, both outranking the master: each arms its takeover
    towards the master, the better one preempts it first, and the other takes its arm back when
    its undrain returns. Left armed (the defect: for grace + 4 x advert_int + 1 s), it would
    black-hole the new master's connections if that master crashed and this VM took over.

    advert_int 1 s keeps the order certain: `second` starts once `best` has released its hold,
    listens 1.7 s while the master still holds the VIP (`best` preempts 3 x advert_int + skew
    after its release), and its own preemption would come 3.4 s after its release."""
    lab = lab_factory(nodes=3, overrides=PRESERVING, advert_int=1.0)
    best, second, master = lab.vms  # preferred placement: priorities 200, 150, 100
    vip = lab.vips[0]
    lab.wait_converged()
    for vm in (best, second):
        vm.vipdrain("drain")
    lab.wait_holder(vip, master.name)
    # The drains armed their takers (for the grace period): start from a table with no arm.
    until(lambda: not any(vm.forwarding() for vm in lab.vms), GRACE + 5, interval=0.2,
          what="the drains' arms to expire")
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(best.vipdrain, "undrain")
        until(lambda: not read_hold(best.layout).active, 10, interval=0.02, what=f"{best.name} to release its hold")
        assert lab.holders(vip) == [master.name]
        then = pool.submit(second.vipdrain, "undrain")
        results = [first.result(), then.result()]
    assert all(r.returncode == 0 for r in results), results
    assert "did not take" not in results[1].stderr, results[1].stderr  # it saw the better VM win
    lab.wait_holder(vip, best.name, timeout=10)
    log = second.layout.vipdrain_log.read_text()
    assert f"will take {vip} over by preemption" in log and f"{vip} was not taken over" in log, log[-2000:]
    assert second.forwarding() == {}, second.forwarding()
    assert best.forwarding() == {vip: master.name}  # the takeover that happened stays armed


#: A client port outside the ephemeral range, bound explicitly by both connections.
REUSED_PORT = 23456


def _bound_connection(vip: str) -> socket.socket:
    """A connection to the VIP's port 80 from REUSED_PORT (called in the client's namespace)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("", REUSED_PORT))
    sock.settimeout(2.0)
    sock.connect((vip, 80))
    return sock


def flows_on(vm: VM, vip: ipaddress.IPv4Address) -> list[preserve.Flow]:
    """The VM's connections to `vip`, TIME_WAIT included (its /proc/net/tcp, read in its namespace:
    /proc/net follows the process, not a thread that entered the namespace)."""
    return preserve.local_flows(vm.run(["cat", "/proc/net/tcp"]).stdout, [vip])


def _ask(sock: socket.socket, vip: str) -> str:
    """One HTTP/1.1 keep-alive GET on `sock`: the body (the name of the VM that answered)."""
    sock.sendall(f"GET / HTTP/1.1\r\nHost: {vip}\r\n\r\n".encode())
    buf = b""

    def more() -> None:
        nonlocal buf
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {buf!r}")
        buf += chunk

    while b"\r\n\r\n" not in buf:
        more()
    head = buf.split(b"\r\n\r\n", 1)[0]
    length = int(CONTENT_LENGTH.search(head).group(1))  # type: ignore[union-attr]
    while len(buf) < len(head) + 4 + length:
        more()
    return buf[len(head) + 4:].decode().strip()


@pytest.mark.parametrize("two_vms", [{"advert_int": 0.2}], indirect=True)
def test_a_client_port_reused_from_a_connection_that_ended_on_the_taker_stays_with_the_peer(two_vms: Lab) -> None:
    """vm0 served a connection from port P and closed it first: its TIME_WAIT socket stays 60 s.
    The client, with nothing left on P, opens a new connection from P to vm1 after a drain;
    then vm0 undrains and takes the VIP back. That connection belongs to vm1 and must be sent
    there. The defect (CI: a keep-alive stream timed out): the takeover arm marked vm0's
    TIME_WAIT connections as its own, so the new connection's packets went to vm0's TIME_WAIT
    socket, which answers them with bare ACKs, until the client gave up."""
    lab = two_vms
    old, new = lab.vms
    vip = str(lab.vips[0])
    client = lab.client_namespaces[0]
    lab.wait_converged()
    lab.wait_holder(vip, old.name)
    with netns.call_in(client, _bound_connection, vip) as first:
        first.sendall(f"GET / HTTP/1.0\r\nHost: {vip}\r\n\r\n".encode())
        while first.recv(4096):  # haproxy answers and closes first: the TIME_WAIT is on vm0
            pass
    tuple_ = (ipaddress.ip_address(lab.client_ip(0)), REUSED_PORT, ipaddress.ip_address(vip), 80)
    until(lambda: tuple_ in flows_on(old, tuple_[2]), 5, interval=0.05,
          what=f"{old.name} to hold the first connection in TIME_WAIT")
    old.vipdrain("drain")
    lab.wait_holder(vip, new.name)
    with netns.call_in(client, _bound_connection, vip) as second:
        assert _ask(second, vip) == new.name
        undrain = old.vipdrain("undrain")
        assert undrain.returncode == 0, undrain.stderr
        lab.wait_holder(vip, old.name)
        assert tuple_ in flows_on(old, tuple_[2])  # still in TIME_WAIT there
        assert old.forwarding() == {vip: new.name}
        assert [_ask(second, vip) for _ in range(3)] == [new.name] * 3


@pytest.mark.parametrize("two_vms", [{"advert_int": 0.2, "ipv6": True}], indirect=True)
def test_an_ipv6_vip_taken_back_by_preemption_keeps_the_peers_connections(two_vms: Lab) -> None:
    """IPv6 VRRP adverts come from the sender's link-local address (RFC 5798 5.1.2.1), which is
    none of the addresses the tunnel knows its peers by. The VM taking the VIP back must still
    arm towards the peer that holds it - named by the advert's MAC - or the peer's connections
    are reset. The defect: it armed nothing (the known gap of issue 15)."""
    lab = two_vms
    old, new = lab.vms
    vip = str(lab.vips[0])
    assert ":" in vip
    lab.wait_converged()
    lab.wait_holder(vip, old.name)
    old.vipdrain("drain")
    lab.wait_holder(vip, new.name)
    with netns.call_in(lab.client_namespaces[0], socket.create_connection, (vip, 80), 2.0) as stream:
        assert _ask(stream, vip) == new.name
        undrain = old.vipdrain("undrain")
        assert undrain.returncode == 0, undrain.stderr
        lab.wait_holder(vip, old.name)
        assert old.forwarding() == {vip: new.name}
        assert [_ask(stream, vip) for _ in range(3)] == [new.name] * 3


@pytest.mark.parametrize("two_vms", [{"advert_int": 0.2}], indirect=True)
def test_a_connection_the_client_closed_on_the_new_master_is_soon_forgotten_there(two_vms: Lab) -> None:
    """While armed, the new master remembers the connections that start on it (they stay local).
    One the client closed is forgotten LOCAL_FLOW_LINGER s later, not grace + 10 s later: the
    client reuses the port, and a new connection from it whose SYN reached the old master was
    otherwise kept here, where the TIME_WAIT socket of the closed one answered its request with
    bare ACKs until the client timed out (captured at 1,000 req/s on the anti-spoofing switch:
    3 timeouts in 20 drains)."""
    lab = two_vms
    old, new = lab.vms
    vip = str(lab.vips[0])
    lab.wait_converged()
    lab.wait_holder(vip, old.name)
    old.vipdrain("drain", "job_changed", "hash_changed")
    lab.wait_holder(vip, new.name)
    key = f"{lab.client_ip(0)} . {REUSED_PORT} . {vip} . 80"

    def remembered() -> bool:
        listing = new.run(preserve.list_table_argv()).stdout
        found = preserve.existing_elements(listing)
        return any(key in keys for name, keys in found.items() if name.startswith("local"))

    with netns.call_in(lab.client_namespaces[0], _bound_connection, vip) as sock:
        sock.sendall(f"GET / HTTP/1.0\r\nHost: {vip}\r\n\r\n".encode())
        while sock.recv(4096):  # haproxy answers and closes first
            pass
        assert remembered(), f"{key} is not among {new.name}'s local connections"
    closed = time.monotonic()  # the client's FIN is on its way
    until(lambda: not remembered(), preserve.LOCAL_FLOW_LINGER + 3, interval=0.1,
          what=f"{new.name} to forget the closed connection")
    assert time.monotonic() - closed < GRACE + preserve.LOCAL_FLOW_SLACK - 5
    assert new.forwarding() == {vip: old.name}  # still armed: forgotten by the linger, not with the arm
