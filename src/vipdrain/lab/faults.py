"""Fault injection for the lab: crash or stop processes, cut links, partition VRRP, degrade the network.

Every fault acts on this run's own processes (by recorded pid) and namespaces only. Reversible
faults have an undo method and a context manager; `heal()` undoes all of them at once (it is
stateless: it restores every VM, whether or not it was faulted).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

from vipdrain import rtnl
from vipdrain.errors import RuntimeFailure
from vipdrain.lab import netns

if TYPE_CHECKING:
    from vipdrain.lab.cluster import VM, Lab

VRRP_PROTOCOL = 112
ROLES = ("keepalived", "haproxy", "backend", "drain-server")


class Faults:
    """Faults bound to one lab (`lab.faults`). VMs may be given as `VM` objects or names."""

    def __init__(self, lab: Lab):
        self.lab = lab
        #: nftables table (per VM namespace) holding the VRRP partition rules; named by the run's prefix.
        self.table = "vipdrain_" + lab.prefix.replace("-", "_")

    def _vm(self, vm: VM | str | int) -> VM:
        return vm if not isinstance(vm, (str, int)) else self.lab.vm(vm)

    # --- processes ---------------------------------------------------------------------------

    def send_signal(self, vm: VM | str, role: str, sig: int, *, group: bool = True) -> bool:
        """Send `sig` to the VM's `role` process (one of ROLES); False if not running.

        `group=True` signals the whole process group: keepalived's VRRP child and haproxy's workers too.
        """
        if role not in ROLES:
            raise RuntimeFailure(f"unknown process role {role!r} (known: {', '.join(ROLES)})")
        proc = self._vm(vm).procs.get(role)
        return proc.send_signal(sig, group=group) if proc is not None else False

    def kill_keepalived(self, vm: VM | str, sig: int = signal.SIGKILL, *, group: bool = True) -> bool:
        """Crash keepalived (kill -9 by default).

        group=True (default) kills the parent *and* its VRRP child, as a crash or an OOM kill does:
        the VIP stays configured on the interface and no priority-0 advert is sent, so peers take
        over only after the master-down interval. group=False kills only the parent: the VRRP child
        then gets SIGTERM from the kernel (keepalived sets PR_SET_PDEATHSIG) and resigns cleanly.
        """
        return self.send_signal(vm, "keepalived", sig, group=group)

    def term_keepalived(self, vm: VM | str) -> bool:
        """SIGTERM keepalived without waiting (it sends a priority-0 advert and removes its VIPs)."""
        return self.send_signal(vm, "keepalived", signal.SIGTERM)

    def restart_keepalived(self, vm: VM | str) -> None:
        """Stop keepalived as monit would (SIGTERM, wait) and start it again."""
        target = self._vm(vm)
        target.stop_keepalived()
        target.start_keepalived()

    def kill_notify_reader(self, vm: VM | str, sig: int = signal.SIGKILL) -> list[int]:
        """Kill the VM's notify reader (`vipdrain notify-fifo`, started by its keepalived); the pids
        signalled. keepalived goes on writing transitions to the FIFO and never starts it again."""
        from vipdrain.notify import find_readers

        pids = [r.pid for r in find_readers(self._vm(vm).layout)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pids

    def kill_haproxy(self, vm: VM | str, sig: int = signal.SIGKILL) -> bool:
        """Crash haproxy (kill -9 by default): its listeners vanish, connections are reset."""
        return self.send_signal(vm, "haproxy", sig)

    def term_haproxy(self, vm: VM | str) -> bool:
        """SIGTERM haproxy without waiting (hard stop)."""
        return self.send_signal(vm, "haproxy", signal.SIGTERM)

    def restart_haproxy(self, vm: VM | str) -> None:
        """Stop haproxy as bpm would and start it again."""
        target = self._vm(vm)
        target.stop_haproxy()
        target.start_haproxy()

    def freeze(self, vm: VM | str, role: str = "keepalived") -> bool:
        """SIGSTOP the process group: it stays alive but does nothing (no adverts, no answers)."""
        return self.send_signal(vm, role, signal.SIGSTOP)

    def thaw(self, vm: VM | str, role: str = "keepalived") -> bool:
        """SIGCONT what `freeze` stopped."""
        return self.send_signal(vm, role, signal.SIGCONT)

    @contextlib.contextmanager
    def frozen(self, vm: VM | str, role: str = "keepalived") -> Iterator[None]:
        self.freeze(vm, role)
        try:
            yield
        finally:
            self.thaw(vm, role)

    # --- links -------------------------------------------------------------------------------

    def cut_link(self, vm: VM | str) -> None:
        """Take the VM's bridge port down (its eth0 loses carrier, as with an unplugged cable)."""
        netns.ip("-n", self.lab.switch_namespace, "link", "set", self._vm(vm).name, "down")

    def restore_link(self, vm: VM | str) -> None:
        netns.ip("-n", self.lab.switch_namespace, "link", "set", self._vm(vm).name, "up")

    @contextlib.contextmanager
    def link_cut(self, vm: VM | str) -> Iterator[None]:
        self.cut_link(vm)
        try:
            yield
        finally:
            self.restore_link(vm)

    # --- VRRP partition (nftables) -----------------------------------------------------------

    def _nft(self, vm: VM, script: str, *, check: bool = True) -> None:
        netns.run(netns.exec_argv(vm.namespace, ["nft", "-f", "-"]), input=script, check=check)

    def _ensure_table(self, vm: VM) -> None:
        t = self.table
        self._nft(vm, "\n".join([
            f"add table inet {t}",
            f"add set inet {t} vrrp_peers4 {{ type ipv4_addr; }}",
            f"add set inet {t} vrrp_peers6 {{ type ipv6_addr; }}",
            f"add chain inet {t} input {{ type filter hook input priority -10; policy accept; }}",
            f"add chain inet {t} output {{ type filter hook output priority -10; policy accept; }}",
            f"flush chain inet {t} input",
            f"add rule inet {t} input ip saddr @vrrp_peers4 ip protocol {VRRP_PROTOCOL} drop",
            f"add rule inet {t} input ip6 saddr @vrrp_peers6 meta l4proto {VRRP_PROTOCOL} drop",
        ]) + "\n")

    def _sources(self, vm: VM) -> tuple[list[str], list[str]]:
        """Addresses `vm` may send adverts from: its IPv4 and IPv6 addresses, link-local included
        (keepalived sends IPv6 adverts from the link-local address). Never a VIP: it comes and
        goes, and a restore naming one the set does not hold would fail as a whole."""
        vips = {str(ipaddress.ip_address(v)) for v in self.lab.vips}
        addrs = [e.address for e in vm.call(rtnl.dump) if not e.on_loopback and e.address not in vips]
        return [a for a in addrs if "." in a], [a for a in addrs if ":" in a]

    def _set_elements(self, vm: VM, peer: VM, verb: str) -> None:
        v4, v6 = self._sources(peer)
        lines = []
        if v4:
            lines.append(f"{verb} element inet {self.table} vrrp_peers4 {{ {', '.join(v4)} }}")
        if v6:
            lines.append(f"{verb} element inet {self.table} vrrp_peers6 {{ {', '.join(v6)} }}")
        self._nft(vm, "\n".join(lines) + "\n", check=verb == "add")

    def drop_vrrp(self, a: VM | str, b: VM | str) -> None:
        """Drop VRRP between `a` and `b` in both directions (each drops the other's adverts on input)."""
        va, vb = self._vm(a), self._vm(b)
        for vm, peer in ((va, vb), (vb, va)):
            self._ensure_table(vm)
            self._set_elements(vm, peer, "add")

    def restore_vrrp(self, a: VM | str, b: VM | str) -> None:
        """Undo `drop_vrrp(a, b)`."""
        va, vb = self._vm(a), self._vm(b)
        for vm, peer in ((va, vb), (vb, va)):
            self._set_elements(vm, peer, "delete")

    @contextlib.contextmanager
    def vrrp_dropped(self, a: VM | str, b: VM | str) -> Iterator[None]:
        self.drop_vrrp(a, b)
        try:
            yield
        finally:
            self.restore_vrrp(a, b)

    # --- loss (nftables) and delay (tc netem) ------------------------------------------------

    def drop_packets(self, vm: VM | str, loss_pct: float) -> None:
        """Drop `loss_pct` % of the packets leaving the VM's eth0 at random (nftables; works on
        kernels without netem). 0 removes the loss."""
        target = self._vm(vm)
        self._ensure_table(target)
        rule = [f"flush chain inet {self.table} output"]
        if loss_pct >= 100:
            rule.append(f'add rule inet {self.table} output oifname "eth0" drop')
        elif loss_pct > 0:
            rule.append(f'add rule inet {self.table} output oifname "eth0" numgen random mod 10000 < '
                        f"{round(loss_pct * 100)} drop")
        self._nft(target, "\n".join(rule) + "\n")

    @contextlib.contextmanager
    def lossy(self, vm: VM | str, loss_pct: float) -> Iterator[None]:
        self.drop_packets(vm, loss_pct)
        try:
            yield
        finally:
            self.drop_packets(vm, 0)

    def netem(self, vm: VM | str, *, delay_ms: float = 0.0, jitter_ms: float = 0.0, loss_pct: float = 0.0) -> None:
        """Delay and/or drop packets leaving the VM's eth0 (tc netem; raises if the kernel has none)."""
        args = ["tc", "-n", self._vm(vm).namespace, "qdisc", "replace", "dev", "eth0", "root", "netem"]
        if delay_ms or jitter_ms:
            args += ["delay", f"{delay_ms:g}ms"] + ([f"{jitter_ms:g}ms"] if jitter_ms else [])
        if loss_pct:
            args += ["loss", f"{loss_pct:g}%"]
        proc = netns.run(args, check=False)
        if proc.returncode != 0:
            hint = " (this kernel has no netem: CONFIG_NET_SCH_NETEM)" if "unknown" in proc.stderr else ""
            raise RuntimeFailure(f"{' '.join(args)} failed: {proc.stderr.strip()}{hint}")

    def clear_netem(self, vm: VM | str) -> None:
        netns.run(["tc", "-n", self._vm(vm).namespace, "qdisc", "del", "dev", "eth0", "root"], check=False)

    @contextlib.contextmanager
    def degraded(self, vm: VM | str, *, delay_ms: float = 0.0, jitter_ms: float = 0.0,
                 loss_pct: float = 0.0) -> Iterator[None]:
        self.netem(vm, delay_ms=delay_ms, jitter_ms=jitter_ms, loss_pct=loss_pct)
        try:
            yield
        finally:
            self.clear_netem(vm)

    # --- all at once -------------------------------------------------------------------------

    def heal(self) -> None:
        """Undo every reversible fault on every VM: thaw, links up, no nftables faults, no netem."""
        for vm in self.lab.vms:
            for role in ROLES:
                self.send_signal(vm, role, signal.SIGCONT)
            if netns.exists(vm.namespace):
                self.restore_link(vm)
                self._nft(vm, f"delete table inet {self.table}\n", check=False)
                self.clear_netem(vm)
