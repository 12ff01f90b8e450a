"""One lab VM: a network namespace, a BOSH root laid out like a VM's, and the processes monit would
run there (haproxy, keepalived, the app server behind haproxy), with the BOSH lifecycle hooks."""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vipdrain import rtnl
from vipdrain.fsutil import atomic_write
from vipdrain.lab import netns
from vipdrain.lab.haproxy import HTTP_PORT, HaproxyPaths
from vipdrain.lab.haproxy import command_line as haproxy_argv
from vipdrain.lab.plan import (
    LAB_PRESERVE_GRACE,
    VIP_OFFSET,
    VIP_OFFSET6,
    VM_OFFSET,
    VM_OFFSET6,
    address,
    deep_merge,
)
from vipdrain.lab.proc import Proc, spawn, stop_all
from vipdrain.lab.wait import until
from vipdrain.layout import CMD_ENV, ROOT_ENV, Layout

if TYPE_CHECKING:
    from vipdrain.lab.cluster import Lab

#: monit's default stop timeout; bpm (haproxy-boshrelease) waits 20 s before SIGKILL.
KEEPALIVED_STOP_TIMEOUT = 30.0
HAPROXY_STOP_TIMEOUT = 20.0


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
        self.ip = address(False, VM_OFFSET + index)
        self.ip6 = address(True, VM_OFFSET6 + index) if lab.ipv6 else None
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
        """Write `jobs/keepalived/bin/vipdrain`, the command keepalived's scripts run, and
        `bin/healthcheck`, keepalived's default health check, as the BOSH job ships it.

        A wrapper, not the venv's python: keepalived (enable_script_security) resolves symlinks
        in a script's path, and a venv's `bin/python` resolved to the base interpreter no
        longer sees the venv's packages. `probe` goes straight to the import-light module.
        """
        from vipdrain.boshjob.generate import find_repo
        from vipdrain.boshjob.scripts import render_script

        self.layout.healthcheck_script.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.layout.healthcheck_script, render_script(find_repo() / "lifecycle", "healthcheck"),
                     mode=0o755)
        python = shlex.quote(sys.executable)
        self.wrapper.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.wrapper, "\n".join([
            "#!/bin/sh",
            f"# vipdrain on lab VM {self.name} (a BOSH VM has the job's own wrapper here).",
            f'if [ "$1" = probe ]; then shift; exec {python} -m vipdrain.probe "$@"; fi',
            # As the package's bin/vipdrain: the entry point without runpy (7 ms of every call).
            f"exec {python} -c 'import sys; from vipdrain.warm.client import main; sys.exit(main())' \"$@\"",
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
        vips = [address(lab.ipv6, (VIP_OFFSET6 if lab.ipv6 else VIP_OFFSET) + k) for k in range(lab.vip_count)]
        return {
            "keepalived": {"vips": vips, "advert_int": lab.advert_int, "vrrp_version": 3},
            "vipdrain": {
                "haproxy": {"pid_file": str(self.haproxy_paths.pid_file), "probe": f"127.0.0.1:{HTTP_PORT}"},
                "drain": {"preserve_grace": LAB_PRESERVE_GRACE},
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
        # JSON, as the job's template renders it; 0640, as the BOSH agent leaves a job's rendered
        # files (bosh-agent FixPermissions).
        atomic_write(self.layout.config_file, json.dumps(self.bosh_document(props), indent=2) + "\n", mode=0o640)
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
            self.start_drain_server()
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
        proc = self._spawn("keepalived", argv, self.layout.keepalived_log)
        self.start_drain_server()
        return proc

    def start_drain_server(self) -> Proc | None:
        """The warm drain's server, as the job's keepalived_ctl starts it next to keepalived
        (vipdrain.warm); None on a VM of the old job, which has no drain."""
        if not self.has_drain:
            return None
        running = self._proc("drain-server")
        if running:
            return running
        return self._spawn("drain-server", [str(self.wrapper), "drain-server"], self.layout.drain_server_log)

    def stop_keepalived(self, timeout: float = KEEPALIVED_STOP_TIMEOUT) -> bool:
        """SIGTERM keepalived and wait for it by pid; SIGKILL only after `timeout` s (last resort).
        The drain server stops with it, as keepalived_ctl stop stops both."""
        server = self._proc("drain-server")
        if server:
            server.stop(timeout=timeout)
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
        """Clients' TCP connections established to a VIP's `port` on this VM (haproxy's client
        side). Only those to a VIP: the health check's connections to the probe address come and
        go every interval and would make a stream look open before it is."""
        out = self.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"]).stdout
        ends = {f"[{vip}]:{port}" if ":" in vip else f"{vip}:{port}" for vip in self.lab.vips}
        # Columns without a State one (filtered by state): Recv-Q Send-Q Local:Port Peer:Port.
        return sum(1 for line in out.splitlines() if len(words := line.split()) >= 4 and words[2] in ends)

    def forwarding(self) -> dict[str, str]:
        """VIP -> name of the VM this VM sends the VIP's old connections back to right now
        (vipdrain.preserve's arms, by that VM's MAC at layer 2 or its tunnel MAC; a MAC that is
        no lab VM's stays as it is); {} when nothing is armed or preservation is off here."""
        from vipdrain import preserve

        listing = self.run(preserve.list_table_argv(), check=False)
        armed = preserve.parse_armed(listing.stdout) if listing.returncode == 0 else {}
        names = {mac: vm.name for vm in self.lab.vms
                 for mac in (vm.mac, preserve.tunnel_mac(ipaddress.ip_address(vm.ip)))}
        return {vip: names.get(mac, mac) for vip, mac in armed.items()}

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
