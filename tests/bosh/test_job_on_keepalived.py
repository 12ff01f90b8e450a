"""The generated job's scripts with the real vipdrain and the real keepalived, on one VM: a private
network namespace (`unshare -n`) with an `eth0`, a stand-in haproxy (a local HTTP server), and
the BOSH order pre-start -> monit start (keepalived_ctl) -> post-start -> post-deploy -> drain ->
monit stop (keepalived_ctl). Handoffs between VMs are the lab's business (tests/lab, features/);
this checks that the job's wiring works with the real programs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bosh_harness import install_job, render, rotated_by_agent

from labpolicy import unavailable

pytestmark = pytest.mark.lab

SCRIPT = r"""
set -u
root="$1"; haproxy_pid_file="$2"; python="$3"
J="$root/jobs/keepalived/bin"
export VIPDRAIN_ROOT="$root"
export PATH="$(dirname "$python"):$PATH"
ip link add eth0 type veth peer name eth0p
ip addr add 192.0.2.10/24 dev eth0
ip link set eth0 up; ip link set eth0p up; ip link set lo up
"$python" -m http.server --bind 127.0.0.1 8080 >/dev/null 2>&1 &
echo $! >"$haproxy_pid_file"
cleanup() {
  "$J/keepalived_ctl" stop >/dev/null 2>&1
  kill "$(cat "$haproxy_pid_file")" 2>/dev/null
}
trap cleanup EXIT
has_vip() { if ip -o addr show dev eth0 | grep -q ' 192.0.2.100/'; then echo yes; else echo no; fi; }
step() { local name="$1"; shift; "$@" >"$root/$name.out" 2>"$root/$name.err"; echo "STEP $name $?"; }
step pre-start "$J/pre-start"
step start "$J/keepalived_ctl" start
echo "PID $(cat "$root/sys/run/keepalived/keepalived.pid")"
step post-start timeout 60 "$J/post-start"
for _ in $(seq 50); do [[ $(has_vip) == yes ]] && break; sleep 0.1; done
step post-deploy timeout 60 "$J/post-deploy"
echo "VIP-AFTER-DEPLOY $(has_vip)"
step drain "$J/drain" job_changed hash_changed vipdrain
step stop "$J/keepalived_ctl" stop
echo "VIP-AFTER-STOP $(has_vip)"
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (nobody may have reaped the exited keepalived yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _lab_or_skip() -> None:
    problem = None
    if os.geteuid() != 0:
        problem = "needs root (network namespace, keepalived)"
    elif not (shutil.which("unshare") and shutil.which("keepalived") and shutil.which("ip")):
        problem = "needs unshare, ip and keepalived (apt-get install keepalived iproute2)"
    else:
        probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
        if probe.returncode != 0:
            problem = f"cannot create a network namespace: {probe.stderr.decode().strip()}"
    if problem:
        unavailable(problem)


def test_generated_job_runs_the_bosh_lifecycle_with_real_keepalived(tmp_path: Path) -> None:
    _lab_or_skip()
    root = tmp_path / "root"
    haproxy_pid = tmp_path / "haproxy.pid"
    rendered = render(
        {
            "keepalived": {"vip": "192.0.2.100", "interface": "eth0", "advert_int": 0.2},
            "vipdrain": {
                "drain": {"timeout": 2},
                "haproxy": {"pid_file": str(haproxy_pid), "probe": "127.0.0.1:8080"},
            },
        }
    )
    install_job(root / "jobs" / "keepalived", rendered)
    done = subprocess.run(
        ["unshare", "-n", "bash", "-c", SCRIPT, "lab", str(root), str(haproxy_pid), sys.executable],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = done.stdout.splitlines()
    steps = {line.split()[1]: int(line.split()[2]) for line in lines if line.startswith("STEP ")}

    def detail(name: str) -> str:
        files = [root / f"{name}.{ext}" for ext in ("out", "err")]
        return "\n".join(f.read_text() for f in files if f.exists())

    log = root / "sys/log/keepalived"
    context = f"{done.stdout}\n{done.stderr}\n" + "".join(
        f"--- {p.name}\n{p.read_text()[-3000:]}\n" for p in sorted(log.glob("*.log")) if p.is_file()
    )
    for name in ("pre-start", "start", "post-start", "post-deploy", "drain", "stop"):
        assert steps.get(name) == 0, f"{name} failed:\n{detail(name)}\n{context}"
    assert (root / "data/keepalived/keepalived.conf").stat().st_mode & 0o777 == 0o600
    assert (root / "jobs/keepalived/config/vipdrain.yml").stat().st_mode & 0o777 == 0o640
    # Everything the job wrote under sys/log/keepalived (transitions too) is rotated by the agent.
    written = sorted(p.relative_to(root / "sys/log").as_posix() for p in log.rglob("*") if p.is_file())
    assert "keepalived/transitions.log" in written, written
    assert [w for w in written if not rotated_by_agent(w)] == []
    assert "VIP-AFTER-DEPLOY yes" in lines, context
    # Single instance: no peer to hand over to; the default policy proceeds and says so.
    assert (root / "drain.out").read_text() == "0\n"
    assert "VIP-AFTER-STOP no" in lines, context  # SIGTERM made keepalived remove its VIP
    pid = int(next(line.split()[1] for line in lines if line.startswith("PID ")))
    assert not _running(pid), "keepalived still runs after keepalived_ctl stop"
    lifecycle = (log / "lifecycle.log").read_text()
    for step in ("pre-start[", "keepalived_ctl[", "post-start[", "post-deploy[", "drain["):
        assert step in lifecycle
