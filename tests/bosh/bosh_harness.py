"""Test harness for the BOSH release: render job templates with real Ruby ERB (render_erb.rb),
and lay out a fake VM root in which the rendered scripts run against fake programs.

No director, no agent: the renderer implements the part of BOSH's template API the job uses, and
the fakes (`vipdrain`, `keepalived`, `ip`) record how they were called.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
JOB_DIR = REPO / "jobs" / "keepalived"
RENDERER = Path(__file__).with_name("render_erb.rb")

#: A bootstrap instance, as BOSH describes it in `spec` (documentation addresses only).
BOOTSTRAP_SPEC: dict[str, Any] = {
    "name": "haproxy",
    "index": 0,
    "id": "7d1a1a0e-3f0c-4d2b-9f6c-0a1b2c3d4e5f",
    "bootstrap": True,
    "ip": "192.0.2.10",
    "az": "z1",
    "deployment": "haproxy",
}


def link_instances(*addresses: str, me: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `keepalived` link of a group whose instance i has address `addresses[i]`; the entry
    with `me`'s IP (default: the bootstrap spec) carries `me`'s id and index, as BOSH's does."""
    me = BOOTSTRAP_SPEC if me is None else me
    instances = []
    for i, address in enumerate(addresses):
        own = address == me.get("ip")
        instances.append(
            {
                "address": address,
                "index": me["index"] if own else i,
                "bootstrap": bool(me["bootstrap"]) if own else i == 0,
                "id": me["id"] if own else f"00000000-0000-4000-8000-00000000000{i}",
                "az": "z1",
                "name": "haproxy",
            }
        )
    return {"keepalived": {"instances": instances, "properties": {}}}


class RenderError(Exception):
    """Rendering failed as the director would report it (`kind` is the Ruby error class)."""

    def __init__(self, info: Mapping[str, Any]):
        self.info = dict(info)
        self.kind: str = info["class"]
        super().__init__(info["message"])


def ruby_or_skip() -> str:
    """Path of `ruby`; without it the test skips - or fails under CI, where it must exist."""
    ruby = shutil.which("ruby")
    if ruby:
        return ruby
    if os.environ.get("CI"):
        pytest.fail("ruby is required for the BOSH template tests (apt-get install ruby)")
    pytest.skip("ruby not installed: the BOSH template tests render real ERB")


def render(
    properties: Mapping[str, Any] | None = None,
    spec: Mapping[str, Any] | None = None,
    links: Mapping[str, Any] | None = None,
    templates: Sequence[str] | None = None,
    job_dir: Path = JOB_DIR,
) -> dict[str, str]:
    """Render the job's templates; returns destination (e.g. `bin/drain`) -> text."""
    request: dict[str, Any] = {
        "job_dir": str(job_dir),
        "properties": dict(properties or {}),
        "spec": dict(BOOTSTRAP_SPEC if spec is None else spec),
        "links": dict(links or {}),
    }
    if templates is not None:
        request["templates"] = list(templates)
    done = subprocess.run(
        [ruby_or_skip(), str(RENDERER)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        answer = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"renderer crashed (exit {done.returncode}): {done.stderr}{done.stdout}") from None
    if "error" in answer:
        raise RenderError(answer["error"])
    return answer["rendered"]


# --- a fake VM ----------------------------------------------------------------------------------

FAKE_VIPDRAIN = r"""#!/bin/bash
# Fake vipdrain: records each call, then behaves as FAKE_* says.
{
  printf 'call'; printf ' %q' "$@"; printf '\n'
  printf 'env VIPDRAIN_ROOT=%s VIPDRAIN_CMD=%s BOSH_JOB_NEXT_STATE=%s\n' \
    "${VIPDRAIN_ROOT:-}" "${VIPDRAIN_CMD:-}" "${BOSH_JOB_NEXT_STATE:-}"
} >>"$FAKE_RECORD"
if [[ ${1:-} == keepalived-argv ]]; then
  cat "$FAKE_ARGV_FILE"
  exit 0
fi
# As the real drain server: writes its pid file, runs until SIGTERM (with FAKE_SERVE=1).
if [[ ${1:-} == drain-server && ${FAKE_SERVE:-0} == 1 ]]; then
  echo $$ >"$VIPDRAIN_ROOT/sys/run/keepalived/drain-server.pid"
  trap 'echo "fake drain-server: SIGTERM" >>"$FAKE_RECORD"; exit 0' TERM
  while :; do sleep 0.1; done
fi
if [[ -n ${FAKE_STDERR:-} ]]; then printf '%b\n' "$FAKE_STDERR" >&2; fi
if [[ -n ${FAKE_STDOUT+set} ]]; then printf '%b' "$FAKE_STDOUT"; fi
exit "${FAKE_EXIT:-0}"
"""

# `#!/bin/bash`, not env: the process's comm must stay `keepalived` (env would exec bash).
FAKE_KEEPALIVED = r"""#!/bin/bash
# Fake keepalived: writes its pid file (-p), exits on SIGTERM after FAKE_TERM_DELAY seconds,
# or ignores SIGTERM when FAKE_IGNORE_TERM=1.
pidfile=""
while (($#)); do
  case $1 in -p) pidfile=$2; shift ;; esac
  shift
done
if [[ ${FAKE_IGNORE_TERM:-0} == 1 ]]; then
  trap '' TERM
else
  trap 'sleep "${FAKE_TERM_DELAY:-0}"; rm -f "$pidfile"; echo "fake keepalived: SIGTERM" >>"$FAKE_RECORD"; exit 0' TERM
fi
if [[ ${FAKE_NO_PIDFILE:-0} != 1 ]]; then echo $$ >"$pidfile"; fi
echo "fake keepalived: started $$" >>"$FAKE_RECORD"
while :; do sleep 0.05 & wait $!; done
"""

FAKE_IP = r"""#!/bin/bash
# Fake ip: records calls; `ip -o addr show to ADDR` lists ADDR on eth0 if it is in FAKE_IP_HELD.
{ printf 'ip'; printf ' %q' "$@"; printf '\n'; } >>"$FAKE_RECORD"
if [[ "$1 $2 $3 $4" == "-o addr show to" ]]; then
  for held in ${FAKE_IP_HELD:-}; do
    if [[ ${held%%/*} == "$5" ]]; then
      printf '2: eth0    inet %s scope global eth0\\       valid_lft forever preferred_lft forever\n' "$held"
    fi
  done
fi
"""


@dataclass
class FakeVM:
    """A BOSH-like root (`jobs/keepalived/{bin,config}`, `sys/{run,log}`) with fake programs."""

    root: Path
    fakes: Path
    record: Path
    rendered: Mapping[str, str]

    @property
    def job_dir(self) -> Path:
        return self.root / "jobs" / "keepalived"

    @property
    def log_dir(self) -> Path:
        return self.root / "sys" / "log" / "keepalived"

    @property
    def run_dir(self) -> Path:
        return self.root / "sys" / "run" / "keepalived"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "keepalived.pid"

    def env(self, extra: Mapping[str, str] | None = None, fakes_on_path: bool = True) -> dict[str, str]:
        path = f"{self.fakes}:/usr/sbin:/usr/bin:/sbin:/bin" if fakes_on_path else "/usr/sbin:/usr/bin:/sbin:/bin"
        env = {
            "PATH": path,
            "VIPDRAIN_ROOT": str(self.root),
            "FAKE_RECORD": str(self.record),
            "FAKE_ARGV_FILE": str(self.fakes / "argv"),
            "LANG": "C.UTF-8",
        }
        env.update(extra or {})
        return env

    def run(
        self,
        script: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        fakes_on_path: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.job_dir / script), *args],
            env=self.env(env, fakes_on_path),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def calls(self) -> list[str]:
        return self.record.read_text().splitlines() if self.record.exists() else []

    def log(self) -> str:
        path = self.log_dir / "lifecycle.log"
        return path.read_text() if path.exists() else ""


