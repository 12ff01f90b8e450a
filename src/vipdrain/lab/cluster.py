"""The lab cluster: VMs in network namespaces on one bridge, each running haproxy and keepalived
started the way BOSH starts a job (pre-start, monit start, post-start).

    with Lab.up(nodes=3, advert_int=0.2) as lab:
        lab.wait_converged()
        with lab.client(rate=200) as run:
            ...
        print(run.summary())

Topology (`<p>` is the run's prefix): namespace `<p>-sw` holds bridge `br0`; VM `vmN` lives in
`<p>-vmN` with `eth0` (a veth whose peer `vmN` is a port of `br0`) at 192.0.2.(10+N)/24;
client `cJ` lives in `<p>-cJ` at 192.0.2.(200+J)/24; VIPs are 192.0.2.100.. (IPv6:
2001:db8::10+N, ::200+J, ::100..). Files live under `<lab dir>/<p>/` (`$VIPDRAIN_LAB_DIR`,
default /tmp/vipdrain-lab): `state.json` (what `Lab.attach` and the CLI read) and one BOSH root
per VM (`vm0/` laid out by `vipdrain.layout.Layout`, plus haproxy's own files).
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import yaml

from vipdrain import rtnl
from vipdrain.errors import RuntimeFailure
from vipdrain.fsutil import atomic_write
from vipdrain.lab import netns
from vipdrain.lab.haproxy import HTTP_PORT, HaproxyPaths, render_config
from vipdrain.lab.haproxy import command_line as haproxy_argv
from vipdrain.lab.proc import Proc, spawn, stop_all, sweep_namespace
from vipdrain.lab.wait import LabTimeout, until
from vipdrain.layout import CMD_ENV, ROOT_ENV, Layout
from vipdrain.timing import lab_converge_deadline, master_down_bound

if TYPE_CHECKING:
    from vipdrain.lab.client import ClientRun
    from vipdrain.lab.faults import Faults
    from vipdrain.lab.observer import VipObserver

LAB_DIR_ENV = "VIPDRAIN_LAB_DIR"
DEFAULT_LAB_DIR = Path("/tmp/vipdrain-lab")
STATE_FILE = "state.json"
#: Short enough that `<prefix>-vm49` fits the kernel's 15-character limit on names that become
#: interface names elsewhere, and safe in nftables table names once `-` becomes `_`.
PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,9}$")
MAX_NODES = 50
MAX_VIPS = 50
MAX_CLIENTS = 20

NET4 = ipaddress.IPv4Network("192.0.2.0/24")
NET6 = ipaddress.IPv6Network("2001:db8::/64")
VM_OFFSET, VIP_OFFSET, CLIENT_OFFSET, OBSERVER_OFFSET = 10, 100, 200, 250
#: IPv6 uses the same numbers written in hex digits (2001:db8::10, ::100, ::200, ::250).
VM_OFFSET6, VIP_OFFSET6, CLIENT_OFFSET6, OBSERVER_OFFSET6 = 0x10, 0x100, 0x200, 0x250

#: monit's default stop timeout; bpm (haproxy-boshrelease) waits 20 s before SIGKILL.
KEEPALIVED_STOP_TIMEOUT = 30.0
HAPROXY_STOP_TIMEOUT = 20.0


def lab_dir(base: str | os.PathLike[str] | None = None) -> Path:
    """Directory holding every lab run's files (`$VIPDRAIN_LAB_DIR`, default /tmp/vipdrain-lab)."""
    return Path(base or os.environ.get(LAB_DIR_ENV) or DEFAULT_LAB_DIR)


