"""Where the job's files live on a VM: the BOSH `/var/vcap` layout, relocatable for the lab.

Every path vipdrain reads or writes is derived here, so a lab VM (whose root is a temp dir)
and a BOSH VM behave the same.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = "/var/vcap"
DEFAULT_JOB = "keepalived"
ROOT_ENV = "VIPDRAIN_ROOT"
CMD_ENV = "VIPDRAIN_CMD"


def default_vipdrain_cmd() -> str:
    """How keepalived should call vipdrain when nobody said (`$VIPDRAIN_CMD`).

    The installed console script, when there is one next to this interpreter: keepalived resolves
    symlinks in script paths, so a virtualenv's `bin/python` (a symlink) would run the base
    interpreter without the virtualenv's packages, while the script's shebang keeps them.
    """
    script = Path(sys.prefix) / "bin" / "vipdrain"
    if script.is_file():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m vipdrain"


@dataclass(frozen=True)
class Layout:
    """Paths of one job on one VM (`root` is `/var/vcap` on BOSH)."""

    root: Path = Path(DEFAULT_ROOT)
    job: str = DEFAULT_JOB
    #: How keepalived's scripts call vipdrain (a shell word list); on BOSH the job's wrapper.
    vipdrain_cmd: str = ""

    @classmethod
    def from_env(cls, root: str | os.PathLike[str] | None = None, job: str = DEFAULT_JOB) -> Layout:
        """Layout from an explicit root, else `$VIPDRAIN_ROOT`, else `/var/vcap`."""
        chosen = Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT)
        cmd = os.environ.get(CMD_ENV) or default_vipdrain_cmd()
        return cls(root=chosen, job=job, vipdrain_cmd=cmd)

    @property
    def job_dir(self) -> Path:
        return self.root / "jobs" / self.job

    @property
    def config_file(self) -> Path:
        """The file BOSH renders from the job's properties, spec and links."""
        return self.job_dir / "config" / "vipdrain.yml"

    @property
    def run_dir(self) -> Path:
        return self.root / "sys" / "run" / self.job

    @property
    def log_dir(self) -> Path:
        return self.root / "sys" / "log" / self.job

    @property
    def data_dir(self) -> Path:
        return self.root / "data" / self.job

    @property
    def healthcheck_script(self) -> Path:
        """keepalived's default health check, the job's `bin/healthcheck` (lifecycle/healthcheck)."""
        return self.job_dir / "bin" / "healthcheck"

    @property
    def keepalived_conf(self) -> Path:
        return self.data_dir / "keepalived.conf"

    @property
    def last_good_config(self) -> Path:
        """The config file the last successful pre-start validated (keepalived.conf's source):
        the BOSH drain's fallback when the job's current config cannot be loaded."""
        return self.data_dir / "vipdrain.last-good.yml"

    @property
    def keepalived_log(self) -> Path:
        return self.log_dir / "keepalived.log"

    @property
    def vipdrain_log(self) -> Path:
        return self.log_dir / "vipdrain.log"

    @property
    def drain_socket(self) -> Path:
        """Where the warm drain's server listens (`vipdrain.warm`; the client finds it without
        this class: `vipdrain.warm.client.socket_path`)."""
        return self.run_dir / "drain.sock"

    @property
    def drain_server_pid(self) -> Path:
        return self.run_dir / "drain-server.pid"

    @property
    def drain_server_log(self) -> Path:
        """The server's stderr (its own lines also go to vipdrain.log)."""
        return self.log_dir / "drain-server.log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "keepalived.pid"

    @property
    def vrrp_pid_file(self) -> Path:
        return self.run_dir / "vrrp.pid"

    @property
    def checkers_pid_file(self) -> Path:
        return self.run_dir / "checkers.pid"

    @property
    def hold_track_file(self) -> Path:
        """Track file keepalived reads: 1 while any hold (drain, joining, maintenance) is on."""
        return self.run_dir / "hold.track"

    @property
    def hold_state_file(self) -> Path:
        """Why the hold is on (JSON), written with the track file."""
        return self.run_dir / "hold.json"

    # The hold files above live in sys/run, a tmpfs the BOSH agent mounts at every boot
    # (cloudfoundry/bosh-agent e94765a, platform/linux_platform.go `setupRunDir`: MountTmpfs on
    # <data>/sys/run, default size 16m, which /var/vcap/sys/run is): a drain in progress or a
    # deploy's joining hold ends with the boot. Maintenance set by hand must not, so it has its
    # own pair on the VM's ephemeral disk (data/, kept across reboots, gone on recreate).

    @property
    def maintenance_track_file(self) -> Path:
        """Track file keepalived reads: 1 while maintenance is on. Outlives a reboot."""
        return self.data_dir / "maintenance.track"

    @property
    def maintenance_state_file(self) -> Path:
        """Since when maintenance is on (JSON), written with its track file. Outlives a reboot."""
        return self.data_dir / "maintenance.json"

    def holder_track_file(self, instance: str) -> Path:
        """Sticky placement: 1 while this VM is MASTER of `instance`."""
        return self.run_dir / f"holder-{instance}.track"

    @property
    def notify_fifo(self) -> Path:
        """keepalived writes every VRRP transition here, in order (vipdrain notify-fifo reads it)."""
        return self.run_dir / "notify.fifo"

    def state_file(self, instance: str) -> Path:
        """Last VRRP state keepalived reported for `instance` through the notify hook (JSON)."""
        return self.run_dir / f"state-{instance}.json"

    @property
    def transitions_log(self) -> Path:
        """Append-only JSON lines of every VRRP transition keepalived reported. Named `*.log`:
        the agent's logrotate rotates only `*.log` under sys/log (copytruncate, so appending
        writers need nothing else)."""
        return self.log_dir / "transitions.log"

    @property
    def metrics_counters_file(self) -> Path:
        """Counters of vipdrain's metrics (drains, handoff times, transitions): JSON on the data
        disk, so they survive process exits and reboots like a counter should."""
        return self.data_dir / "metrics-counters.json"

    @property
    def metrics_survey_file(self) -> Path:
        """The last survey of the VIPs' holders that the metrics show (JSON)."""
        return self.run_dir / "metrics-survey.json"

    @property
    def metrics_lock(self) -> Path:
        return self.run_dir / "metrics.lock"

    @property
    def drain_lock(self) -> Path:
        return self.run_dir / "drain.lock"

    def dirs(self) -> list[Path]:
        """Directories pre-start creates."""
        return [self.job_dir / "config", self.run_dir, self.log_dir, self.data_dir]