#: The logrotate rule the agent installs (cloudfoundry/bosh-agent at commit
#: e94765aa146b8904371acfdc7034d41d17deb374, platform/linux_platform.go `etcLogrotateDTemplate`),
#: relative to /var/vcap/data/sys/log (= /var/vcap/sys/log): only these names are rotated, with
#: copytruncate. Any other file there grows until the disk is full.
AGENT_LOGROTATE_GLOBS = ("*.log", ".*.log", "*/*.log", "*/.*.log", "*/*/*.log", "*/*/.*.log")


def rotated_by_agent(relative: str) -> bool:
    """Whether the agent's logrotate rule covers sys/log/`relative` (fnmatch: `*` stops at `/`)."""
    depth = relative.count("/")
    return any(
        glob.count("/") == depth and fnmatch.fnmatchcase(relative, glob) for glob in AGENT_LOGROTATE_GLOBS
    )


def install_job(job_dir: Path, rendered: Mapping[str, str]) -> None:
    """Write the rendered job files with the modes the agent gives them (bosh-agent at commit
    e94765aa146b8904371acfdc7034d41d17deb374, agent/applier/jobs/owner_fix.go `FixPermissions`):
    directories and bin/* 0750, every other file 0640 (root:vcap on a VM)."""
    for destination, text in rendered.items():
        path = job_dir / destination
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o750 if destination.startswith("bin/") else 0o640)
    for directory in [job_dir, *(p for p in job_dir.rglob("*") if p.is_dir())]:
        directory.chmod(0o750)


def make_fake_vm(tmp: Path, rendered: Mapping[str, str]) -> FakeVM:
    """Install the rendered job files under `tmp/root` and the fakes under `tmp/fakes`."""
    root = tmp / "root"
    fakes = tmp / "fakes"
    fakes.mkdir(parents=True)
    vm = FakeVM(root=root, fakes=fakes, record=tmp / "calls.log", rendered=rendered)
    install_job(vm.job_dir, rendered)
    for name, text in (("vipdrain", FAKE_VIPDRAIN), ("keepalived", FAKE_KEEPALIVED), ("ip", FAKE_IP)):
        (fakes / name).write_text(text)
        (fakes / name).chmod(0o755)
    (fakes / "argv").write_text(
        "\n".join(
            [
                str(fakes / "keepalived"),
                "-n",
                "-P",
                "-p",
                str(vm.pid_file),
                "-r",
                str(vm.run_dir / "vrrp.pid"),
                "-c",
                str(vm.run_dir / "checkers.pid"),
            ]
        )
        + "\n"
    )
    return vm
