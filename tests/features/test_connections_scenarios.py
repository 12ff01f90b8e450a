"""features/connections: long-lived connections through a drain, a preemption and a crash
(`vipdrain.drain.preserve_connections`, vipdrain.preserve)."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass

import pytest
from pytest_bdd import given, parsers, scenarios, then, when
from rollout_support import BoshRun, Story, Traffic, status_json

from vipdrain import preserve
from vipdrain.lab.client import STREAM_TCP_PORT, ClientRun, Stream
from vipdrain.lab.cluster import Lab
from vipdrain.lab.haproxy import HTTP_PORT
from vipdrain.lab.wait import until

scenarios("connections")

#: Feature wording -> the load client's stream mode.
KINDS = {"HTTP download": "http", "HTTP keep-alive": "keepalive", "raw TCP": "tcp"}
#: Streams of one kind start at most this far apart (see `open_streams`).
MAX_STAGGER = 1.0
#: Generous deadlines: outcomes are asserted, not timing.
OPEN_DEADLINE = 15.0
#: Longer than any arm the lab's start can leave (grace + 4 x advert_int + 1 s in these scenarios).
ARMS_GONE_DEADLINE = 30.0
EXPIRY_DEADLINE_SLACK = 10.0


@dataclass(frozen=True)
class Streams:
    """One kind of long-lived connection: `count` of them at a time, each `seconds` long."""

    kind: str
    run: ClientRun
    count: int
    seconds: float

    def open_during(self, start: float, end: float) -> list[Stream]:
        """Streams opened before `start` that were due to end after `end`: they had to outlive
        that window (a stream that ended by itself in between proves nothing)."""
        return [s for s in self.run.streams() if s.time < start and s.time + self.seconds > end]

    def wait_ended(self, t: float) -> None:
        """Wait until every stream open at `t` has ended and been recorded: each of the `count`
        loops has recorded a stream opened after `t` (a loop opens its next stream only once
        the last one ended)."""
        until(lambda: len([s for s in self.run.streams() if s.time > t]) >= self.count,
              2 * self.seconds + OPEN_DEADLINE, interval=0.1, what=f"the {self.kind} streams open at {t:.3f} to end")


def describe(streams: list[Stream]) -> str:
    counts = Counter((s.outcome, s.vm) for s in streams)
    return ", ".join(f"{n} {outcome} on {vm}" for (outcome, vm), n in counts.items()) or "none"


def last_action_end(story: Story) -> float:
    return max([r.end for r in story.runs] + [c.end for c in story.calls] + [t for t, _ in story.notes])


def first_drain(deploy: BoshRun, vm: str) -> tuple[float, float]:
    """Start and end of the VM's first `vipdrain drain` process: the end is when it had verified
    the handoff (BOSH's wait for the grace period it printed comes after)."""
    calls = deploy.calls_of("drain", vm)
    assert calls, f"{vm} did not drain"
    return calls[0].start, calls[0].end


# --------------------------------------------------------------------------------------------
# Given / When
# --------------------------------------------------------------------------------------------


@given(parsers.parse("these long-lived connections are open through the VIP, each lasting {seconds:g} s:"),
       target_fixture="streams")
def open_streams(lab: Lab, story: Story, seconds: float, datatable: list[list[str]]) -> list[Streams]:
    """One stream client per kind, its streams staggered (at most MAX_STAGGER apart, so that
    some are always mid-way), all open on the VIP's holder before the step ends."""
    header, *rows = datatable
    vip = lab.vips[0]
    holder = lab.vm(lab.wait_converged()[vip])
    out, per_port = [], Counter[int]()
    for row in rows:
        item = dict(zip(header, row, strict=True))
        kind, count = item["kind"], int(item["count"])
        assert kind in KINDS, f"unknown kind of connection {kind!r} (known: {', '.join(KINDS)})"
        mode = KINDS[kind]
        run = lab.client(rate=0, vip=vip, streams=count, stream_mode=mode, stream_seconds=seconds,
                         stream_stagger=min(MAX_STAGGER, seconds / count)).start()
        story.streams[kind] = run
        out.append(Streams(kind, run, count, seconds))
        per_port[STREAM_TCP_PORT if mode == "tcp" else HTTP_PORT] += count
    until(lambda: all(holder.established(port) >= n for port, n in per_port.items()), OPEN_DEADLINE,
          interval=0.05, what=f"the streams to be open on {holder.name}")
    story.note(f"setup: {sum(s.count for s in out)} long-lived connections open on {holder.name}")
    return out


@when(parsers.parse("{vm}'s network link is cut"), target_fixture="cut")
def link_cut(request: pytest.FixtureRequest, lab: Lab, story: Story, vm: str) -> float:
    """The crash: the VM vanishes from the network (no resign advert, no drain notice); its link
    comes back when the scenario ends."""
    stack = contextlib.ExitStack()
    stack.enter_context(lab.faults.link_cut(vm))
    request.addfinalizer(stack.close)
    story.note(f"{vm}'s link cut")
    return time.time()


@when("every stream has been opened again since")
def streams_reopened(story: Story, streams: list[Streams]) -> None:
    """Each stream loop has ended a stream opened after the last action: the ones open now all
    started after it (on the VIP's holder since then)."""
    since = last_action_end(story)
    for s in streams:
        s.wait_ended(since)
    story.note("every stream opened again since the last action")


# --------------------------------------------------------------------------------------------
# Then
# --------------------------------------------------------------------------------------------


@then(parsers.parse("every stream open when {vm}'s drain began finished on {vm2}, after the VIP had left it"))
def streams_finished_on(lab: Lab, streams: list[Streams], deploy: BoshRun, vm: str, vm2: str) -> None:
    """They ended with the server's last line (not a reset), served by `vm` to the end - after
    its drain had verified that a peer holds the VIP."""
    start, end = first_drain(deploy, lab.vm(vm).name)
    for s in streams:
        s.wait_ended(end)
        survivors = s.open_during(start, end)
        assert survivors, f"no {s.kind} stream was open across {vm}'s drain: {describe(s.run.streams())}"
        bad = [st for st in survivors if (st.outcome, st.vm) != ("finished", lab.vm(vm2).name)]
        assert not bad, f"{s.kind} streams open across {vm}'s drain: {describe(survivors)}; e.g. {bad[0]}"


@then(parsers.parse("every stream open when {vm}'s drain began broke"))
def streams_broke(lab: Lab, streams: list[Streams], deploy: BoshRun, vm: str) -> None:
    start, end = first_drain(deploy, lab.vm(vm).name)
    for s in streams:
        s.wait_ended(end)
        hit = s.open_during(start, end)
        assert hit, f"no {s.kind} stream was open across {vm}'s drain: {describe(s.run.streams())}"
        assert all(st.outcome == "broken" for st in hit), f"{s.kind}: {describe(hit)}"


@then(parsers.parse("every stream open on {vm} when {other} took the VIP back finished on {vm2}"))
def streams_survived_preemption(lab: Lab, story: Story, traffic: Traffic, streams: list[Streams], vm: str,
                                other: str, vm2: str) -> None:
    """The move back was a preemption (no drain, no notice): the streams `vm` served across it
    finished there - `other` armed itself before its hold was released."""
    name, back = lab.vm(vm).name, lab.vm(other).name
    undrain = story.calls[-1]
    assert undrain.args[:1] == ("undrain",) and undrain.vm == back, f"the last command was not {other}'s undrain"
    vip = lab.vips[0]
    took = until(lambda: next((c.time for c in traffic.observer.timeline(vip)
                               if c.time >= undrain.start and back in c.holders), None),
                 10, what=f"{other} to take {vip} back")
    for s in streams:
        s.wait_ended(took)
        across = [st for st in s.run.streams() if st.vm == name and st.time < took < st.time + s.seconds]
        assert across, f"no {s.kind} stream on {vm} when {other} took the VIP back: {describe(s.run.streams())}"
        bad = [st for st in across if (st.outcome, st.vm) != ("finished", lab.vm(vm2).name)]
        assert not bad, f"{s.kind} streams across the preemption: {describe(across)}; e.g. {bad[0]}"


@then(parsers.parse('"vipdrain status" on {vm} shows that it forwards the VIP\'s old connections to {other}'))
def status_shows_forwarding(lab: Lab, story: Story, vm: str, other: str) -> None:
    """Through the tunnel (the default) status names the old VM by its address, at layer 2 by its MAC."""
    status = status_json(lab, story, vm)
    mode = lab.vm(vm).properties.get("vipdrain", {}).get("drain", {}).get("preserve_forwarding", "encapsulated")
    target = lab.vm(other).ip if mode == "encapsulated" else lab.vm(other).mac
    assert status["forwarding"] == {vip: target for vip in lab.vips}, status


@then("no stream broke")
def no_stream_broke(story: Story, streams: list[Streams]) -> None:
    """Across the whole scenario, every stream that ended finished (waits for the ones open at
    the end of the last action)."""
    end = last_action_end(story)
    for s in streams:
        s.wait_ended(end)
        broken = [st for st in s.run.streams() if st.outcome == "broken"]
        assert not broken, f"{s.kind}: {describe(s.run.streams())}; e.g. {broken[0]}"


@then(parsers.parse("new requests during {vm}'s grace period were answered by {other}"))
def new_requests_on_new_master(lab: Lab, traffic: Traffic, deploy: BoshRun, vm: str, other: str) -> None:
    """Between the end of the VM's drain and its `monit stop` (BOSH waits the grace period the
    drain returned), its old streams run there while every new connection goes to the peer."""
    name = lab.vm(vm).name
    _, end = first_drain(deploy, name)
    stop = next(s for s in deploy.steps(name, "stop") if s.start >= end)
    for vip, summary in traffic.summaries(start=end, end=stop.start).items():
        assert summary.total > 0 and summary.failures == 0, f"{vip}: {summary}"
        assert set(summary.by_vm) == {lab.vm(other).name}, f"{vip} during {vm}'s grace period: {summary}"


@then(parsers.parse("within {seconds:g} s no VM forwards connections and no drain notice is being sent"))
def nothing_left(lab: Lab, seconds: float) -> None:
    """Arms expire in the kernel; the repeater of drain notices has exited."""
    until(lambda: not any(vm.forwarding() for vm in lab.vms), seconds, interval=0.2,
          what="every VM to stop forwarding")
    running = {vm.name: pid for vm in lab.vms if (pid := preserve.running_keeper(vm.layout)) is not None}
    assert not running, f"drain-notice repeaters still running: {running}"


@given("no VM forwards connections any more")
def no_arm_left(lab: Lab) -> None:
    """Arms left by the group's own start (a takeover armed in post-start that another VM's
    preemption overtook) run out within grace + 4 x advert_int + 1 s."""
    until(lambda: not any(vm.forwarding() for vm in lab.vms), ARMS_GONE_DEADLINE, interval=0.2,
          what="arms left by the group's start to run out")


@then(parsers.parse("{vm} forwards no connections"))
def forwards_nothing(lab: Lab, vm: str) -> None:
    arms = lab.vm(vm).forwarding()
    assert not arms, f"{vm} forwards connections of {arms}"


@then(parsers.parse("every stream open on {vm} was reset, none left hanging"))
def streams_reset(lab: Lab, streams: list[Streams], cut: float, vm: str) -> None:
    """A reset from the new master, not a black hole that only the client's idle timeout ends."""
    for s in streams:
        until(lambda s=s: len([st for st in s.run.streams() if st.time < cut]) >= s.count, OPEN_DEADLINE,
              interval=0.05, what=f"the {s.kind} streams open at the crash to end")
        hit = [st for st in s.run.streams() if st.time < cut]
        assert all(st.vm == lab.vm(vm).name for st in hit), describe(hit)
        assert all(st.outcome == "broken" and "Reset" in st.error for st in hit), describe(hit) + f": {hit}"

