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
import ipaddress
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from vipdrain.errors import RuntimeFailure
from vipdrain.fsutil import atomic_write
from vipdrain.lab import netns
from vipdrain.lab.haproxy import render_config
from vipdrain.lab.plan import (
    CLIENT_OFFSET,
    CLIENT_OFFSET6,
    NET4,
    NET6,
    OBSERVER_OFFSET,
    OBSERVER_OFFSET6,
    VIP_OFFSET,
    address,
    deep_merge,
    vip_addresses,
)
from vipdrain.lab.portsec import Port, enforce
from vipdrain.lab.proc import Proc, stop_all, sweep_namespace
from vipdrain.lab.vm import VM
from vipdrain.lab.vm import http_get as http_get  # re-exported: tests probe haproxy with it
from vipdrain.lab.wait import LabTimeout, until
from vipdrain.vrrp.timing import lab_converge_deadline, master_down_bound

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
#: The VIPs fill the addresses from VIP_OFFSET up to the clients' (192.0.2.100-199).
MAX_VIPS = CLIENT_OFFSET - VIP_OFFSET
MAX_CLIENTS = 20


def lab_dir(base: str | os.PathLike[str] | None = None) -> Path:
    """Directory holding every lab run's files (`$VIPDRAIN_LAB_DIR`, default /tmp/vipdrain-lab)."""
    return Path(base or os.environ.get(LAB_DIR_ENV) or DEFAULT_LAB_DIR)


def list_prefixes(base: str | os.PathLike[str] | None = None) -> list[str]:
    """Prefixes of the lab runs that have a state file under the lab dir."""
    root = lab_dir(base)
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob(f"*/{STATE_FILE}"))


class Lab:
    """One lab run. Create with `Lab.up(...)` (tears itself down if start-up fails) or reuse a
    running one with `Lab.attach(prefix)`; `down()` (or leaving the `with` block) removes it."""

    def __init__(self, prefix: str, *, nodes: int, advert_int: float = 1.0, vips: int = 1,
                 overrides: Mapping[str, Any] | None = None, ipv6: bool = False, clients: int = 1,
                 base_dir: str | os.PathLike[str] | None = None, raw: Mapping[str, Any] | None = None,
                 anti_spoofing: bool = False):
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
        #: The switch drops what a cloud's anti-spoofing drops (vipdrain.lab.portsec).
        self.anti_spoofing = anti_spoofing
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
           old_job: bool = False, anti_spoofing: bool = False) -> Lab:
        """Create and start a lab; on any failure (or Ctrl-C) it is torn down before the error propagates.

        `overrides` deep-merge into every VM's job properties. With `wait`, returns once the
        cluster has settled (see `wait_converged`; deadline `timeout`, default generous).
        With `old_job`, every VM runs haproxy-boshrelease's keepalived job instead (one VIP,
        VRID 1, keepalived's own timing whatever `advert_int` says; see `vipdrain.lab.oldjob`):
        the starting point of a migration. A deploy (`write_config`) puts vipdrain's job on a VM.
        With `anti_spoofing`, the switch enforces port security as a cloud does (`vipdrain.lab.portsec`).
        """
        lab = cls(prefix or new_prefix(base_dir), nodes=nodes, advert_int=advert_int, vips=vips,
                  overrides=overrides, ipv6=ipv6, clients=clients, base_dir=base_dir, anti_spoofing=anti_spoofing)
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
                   clients=len(raw["client_namespaces"]), base_dir=base_dir, raw=raw,
                   anti_spoofing=bool(raw.get("anti_spoofing")))

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
        return address(ipv6, (CLIENT_OFFSET6 if ipv6 else CLIENT_OFFSET) + j)

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
            "ipv6": self.ipv6, "anti_spoofing": self.anti_spoofing, "switch_namespace": self.switch_namespace,
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
        hosts.append((self.observer_namespace, "obs", address(False, OBSERVER_OFFSET),
                      address(True, OBSERVER_OFFSET6) if self.ipv6 else None))
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
        macs = {ns: json.loads(netns.ip("-n", ns, "-j", "link", "show", "eth0").stdout)[0]["address"]
                for ns, *_ in hosts}
        for vm in self.vms:
            vm.mac = macs[vm.namespace]
            # Strict reverse-path filtering, as hardened stemcells set it (never kinder than a VM).
            netns.set_sysctl(vm.namespace, "net/ipv4/conf/all/rp_filter", "1")
        if self.anti_spoofing:
            vm_namespaces = {vm.namespace for vm in self.vms}
            ports = []
            for ns, port, ip4, ip6 in hosts:
                # The VMs' ports allow the VIPs as address pairs, as a cloud's VRRP set-up must.
                pairs = self.vips if ns in vm_namespaces else []
                ports.append(Port(port, macs[ns], ipv4=(ip4, *[v for v in pairs if ":" not in v]),
                                  ipv6=(*([ip6] if ip6 else []), *[v for v in pairs if ":" in v])))
            enforce(sw, ports)
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