def list_prefixes(base: str | os.PathLike[str] | None = None) -> list[str]:
    """Prefixes of the lab runs that have a state file under the lab dir."""
    root = lab_dir(base)
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob(f"*/{STATE_FILE}"))


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` merged in: nested mappings merge, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def vip_addresses(properties: Mapping[str, Any]) -> list[str]:
    """The VIP addresses named by job properties (`keepalived.vips` entries or `keepalived.vip`)."""
    ka = properties.get("keepalived") or {}
    entries = ka.get("vips") or ([ka["vip"]] if ka.get("vip") else [])
    out = []
    for entry in entries:
        raw = entry.get("address") if isinstance(entry, Mapping) else entry
        out.append(str(ipaddress.ip_address(str(raw).split("/")[0])))
    return out


def _address(ipv6: bool, offset: int) -> str:
    net: ipaddress.IPv4Network | ipaddress.IPv6Network = NET6 if ipv6 else NET4
    return str(net.network_address + offset)


def http_get(host: str, port: int = HTTP_PORT, path: str = "/", timeout: float = 1.0) -> tuple[int, str]:
    """One HTTP/1.0 GET on a new connection from the calling thread's namespace: (status, body)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        hostname = f"[{host}]" if ":" in host else host
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {hostname}\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, body.decode(errors="replace")


class VM:
    """One lab VM: a namespace, a BOSH root, and the processes monit would run there."""

    def __init__(self, lab: Lab, index: int, raw: Mapping[str, Any] | None = None):
        self.lab = lab
        self.index = index
        self.name = f"vm{index}"
        self.namespace = f"{lab.prefix}-{self.name}"
        self.ip = _address(False, VM_OFFSET + index)
        self.ip6 = _address(True, VM_OFFSET6 + index) if lab.ipv6 else None
        self.root = lab.dir / self.name
        #: What the job's scripts call, like the BOSH job's `bin/vipdrain` wrapper (see write_wrapper).
        self.wrapper = self.root / "jobs" / "keepalived" / "bin" / "vipdrain"
        self.layout = Layout(root=self.root, vipdrain_cmd=str(self.wrapper))
        self.haproxy_paths = HaproxyPaths(self.root)
        self.id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"vipdrain-lab/{lab.prefix}/{self.name}"))
        #: BOSH spreads instances over AZs round-robin; the lab has three.
        self.az = f"z{index % 3 + 1}"
        raw = raw or {}
        self.mac: str = raw.get("mac", "")
        #: The properties this VM's current "release" was rendered with (see write_config).
        self.properties: dict[str, Any] = dict(raw.get("properties") or {})
        self.procs: dict[str, Proc] = {k: Proc.from_json(v) for k, v in (raw.get("procs") or {}).items()}
        #: The keepalived job this VM runs: vipdrain's, or haproxy-boshrelease's (`oldjob.OLD_JOB`).
        self.job: str = str(raw.get("job") or "vipdrain")

    def __repr__(self) -> str:
        return f"VM({self.name}, {self.ip}, ns={self.namespace})"

    @property
    def bootstrap(self) -> bool:
        return self.index == 0

    # --- running things in the VM ------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """Environment of commands in this VM: its BOSH root, and this venv's `vipdrain` on PATH."""
        env = dict(os.environ)
        env[ROOT_ENV] = str(self.root)
        env[CMD_ENV] = self.layout.vipdrain_cmd
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        return env

    def write_wrapper(self) -> None:
        """Write `jobs/keepalived/bin/vipdrain`, the command keepalived's scripts run.

        A wrapper, not the venv's python: keepalived (enable_script_security) resolves symlinks
        in a script's path, and a venv's `bin/python` resolved to the base interpreter no
        longer sees the venv's packages. `probe` goes straight to the import-light module.
        """
        python = shlex.quote(sys.executable)
        self.wrapper.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.wrapper, "\n".join([
            "#!/bin/sh",
            f"# vipdrain on lab VM {self.name} (a BOSH VM has the job's own wrapper here).",
            f'if [ "$1" = probe ]; then shift; exec {python} -m vipdrain.probe "$@"; fi',
            f'exec {python} -m vipdrain "$@"',
            "",
        ]), mode=0o755)

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 120.0, input: str | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside this VM's namespace with its environment (plus `env`); output captured."""
        self.lab.check_open()
        return netns.run(netns.exec_argv(self.namespace, argv), check=check, timeout=timeout,
                         input=input, env={**self.env, **(env or {})})

    def vipdrain(self, *args: str, env: Mapping[str, str] | None = None, check: bool = True,
                 timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run `vipdrain ARGS` in this VM through the job's wrapper, as the job's scripts would."""
        return self.run([str(self.wrapper), *args], check=check, timeout=timeout, env=env)

    def call(self, fn: Callable[..., Any], *args: object, timeout: float = 30.0) -> Any:
        """Call `fn(*args)` in a thread inside this VM's namespace (sockets, netlink)."""
        return netns.call_in(self.namespace, fn, *args, timeout=timeout)

    # --- the job's config (a "release") ------------------------------------------------------

    def base_properties(self) -> dict[str, Any]:
        """Job properties every lab VM starts from, before the lab's overrides."""
        lab = self.lab
        vips = [_address(lab.ipv6, (VIP_OFFSET6 if lab.ipv6 else VIP_OFFSET) + k) for k in range(lab.vip_count)]
        return {
            "keepalived": {"vips": vips, "advert_int": lab.advert_int, "vrrp_version": 3},
            "vipdrain": {
                "haproxy": {"pid_file": str(self.haproxy_paths.pid_file), "probe": f"127.0.0.1:{HTTP_PORT}"},
            },
        }

    def bosh_document(self, properties: Mapping[str, Any]) -> dict[str, Any]:
        """The file BOSH would render for this VM: properties, spec, and the keepalived link."""
        lab = self.lab
        return {
            "properties": dict(properties),
            "spec": {
                "name": "haproxy", "index": self.index, "id": self.id, "bootstrap": self.bootstrap,
                "ip": self.ip, "az": self.az, "deployment": lab.prefix,
            },
            "links": {
                "keepalived": {
                    "instances": [
                        {"address": vm.ip, "index": vm.index, "bootstrap": vm.bootstrap, "id": vm.id,
                         "az": vm.az, "name": "haproxy"}
                        for vm in lab.vms
                    ]
                }
            },
        }

    def write_config(self, props_override: Mapping[str, Any] | None = None) -> Path:
        """Write the job's config file (a "new release"): base properties, the lab's overrides, then
        `props_override` - or, with None, the properties this VM has now (a new package version
        with the same manifest). Nothing is restarted: pre-start picks it up, as on BOSH."""
        if props_override is None and self.properties:
            props = self.properties
        else:
            props = deep_merge(deep_merge(self.base_properties(), self.lab.overrides), props_override or {})
        self.properties = props
        self.job = "vipdrain"
        self.lab._instance_names = None
        # 0640, as the BOSH agent leaves a job's rendered files (bosh-agent FixPermissions).
        atomic_write(self.layout.config_file, yaml.safe_dump(self.bosh_document(props), sort_keys=False), mode=0o640)
        self.lab.save()
        return self.layout.config_file

    def install_old_job(self, virtual_router_id: int = 1) -> None:
        """Put haproxy-boshrelease's keepalived job on this VM (see `vipdrain.lab.oldjob`): its
        rendered config and the lab's stand-in for its health check. Nothing is started."""
        from vipdrain.lab import oldjob

        check = oldjob.check_script_path(self.layout)
        check.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(check, oldjob.check_script(self.haproxy_paths.pid_file), mode=0o755)
        conf = oldjob.config_path(self.layout)
        conf.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(conf, oldjob.render_config(
            instance_group="haproxy", bootstrap=self.bootstrap, vip=self.lab.vips[0], interface="eth0",
            check=check, virtual_router_id=virtual_router_id))
        self.job = oldjob.OLD_JOB
        self.lab.save()

    @property
    def has_drain(self) -> bool:
        """Does this VM's job have a drain script? haproxy-boshrelease's keepalived job has none."""
        from vipdrain.lab.oldjob import OLD_JOB

        return self.job != OLD_JOB

    # --- BOSH lifecycle ----------------------------------------------------------------------

    def pre_start(self) -> subprocess.CompletedProcess[str]:
        """BOSH pre-start of the keepalived job (validate, render, join held)."""
        return self.vipdrain("pre-start")

    def post_start(self) -> subprocess.CompletedProcess[str]:
        """BOSH post-start (wait until haproxy answers and keepalived runs, then release)."""
        return self.vipdrain("post-start")

    def monit_start(self) -> None:
        """`monit start`: start haproxy and keepalived if they are not running."""
        self.start_haproxy()
        self.start_keepalived()

    def monit_stop(self) -> None:
        """`monit stop`: stop keepalived, then haproxy, each with its stop deadline."""
        self.stop_keepalived()
        self.stop_haproxy()

    def start(self) -> None:
        """What BOSH does to start the job on a VM: pre-start, monit start, post-start."""
        self.pre_start()
        self.monit_start()
        self.post_start()

    def reboot(self, timeout: float = 10.0) -> None:
        """A VM reboot: `shutdown`, then `boot`. No lifecycle hook runs."""
        self.shutdown(timeout)
        self.boot()

    def shutdown(self, timeout: float = 10.0) -> None:
        """The first half of a reboot: processes get SIGTERM (SIGKILL after `timeout`), by pid;
        addresses other than the VM's own, the sysctls pre-start set and all of `sys/run` are gone.

        `sys/run` is a tmpfs the BOSH agent mounts empty at every boot (cloudfoundry/bosh-agent
        e94765a, platform/linux_platform.go `setupRunDir` -> `MountTmpfs`): nothing in it
        survives, not even the job's directory, which keepalived's start script creates again.
        """
        stop_all([p for role, p in self.procs.items() if role in ("keepalived", "haproxy", "backend")],
                 timeout=timeout)
        self._reset_addresses()
        # Kernel settings pre-start made are back at the kernel's defaults after a boot.
        from vipdrain.lifecycle import SYSCTLS

        for key in SYSCTLS:
            netns.set_sysctl(self.namespace, key, "0")
        run = self.root / "sys" / "run"
        for child in run.iterdir() if run.is_dir() else []:
            shutil.rmtree(child, ignore_errors=True)
        self.lab.save()

    def boot(self) -> None:
        """The second half of a reboot: the app server, then what monit starts (no pre-start,
        no post-start: nothing of the BOSH lifecycle runs after a reboot)."""
        self.start_backend()
        self.monit_start()

    def wipe_ephemeral(self) -> None:
        """`bosh recreate`: the VM comes back empty - no `data/`, no `sys/run`, no extra addresses.

        Logs (`sys/log`) are kept, unlike on a real new VM, so a failed scenario can be read.
        The job's processes must be stopped first (they are stopped hard here if not).
        """
        stop_all([p for role, p in self.procs.items() if role in ("keepalived", "haproxy")], timeout=10.0)
        self._reset_addresses()
        self._clear_run_dirs()
        shutil.rmtree(self.root / "data", ignore_errors=True)
        for d in self.layout.dirs():
            d.mkdir(parents=True, exist_ok=True)

    def _clear_run_dirs(self) -> None:
        run = self.root / "sys" / "run"
        for child in run.iterdir() if run.is_dir() else []:
            shutil.rmtree(child, ignore_errors=True)
        self.layout.run_dir.mkdir(parents=True, exist_ok=True)
        self.haproxy_paths.pid_file.parent.mkdir(parents=True, exist_ok=True)

    def _reset_addresses(self) -> None:
        """Remove every address a booting VM would not have (VIPs on eth0 or lo)."""
        own = {self.ip, self.ip6, "127.0.0.1", "::1"}
        for event in self.call(rtnl.dump):
            if event.address in own or event.address.startswith("fe80:"):
                continue
            dev = "lo" if event.on_loopback else "eth0"
            netns.ip("-n", self.namespace, "addr", "del", f"{event.address}/{event.prefixlen}", "dev", dev,
                     check=False)

    # --- processes ---------------------------------------------------------------------------

    def _proc(self, role: str) -> Proc | None:
        proc = self.procs.get(role)
        return proc if proc is not None and proc.alive() else None

    def _spawn(self, role: str, argv: Sequence[str], log: Path) -> Proc:
        # Under the lock: once `down` has begun, no thread of a bring-up can start a process it would miss.
        with self.lab.state_lock:
            self.lab.check_open()
            proc = spawn(role, argv, namespace=self.namespace, env=self.env, log=log)
            self.procs[role] = proc
            self.lab.save()
        return proc

    @property
    def keepalived_pid(self) -> int | None:
        """Pid of this VM's keepalived (the parent process), if running."""
        proc = self._proc("keepalived")
        return proc.pid if proc else None

    @property
    def haproxy_pid(self) -> int | None:
        proc = self._proc("haproxy")
        return proc.pid if proc else None

    def start_keepalived(self) -> Proc:
        """Start keepalived in the foreground, as monit would (no-op if it runs)."""
        from vipdrain.keepalived import command_line, is_ours, pid_files
        from vipdrain.procs import read_pid

        running = self._proc("keepalived")
        if running:
            return running

        def leftovers_gone() -> bool:
            pids = (read_pid(f) for f in pid_files(self.layout))
            return not any(pid is not None and is_ours(pid, self.layout) for pid in pids)

        # After a crash of the parent alone, its VRRP child resigns and exits within about a second;
        # until then keepalived would refuse to start ("daemon is already running").
        until(leftovers_gone, 10.0, interval=0.05, what=f"the previous keepalived of {self.name} to exit")
        # Both jobs' start scripts create the run dir first: after a reboot the tmpfs is empty.
        self.layout.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.has_drain:
            from vipdrain.lab import oldjob

            argv = oldjob.command_line(self.layout, self.name)
        else:
            argv = command_line(self.layout, self.name)
        return self._spawn("keepalived", argv, self.layout.keepalived_log)

    def stop_keepalived(self, timeout: float = KEEPALIVED_STOP_TIMEOUT) -> bool:
        """SIGTERM keepalived and wait for it by pid; SIGKILL only after `timeout` s (last resort)."""
        proc = self._proc("keepalived")
        gone = proc.stop(timeout=timeout) if proc else True
        self.lab.save()
        return gone

    def start_haproxy(self) -> Proc:
        """Start haproxy in the foreground and write its pid file, as bpm would (no-op if it runs)."""
        running = self._proc("haproxy")
        if running:
            return running
        paths = self.haproxy_paths
        paths.pid_file.parent.mkdir(parents=True, exist_ok=True)
        proc = self._spawn("haproxy", haproxy_argv(paths), paths.log)
        atomic_write(paths.pid_file, f"{proc.pid}\n")
        return proc

    def stop_haproxy(self, timeout: float = HAPROXY_STOP_TIMEOUT) -> bool:
        """Stop haproxy as bpm does: SIGTERM (hard stop), wait, SIGKILL after `timeout` s."""
        proc = self._proc("haproxy")
        gone = proc.stop(timeout=timeout) if proc else True
        self.haproxy_paths.pid_file.unlink(missing_ok=True)
        self.lab.save()
        return gone

    def soft_stop_haproxy(self) -> bool:
        """SIGUSR1: haproxy closes its listeners and exits once its connections are done.

        Returns False if haproxy was not running. Does not wait (see `wait_haproxy_gone`).
        """
        proc = self._proc("haproxy")
        return proc.send_signal(signal.SIGUSR1) if proc else False

    def wait_haproxy_gone(self, timeout: float = 60.0) -> bool:
        """Wait for haproxy to exit (after a soft stop); True if it did."""
        proc = self.procs.get("haproxy")
        return proc.wait(timeout) if proc else True

    def start_backend(self) -> Proc:
        """The app server behind haproxy (slow streams); not part of the BOSH job."""
        running = self._proc("backend")
        if running:
            return running
        argv = [sys.executable, "-m", "vipdrain.lab.backend", "--name", self.name]
        return self._spawn("backend", argv, self.haproxy_paths.app_log)

    # --- observing ---------------------------------------------------------------------------

    def addresses(self, *, include_loopback: bool = False) -> set[str]:
        """Addresses on this VM's interfaces (not `lo`, where a draining VM may park a VIP)."""
        events = self.call(rtnl.dump)
        return {e.address for e in events if include_loopback or not e.on_loopback}

    def holds(self, vip: str) -> bool:
        """Is `vip` on one of this VM's (non-loopback) interfaces?"""
        return str(ipaddress.ip_address(vip)) in self.addresses()

    def haproxy_answers(self) -> bool:
        """Does this VM's haproxy frontend answer with its own name (probed inside the VM)?"""
        try:
            status, body = self.call(http_get, self.ip, HTTP_PORT, "/", 1.0, timeout=5.0)
        except OSError:
            return False
        return status == 200 and body.strip() == self.name

    def established(self, port: int) -> int:
        """TCP connections established to local `port` on this VM (haproxy's client side)."""
        out = self.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"]).stdout
        return len(out.splitlines())

    def forwarding(self) -> dict[str, str]:
        """VIP -> MAC for every VIP whose old connections this VM sends back to another VM right
        now (vipdrain.preserve's arms); {} when nothing is armed or preservation is off here."""
        from vipdrain import preserve

        listing = self.run(preserve.list_table_argv(), check=False)
        return preserve.parse_armed(listing.stdout) if listing.returncode == 0 else {}

    def recorded_state(self, vip: str) -> str | None:
        """The VRRP state of `vip` the notify hook last recorded on this VM, if any."""
        from vipdrain.notify import read_state

        name = self.lab.instance_name(vip)
        recorded = read_state(self.layout, name) if name else None
        return recorded.state if recorded else None

    def keepalived_state(self, vip: str) -> str:
        """VRRP state of `vip` on this VM: the notify hook's state file if any, else MASTER/BACKUP
        from whether the VIP is on an interface (STOPPED if keepalived is not running)."""
        if self.keepalived_pid is None:
            return "STOPPED"
        return self.recorded_state(vip) or ("MASTER" if self.holds(vip) else "BACKUP")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "index": self.index, "namespace": self.namespace, "ip": self.ip,
            "ip6": self.ip6, "mac": self.mac, "root": str(self.root), "properties": self.properties,
            "job": self.job, "procs": {k: p.to_json() for k, p in self.procs.items()},
        }


class Lab:
    """One lab run. Create with `Lab.up(...)` (tears itself down if start-up fails) or reuse a
    running one with `Lab.attach(prefix)`; `down()` (or leaving the `with` block) removes it."""

    def __init__(self, prefix: str, *, nodes: int, advert_int: float = 1.0, vips: int = 1,
                 overrides: Mapping[str, Any] | None = None, ipv6: bool = False, clients: int = 1,
                 base_dir: str | os.PathLike[str] | None = None, raw: Mapping[str, Any] | None = None):
        if not PREFIX_RE.match(prefix):
            raise RuntimeFailure(f"lab prefix {prefix!r} must match {PREFIX_RE.pattern}")
        if not 1 <= nodes <= MAX_NODES:
            raise RuntimeFailure(f"nodes must be 1..{MAX_NODES}, not {nodes}")
        if not 1 <= vips <= MAX_VIPS:
            raise RuntimeFailure(f"vips must be 1..{MAX_VIPS}, not {vips}")
        if not 1 <= clients <= MAX_CLIENTS:
            raise RuntimeFailure(f"clients must be 1..{MAX_CLIENTS}, not {clients}")
        self.prefix = prefix
        self.base_dir = lab_dir(base_dir)
        self.dir = self.base_dir / prefix
        self.advert_int = advert_int
        self.vip_count = vips
        self.overrides: dict[str, Any] = dict(overrides or {})
        self.ipv6 = ipv6
        self.switch_namespace = f"{prefix}-sw"
        self.client_namespaces = [f"{prefix}-c{j}" for j in range(clients)]
        #: Where the ARP observer probes from: ARP replies to a client would rewrite that client's
        #: neighbour cache (the observer would steer the traffic it measures).
        self.observer_namespace = f"{prefix}-obs"
        self.created = float((raw or {}).get("created", time.time()))
        #: Guards the process tables and state.json (VMs start in parallel threads).
        self.state_lock = threading.RLock()
        self._instance_names: dict[str, str] | None = None
        self._children: list[Any] = []  # clients and observers to stop before teardown
        self._closing = False
        raw_vms = list((raw or {}).get("vms") or [])
        self.vms: list[VM] = [VM(self, i, raw_vms[i] if i < len(raw_vms) else None) for i in range(nodes)]
        #: Processes of the lab itself (not of a VM), e.g. a load client started from the CLI.
        self.procs: dict[str, Proc] = {k: Proc.from_json(v) for k, v in ((raw or {}).get("procs") or {}).items()}

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def up(cls, nodes: int = 3, prefix: str | None = None, advert_int: float = 1.0, vips: int = 1,
           overrides: Mapping[str, Any] | None = None, ipv6: bool = False, *, clients: int = 1,
           base_dir: str | os.PathLike[str] | None = None, wait: bool = True, timeout: float | None = None,
           old_job: bool = False) -> Lab:
        """Create and start a lab; on any failure (or Ctrl-C) it is torn down before the error propagates.

        `overrides` deep-merge into every VM's job properties. With `wait`, returns once the
        cluster has settled (see `wait_converged`; deadline `timeout`, default generous).
        With `old_job`, every VM runs haproxy-boshrelease's keepalived job instead (one VIP,
        VRID 1, keepalived's own timing whatever `advert_int` says; see `vipdrain.lab.oldjob`):
        the starting point of a migration. A deploy (`write_config`) puts vipdrain's job on a VM.
        """
        lab = cls(prefix or new_prefix(base_dir), nodes=nodes, advert_int=advert_int, vips=vips,
                  overrides=overrides, ipv6=ipv6, clients=clients, base_dir=base_dir)
        lab._claim()  # outside the try: a prefix in use belongs to another run, never torn down here
        try:
            lab._create(old_job)
            if wait:
                lab.wait_converged(timeout)
        except BaseException:
            lab.down()
            raise
        return lab

    @classmethod
    def attach(cls, prefix: str | None = None, base_dir: str | os.PathLike[str] | None = None) -> Lab:
        """The running lab `prefix` (from its state file); with one lab up, `prefix` may be omitted."""
        if prefix is None:
            found = list_prefixes(base_dir)
            if len(found) != 1:
                what = "no lab is up" if not found else f"several labs are up ({', '.join(found)})"
                raise RuntimeFailure(f"{what} under {lab_dir(base_dir)}: give --prefix")
            prefix = found[0]
        path = lab_dir(base_dir) / prefix / STATE_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise RuntimeFailure(f"no lab {prefix!r}: {path} does not exist") from None
        return cls(prefix, nodes=len(raw["vms"]), advert_int=float(raw["advert_int"]), vips=int(raw["vip_count"]),
                   overrides=raw.get("overrides"), ipv6=bool(raw.get("ipv6")),
                   clients=len(raw["client_namespaces"]), base_dir=base_dir, raw=raw)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down()

    # --- state -------------------------------------------------------------------------------

    @property
    def namespaces(self) -> list[str]:
        """Every namespace of this run."""
        return [self.switch_namespace, *(vm.namespace for vm in self.vms), *self.client_namespaces,
                self.observer_namespace]

    @property
    def vips(self) -> list[str]:
        """The VIP addresses (from the lab's properties, overrides included)."""
        return vip_addresses(deep_merge(self.vms[0].base_properties(), self.overrides))

    @property
    def bootstrap(self) -> VM:
        return self.vms[0]

    def vm(self, name: str | int) -> VM:
        """VM by name (`vm1`) or index."""
        for vm in self.vms:
            if name in (vm.name, vm.index):
                return vm
        raise RuntimeFailure(f"lab {self.prefix} has no VM {name!r}")

    def client_ip(self, j: int = 0, ipv6: bool = False) -> str:
        return _address(ipv6, (CLIENT_OFFSET6 if ipv6 else CLIENT_OFFSET) + j)

    def instance_name(self, vip: str) -> str | None:
        """keepalived's vrrp_instance name for `vip` (what the notify hook's state file is named by),
        from the config vipdrain loads; None when that config cannot be read."""
        if self._instance_names is None:
            from vipdrain.config import load_config
            from vipdrain.errors import ConfigInvalid

            try:
                # Any interface name will do: only the VIP -> instance name mapping is used.
                cfg = load_config(self.vms[0].layout.config_file, interface_of=lambda _ip: "eth0")
            except ConfigInvalid:
                return None
            self._instance_names = {str(v.address): v.name for v in cfg.vips}
        return self._instance_names.get(str(ipaddress.ip_address(vip)))

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1, "prefix": self.prefix, "dir": str(self.dir), "created": self.created,
            "advert_int": self.advert_int, "vip_count": self.vip_count, "overrides": self.overrides,
            "ipv6": self.ipv6, "switch_namespace": self.switch_namespace,
            "client_namespaces": self.client_namespaces, "vips": self.vips,
            "vms": [vm.to_json() for vm in self.vms],
            "procs": {k: p.to_json() for k, p in self.procs.items()},
        }

    def save(self) -> None:
        """Write state.json (atomically; the CLI's `lab down` stops exactly the pids listed there)."""
        with self.state_lock:
            if self.dir.is_dir():
                atomic_write(self.dir / STATE_FILE, json.dumps(self.to_json(), indent=1) + "\n")

    # --- bring-up ----------------------------------------------------------------------------

    def _claim(self) -> None:
        """Take the prefix: fail if any of its namespaces or its directory exists (mkdir is atomic,
        so two runs cannot both claim it), then write the first state file."""
        clash = [ns for ns in self.namespaces if netns.exists(ns)]
        in_use = RuntimeFailure(
            f"lab prefix {self.prefix} is in use ({', '.join(clash) or self.dir}); choose another "
            f"prefix or run `vipdrain lab down --prefix {self.prefix}`"
        )
        if clash:
            raise in_use
        self.base_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.dir.mkdir()
        except FileExistsError:
            raise in_use from None
        self.save()  # from here on, `lab down` can clean up whatever follows

    def _create(self, old_job: bool = False) -> None:
        self._create_network()
        for vm in self.vms:
            for d in vm.layout.dirs():
                d.mkdir(parents=True, exist_ok=True)
            vm.write_wrapper()
            vm.haproxy_paths.config.parent.mkdir(parents=True, exist_ok=True)
            vm.haproxy_paths.config.write_text(render_config(vm.name, vm.haproxy_paths, ipv6=self.ipv6))
            if old_job:
                vm.install_old_job()
            else:
                vm.write_config()
        # VMs start in parallel, each the BOSH way (pre-start, monit start, post-start; the old
        # job has only a monit start).
        pool = ThreadPoolExecutor(max_workers=len(self.vms), thread_name_prefix=f"{self.prefix}-up")
        try:
            list(pool.map(VM.start_backend, self.vms))
            list(pool.map(VM.monit_start if old_job else VM.start, self.vms))
        finally:
            # Never wait here for a hanging step: teardown stops its process, which frees the thread.
            pool.shutdown(wait=False, cancel_futures=True)

    def _create_network(self) -> None:
        sw = self.switch_namespace
        netns.add(sw)
        netns.ip("-n", sw, "link", "add", "br0", "type", "bridge")
        netns.ip("-n", sw, "link", "set", "br0", "up")
        hosts = [(vm.namespace, vm.name, vm.ip, vm.ip6) for vm in self.vms]
        hosts += [
            (ns, f"c{j}", self.client_ip(j), self.client_ip(j, True) if self.ipv6 else None)
            for j, ns in enumerate(self.client_namespaces)
        ]
        hosts.append((self.observer_namespace, "obs", _address(False, OBSERVER_OFFSET),
                      _address(True, OBSERVER_OFFSET6) if self.ipv6 else None))
        for ns, port, ip4, ip6 in hosts:
            netns.add(ns)
            if ip6:
                # The VIPs and peers must be usable at once: no duplicate address detection delay.
                netns.set_sysctl(ns, "net/ipv6/conf/default/accept_dad", "0")
            # Created inside the switch namespace and moved: nothing ever touches the host's links.
            netns.ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            netns.ip("-n", sw, "link", "set", port, "master", "br0", "up")
            netns.ip("-n", ns, "addr", "add", f"{ip4}/{NET4.prefixlen}", "dev", "eth0")
            if ip6:
                netns.ip("-n", ns, "addr", "add", f"{ip6}/{NET6.prefixlen}", "dev", "eth0", "nodad")
            netns.ip("-n", ns, "link", "set", "eth0", "up")
        for vm in self.vms:
            vm.mac = json.loads(netns.ip("-n", vm.namespace, "-j", "link", "show", "eth0").stdout)[0]["address"]
        for ns in self.client_namespaces:
            # A client opens hundreds of connections a second: give it ports and reuse TIME_WAIT ones.
            netns.set_sysctl(ns, "net/ipv4/ip_local_port_range", "10000 65000")
            netns.set_sysctl(ns, "net/ipv4/tcp_tw_reuse", "1")
        self.save()

    # --- waiting and status ------------------------------------------------------------------

    def holders(self, vip: str) -> list[str]:
        """Names of the VMs that have `vip` on an interface right now."""
        return self.holder_map()[str(ipaddress.ip_address(vip))]

    def holder_map(self) -> dict[str, list[str]]:
        """{vip: names of the VMs holding it}, from one address dump per VM."""
        addresses = {vm.name: vm.addresses() if netns.exists(vm.namespace) else set() for vm in self.vms}
        return {vip: [name for name, addrs in addresses.items() if vip in addrs] for vip in self.vips}

    @property
    def placement(self) -> str:
        """`vipdrain.placement` of the lab's properties (`preferred` unless overridden)."""
        props = deep_merge(self.vms[0].base_properties(), self.overrides)
        return str((props.get("vipdrain") or {}).get("placement") or "preferred")

    def wait_converged(self, timeout: float | None = None, *, states: bool = False) -> dict[str, str]:
        """Wait until the cluster has settled; returns {vip: holder}.

        Settled: every running haproxy answers; every VIP has exactly one holder - the bootstrap
        VM with `preferred` placement (it takes the VIP back after it joins), else any VM that
        has kept it for 4 advert intervals; with `states`, the states keepalived reported through
        the notify hook agree too (MASTER exactly where the VIP is; the hook runs asynchronously,
        so it lags the addresses). Default deadline: 10 advert intervals plus 15 s of slack.
        """
        deadline = timeout if timeout is not None else lab_converge_deadline(self.advert_int)
        settle = master_down_bound(self.advert_int)
        expected = self.bootstrap.name if self.placement == "preferred" else None
        seen: dict[str, tuple[str, float]] = {}
        why = ["nothing observed yet"]

        def converged() -> dict[str, str] | None:
            now = time.monotonic()
            held = {}
            for vip, holders in self.holder_map().items():
                if len(holders) != 1 or (expected and holders[0] != expected):
                    why[0] = f"{vip} held by {holders or 'nobody'}" + (f", expected {expected}" if expected else "")
                    return None
                if seen.get(vip, ("", 0.0))[0] != holders[0]:
                    seen[vip] = (holders[0], now)
                if not expected and now - seen[vip][1] < settle:
                    why[0] = f"{vip} held by {holders[0]} for less than {settle:g} s"
                    return None
                held[vip] = holders[0]
                for vm in self.vms if states else ():
                    state = vm.recorded_state(vip) if vm.keepalived_pid is not None else None
                    if state is not None and (state == "MASTER") != (vm.name == holders[0]):
                        why[0] = f"{vip} held by {holders[0]} but {vm.name}'s notify hook recorded {state}"
                        return None
            down = [vm.name for vm in self.vms if vm.haproxy_pid is not None and not vm.haproxy_answers()]
            if down:
                why[0] = f"haproxy does not answer on {', '.join(down)}"
                return None
            return held

        try:
            return until(converged, deadline, interval=0.1)
        except LabTimeout:
            raise LabTimeout(f"lab {self.prefix} did not settle within {deadline:g} s: {why[0]}") from None

    def wait_holder(self, vip: str, name: str, timeout: float = 30.0) -> None:
        """Wait until `name` is the only VM holding `vip`."""
        until(lambda: self.holders(vip) == [name], timeout, interval=0.05, what=f"{vip} held by {name} only")

    def status(self) -> dict[str, Any]:
        """The lab as `vipdrain lab status --json` prints it."""
        vms = []
        vip_holders = self.holder_map()
        for vm in self.vms:
            held = [vip for vip, names in vip_holders.items() if vm.name in names]
            states = {vip: vm.keepalived_state(vip) for vip in self.vips}
            vms.append({
                "name": vm.name, "namespace": vm.namespace, "ip": vm.ip, "ip6": vm.ip6, "mac": vm.mac,
                "root": str(vm.root),
                "keepalived_state": states[self.vips[0]],
                "keepalived_states": states,
                "keepalived_pid": vm.keepalived_pid, "haproxy_pid": vm.haproxy_pid,
                "haproxy_ok": vm.haproxy_answers(),
                "holds_vips": held,
            })
        return {
            "prefix": self.prefix, "dir": str(self.dir), "advert_int": self.advert_int,
            "switch_namespace": self.switch_namespace, "client_namespaces": self.client_namespaces,
            "vms": vms, "vips": vip_holders,
        }

    # --- tools bound to this lab -------------------------------------------------------------

    def client(self, rate: float = 200.0, *, vip: str | None = None, client: int = 0,
               **options: Any) -> ClientRun:
        """A load client in client namespace `client` against `vip` (default: the first VIP).

        Use as a context manager; see `vipdrain.lab.client.ClientRun` for the options.
        """
        from vipdrain.lab.client import ClientRun

        run = ClientRun(self, target=vip or self.vips[0], rate=rate, namespace=self.client_namespaces[client],
                        **options)
        self._children.append(run)
        return run

    def observe(self, **options: Any) -> VipObserver:
        """A VIP observer (who holds each VIP over time); use as a context manager."""
        from vipdrain.lab.observer import VipObserver

        obs = VipObserver(self, **options)
        self._children.append(obs)
        return obs

    @property
    def faults(self) -> Faults:
        """Fault injection bound to this lab."""
        from vipdrain.lab.faults import Faults

        return Faults(self)

    # --- teardown ----------------------------------------------------------------------------

    def check_open(self) -> None:
        """Raise if `down` has begun (a bring-up thread must not start anything after that)."""
        if self._closing:
            raise RuntimeFailure(f"lab {self.prefix} is being torn down")

    def all_procs(self) -> list[Proc]:
        return [*self.procs.values(), *(p for vm in self.vms for p in vm.procs.values())]

    def down(self, *, keep_files: bool = False) -> None:
        """Stop this run's processes by pid, delete its namespaces and its directory. Idempotent.

        Order: clients/observers of this object, then every recorded process at once (SIGTERM,
        SIGKILL only after a deadline), then anything left inside this run's namespaces, then the
        namespaces, then the files (unless `keep_files`).
        """
        with self.state_lock:
            self._closing = True
        for child in reversed(self._children):
            with contextlib.suppress(Exception):
                child.close()
        self._children.clear()
        stop_all(self.all_procs(), timeout=10.0)
        for ns in self.namespaces:
            sweep_namespace(ns)
        for ns in reversed(self.namespaces):
            netns.delete(ns)
        if not keep_files:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            self.save()


def new_prefix(base_dir: str | os.PathLike[str] | None = None) -> str:
    """A random prefix `vd-xxxx` that no namespace or lab directory uses yet."""
    for _ in range(100):
        prefix = f"vd-{secrets.token_hex(2)}"
        if not netns.exists(f"{prefix}-sw") and not (lab_dir(base_dir) / prefix).exists():
            return prefix
    raise RuntimeFailure("could not find a free lab prefix")

