"""The job's scripts, rendered with ERB and run in a fake VM root against fake programs: the
drain's stdout contract, exit codes passed on, logging, the runtime environment, and
keepalived_ctl's start/stop (SIGTERM and wait; SIGKILL only after the deadline, then VIP cleanup)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from bosh_harness import FakeVM

from frontends import answering

DRAIN_ARGS = ("job_changed", "hash_changed", "vipdrain", "keepalived")
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} (?P<step>[\w-]+)\[\d+\]: (?P<text>.*)$")


def _calls(vm: FakeVM) -> list[str]:
    return [line for line in vm.calls() if line.startswith("call ")]


# --- drain ------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["0", "5", "-3", "120"])
def test_drain_prints_exactly_the_integer(vm: FakeVM, answer: str) -> None:
    done = vm.run("bin/drain", *DRAIN_ARGS, env={"FAKE_STDOUT": answer + "\n", "FAKE_STDERR": "chatter\nmore"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == answer + "\n"
    assert "chatter" in done.stderr  # vipdrain's stderr stays stderr
    assert _calls(vm) == [f"call drain --root {vm.root} " + " ".join(DRAIN_ARGS)]


def test_drain_passes_bosh_environment_on(vm: FakeVM) -> None:
    state = '{"persistent_disk":0}'
    done = vm.run("bin/drain", "job_shutdown", "hash_unchanged", env={"FAKE_STDOUT": "0", "BOSH_JOB_NEXT_STATE": state})
    assert done.stdout == "0\n"
    assert f"BOSH_JOB_NEXT_STATE={state}" in vm.calls()[1]


@pytest.mark.parametrize(("code", "stdout"), [(1, "5\n"), (2, ""), (3, "-1\n"), (137, "")])
def test_drain_failure_prints_nothing_and_fails(vm: FakeVM, code: int, stdout: str) -> None:
    done = vm.run("bin/drain", *DRAIN_ARGS, env={"FAKE_STDOUT": stdout, "FAKE_EXIT": str(code)})
    assert done.returncode == code
    assert done.stdout == ""
    assert f"vipdrain exited {code}" in done.stderr


@pytest.mark.parametrize("garbage", ["", "\n", "5\n6\n", "five\n", "5 s\n", " 5\n", "+5\n", "5.0\n", "ok 5\n"])
def test_drain_refuses_anything_but_one_integer(vm: FakeVM, garbage: str) -> None:
    done = vm.run("bin/drain", *DRAIN_ARGS, env={"FAKE_STDOUT": garbage})
    assert done.returncode == 1
    assert done.stdout == ""
    assert "instead of one integer" in done.stderr


def test_drain_without_vipdrain_fails_with_a_reason(vm: FakeVM) -> None:
    done = vm.run("bin/drain", *DRAIN_ARGS, fakes_on_path=False)
    assert done.returncode == 127
    assert done.stdout == ""
    assert "vipdrain is not on PATH" in done.stderr
    assert "vipdrain is not on PATH" in vm.log()


def test_drain_logs_timestamped_lines(vm: FakeVM) -> None:
    vm.run("bin/drain", *DRAIN_ARGS, env={"FAKE_STDOUT": "7", "FAKE_STDERR": "handoff verified"})
    vm.run("bin/drain", *DRAIN_ARGS, env={"FAKE_STDOUT": "9"})  # appends
    lines = vm.log().splitlines()
    parsed = [STAMP.match(line) for line in lines]
    assert all(parsed), lines
    texts = [(m["step"], m["text"]) for m in parsed if m]
    assert ("drain", "handoff verified") in texts
    assert [t for s, t in texts if t.startswith("done")] == ["done: 7", "done: 9"]
    assert texts[0] == ("drain", "start: " + " ".join(DRAIN_ARGS))


def test_drain_output_is_the_same_from_lifecycle_dir(vm: FakeVM, tmp_path: Path) -> None:
    """Run from lifecycle/ (sourcing common.sh) the script behaves as the generated one."""
    repo_script = Path(__file__).resolve().parents[2] / "lifecycle" / "drain"
    done = subprocess.run(
        ["bash", str(repo_script), *DRAIN_ARGS],
        env=vm.env({"FAKE_STDOUT": "4"}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "4\n")


# --- start-side hooks ---------------------------------------------------------------------------


@pytest.mark.parametrize("hook", ["pre-start", "post-start", "post-deploy"])
def test_hooks_call_vipdrain_and_pass_the_exit_code_on(vm: FakeVM, hook: str) -> None:
    ok = vm.run(f"bin/{hook}", env={"FAKE_STDOUT": "summary line\n", "FAKE_STDERR": "progress"})
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "summary line\n"
    assert _calls(vm) == [f"call {hook} --root {vm.root}"]
    log = vm.log()
    assert f"{hook}[" in log and "summary line" in log and "progress" in log and "exit 0" in log

    bad = vm.run(f"bin/{hook}", env={"FAKE_EXIT": "2", "FAKE_STDERR": "keepalived.vip: bad"})
    assert bad.returncode == 2
    assert "keepalived.vip: bad" in bad.stderr
    assert "exit 2" in vm.log()


def test_hooks_export_the_wrapper_for_keepalived_scripts(vm: FakeVM) -> None:
    vm.run("bin/pre-start")
    assert f"VIPDRAIN_CMD={vm.job_dir}/bin/vipdrain" in vm.calls()[1]


def test_runtime_env_files_are_sourced(vm: FakeVM, tmp_path: Path) -> None:
    """On a VM vipdrain comes from the package's runtime.env, not from the caller's PATH."""
    package_bin = tmp_path / "package-bin"
    package_bin.mkdir()
    shutil.copy(vm.fakes / "vipdrain", package_bin / "vipdrain")
    env_dir = vm.root / "packages" / "vipdrain" / "bosh"
    env_dir.mkdir(parents=True)
    (env_dir / "runtime.env").write_text(
        f'export PATH="{package_bin}:$PATH"\nexport FAKE_STDERR="from the package"\n'
    )
    # The python package's runtime.env expands $PYTHONPATH unguarded: fine under `set -u` too.
    python_env = vm.root / "packages" / "python-3.12" / "bosh"
    python_env.mkdir(parents=True)
    (python_env / "runtime.env").write_text("export PYTHONPATH=/nowhere:$PYTHONPATH\n")
    done = vm.run("bin/drain", *DRAIN_ARGS, env={"FAKE_STDOUT": "1"}, fakes_on_path=False)
    assert (done.returncode, done.stdout) == (0, "1\n")
    assert "from the package" in done.stderr


def test_wrapper_execs_vipdrain_with_the_root(vm: FakeVM) -> None:
    done = vm.run("bin/vipdrain", "status", "--json", env={"FAKE_STDOUT": '{"ok": true}\n', "FAKE_EXIT": "3"})
    assert (done.returncode, done.stdout) == (3, '{"ok": true}\n')
    assert _calls(vm) == ["call status --json"]
    assert f"VIPDRAIN_ROOT={vm.root}" in vm.calls()[1]
    assert not vm.log()  # keepalived runs it every health check: it must not log


def test_healthcheck_as_the_job_ships_it(vm: FakeVM) -> None:
    """bin/healthcheck rendered by real ERB, run as keepalived.conf names it (no runtime, no
    environment of its own): healthy for a live pid and an answering frontend, not for a hung one."""
    pid_file = vm.root / "haproxy.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    log = vm.root / "keepalived.log"
    with answering(b"HTTP/1.0 200 OK\r\n\r\n") as where:
        done = vm.run("bin/healthcheck", "--pid-file", str(pid_file), "--tcp", f"http://{where}/health",
                      "--timeout", "0.5", "--log", str(log), fakes_on_path=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    with socket.create_server(("127.0.0.1", 0)) as hung:
        where = f"127.0.0.1:{hung.getsockname()[1]}"
        done = vm.run("bin/healthcheck", "--pid-file", str(pid_file), "--tcp", where, "--timeout", "0.5",
                      "--log", str(log), fakes_on_path=False)
    assert done.returncode == 1
    assert f"{where} accepted the connection but did not answer within 0.5 s" in log.read_text()


# --- keepalived_ctl ---------------------------------------------------------------------------


def _keepalived_pid(vm: FakeVM) -> int:
    return int(vm.pid_file.read_text().strip())


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_ctl_start_is_idempotent_and_stop_waits_for_sigterm(vm: FakeVM) -> None:
    env = {"FAKE_TERM_DELAY": "1"}  # keepalived takes a second to withdraw its VIPs
    started = vm.run("bin/keepalived_ctl", "start", env=env)
    assert started.returncode == 0, started.stderr
    pid = _keepalived_pid(vm)
    assert _alive(pid)
    assert f"call keepalived-argv --root {vm.root}" in vm.calls()
    assert "starting: " in vm.log() and f"keepalived started (pid {pid})" in vm.log()

    again = vm.run("bin/keepalived_ctl", "start", env=env)
    assert again.returncode == 0
    assert _keepalived_pid(vm) == pid
    assert f"already running (pid {pid})" in vm.log()

    t0 = time.monotonic()
    stopped = vm.run("bin/keepalived_ctl", "stop", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert time.monotonic() - t0 >= 0.9, "stop returned before keepalived had exited"
    assert not _alive(pid)
    assert "fake keepalived: SIGTERM" in vm.calls()
    assert not any(line.startswith("ip ") for line in vm.calls()), "no VIP cleanup after a clean stop"
    assert not vm.pid_file.exists()
    assert vm.run("bin/keepalived_ctl", "stop").returncode == 0  # stopped: nothing to do


def test_ctl_starts_a_new_drain_server_with_keepalived_and_stops_it_by_its_pid(vm: FakeVM) -> None:
    env = {"FAKE_SERVE": "1"}
    assert vm.run("bin/keepalived_ctl", "start", env=env).returncode == 0
    pid_file = vm.run_dir / "drain-server.pid"
    deadline = time.monotonic() + 10
    while not pid_file.exists():
        assert time.monotonic() < deadline, "the drain server was not started"
        time.sleep(0.05)
    server = int(pid_file.read_text())
    assert "call drain-server" in vm.calls()
    # Started again: a new server replaces the old one (which may run code from before), never two.
    assert vm.run("bin/keepalived_ctl", "start", env=env).returncode == 0
    assert not _alive(server)
    assert f"drain server stopped (pid {server})" in vm.log()
    while not pid_file.exists():
        assert time.monotonic() < deadline + 10, "the drain server was not started again"
        time.sleep(0.05)
    second = int(pid_file.read_text())
    assert second != server and vm.calls().count("call drain-server") == 2
    assert vm.run("bin/keepalived_ctl", "stop", env=env).returncode == 0
    assert not _alive(second)
    assert vm.calls().count("fake drain-server: SIGTERM") == 2
    assert not pid_file.exists()


def test_ctl_stop_leaves_a_process_alone_whose_pid_the_server_file_names(vm: FakeVM) -> None:
    """A stale pid file naming another process (pid reuse) stops nothing."""
    vm.run_dir.mkdir(parents=True)
    (vm.run_dir / "drain-server.pid").write_text(f"{os.getpid()}\n")  # alive, but pytest
    assert vm.run("bin/keepalived_ctl", "stop").returncode == 0
    assert _alive(os.getpid())
    assert "drain server stopped" not in vm.log()


def test_ctl_stop_escalates_only_after_the_deadline_then_removes_vips(vm: FakeVM) -> None:
    conf = vm.root / "data" / "keepalived" / "keepalived.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        "vrrp_instance vip_1 {\n  virtual_ipaddress {\n    192.0.2.100/32 dev eth0\n  }\n}\n"
        "vrrp_instance vip_2 {\n  virtual_ipaddress {\n    # a comment\n    2001:db8::100/128\n  }\n}\n"
    )
    env = {"FAKE_IGNORE_TERM": "1", "KEEPALIVED_STOP_TIMEOUT": "2", "FAKE_IP_HELD": "192.0.2.100/32 2001:db8::100/128"}
    assert vm.run("bin/keepalived_ctl", "start", env=env).returncode == 0
    pid = _keepalived_pid(vm)
    t0 = time.monotonic()
    stopped = vm.run("bin/keepalived_ctl", "stop", env=env)
    elapsed = time.monotonic() - t0
    assert stopped.returncode == 0, stopped.stderr
    assert elapsed >= 2.0, "SIGKILL came before the deadline"
    assert not _alive(pid)
    log = vm.log()
    assert "still running 2 s after SIGTERM: SIGKILL" in log
    calls = vm.calls()
    assert "ip addr del 192.0.2.100/32 dev eth0" in calls
    assert "ip addr del 2001:db8::100/128 dev eth0" in calls
    assert "removed leftover VIP 192.0.2.100/32 from eth0" in log
    assert not vm.pid_file.exists()


def test_ctl_start_clears_stale_pid_files(vm: FakeVM) -> None:
    """A pid file naming a live process that is not our keepalived (pid reuse) is removed."""
    vm.run_dir.mkdir(parents=True)
    for name in ("keepalived.pid", "vrrp.pid", "checkers.pid"):
        (vm.run_dir / name).write_text(f"{os.getpid()}\n")  # alive, but pytest, not keepalived
    assert vm.run("bin/keepalived_ctl", "start").returncode == 0
    pid = _keepalived_pid(vm)
    assert pid != os.getpid() and _alive(pid)
    assert not (vm.run_dir / "vrrp.pid").exists()
    assert vm.run("bin/keepalived_ctl", "stop").returncode == 0
    assert not _alive(pid)


def test_ctl_start_fails_when_keepalived_writes_no_pid_file(vm: FakeVM) -> None:
    env = {"FAKE_NO_PIDFILE": "1", "KEEPALIVED_START_TIMEOUT": "1"}
    done = vm.run("bin/keepalived_ctl", "start", env=env)
    assert done.returncode == 1
    assert "wrote no pid file within 1 s" in vm.log()
    # The process it launched is still ours (found by command line): stop finds and stops it.
    assert vm.run("bin/keepalived_ctl", "stop").returncode == 0
    assert "without a main pid file" in vm.log()


def test_ctl_start_fails_cleanly_without_vipdrain(vm: FakeVM) -> None:
    done = vm.run("bin/keepalived_ctl", "start", fakes_on_path=False)
    assert done.returncode == 127
    assert not vm.pid_file.exists()


def test_ctl_usage(vm: FakeVM) -> None:
    assert vm.run("bin/keepalived_ctl").returncode == 2


# --- static checks ----------------------------------------------------------------------------


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck not installed (apt-get install shellcheck)")
def test_rendered_scripts_pass_shellcheck(vm: FakeVM) -> None:
    scripts = sorted(str(p) for p in (vm.job_dir / "bin").iterdir())
    done = subprocess.run(["shellcheck", "-s", "bash", *scripts], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout
