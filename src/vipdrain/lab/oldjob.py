"""haproxy-boshrelease's keepalived job, the job operators migrate from, as the lab runs it.

Read from cloudfoundry/haproxy-boshrelease (commit c8180ed), jobs/keepalived:
- `templates/keepalived.config.erb`: `global_defs { lvs_id <name> }`; `vrrp_script check_haproxy`
  running `killall -0 haproxy` every 2 s with weight 2; one `vrrp_instance <name>_check_haproxy`
  with `state MASTER` + `priority 101` on the bootstrap VM and `state SLAVE` + `priority 100` on
  the others (keepalived reads SLAVE as BACKUP), `interface`, `virtual_router_id` (default 1), the
  VIP and the track_script. Nothing else: keepalived's defaults, so VRRPv2, `advert_int 1`,
  multicast to 224.0.0.18, preemption on, no authentication.
- `templates/keepalived_ctl`: `start` replaces `interface auto` with the interface of the link
  route that contains the VIP and runs `keepalived -l -D -n -f config/keepalived.config
  --pid=<run>/keepalived.pid --vrrp_pid=... --checkers_pid=...`; `stop` sends SIGTERM to every
  pid file's process, waits up to 25 s, then SIGKILL. No drain script, no pre-start.

One deliberate difference: lab VMs share one PID namespace, so `killall -0 haproxy` would see
every VM's haproxy. The lab's check asks the same question of this VM's own haproxy only
(`kill -0` of the pid in its pid file): alive or not, nothing about whether it answers.
"""

from __future__ import annotations

from pathlib import Path

from vipdrain.keepalived import keepalived_binary
from vipdrain.layout import Layout

#: `vm.job` of a lab VM still on haproxy-boshrelease's keepalived job.
OLD_JOB = "haproxy-boshrelease"
HEALTHCHECK_NAME = "check_haproxy"


def config_path(layout: Layout) -> Path:
    """Where keepalived_ctl writes the config keepalived runs with (`config/keepalived.config`)."""
    return layout.job_dir / "config" / "keepalived.config"


def check_script_path(layout: Layout) -> Path:
    return layout.job_dir / "bin" / "check_haproxy"


def check_script(haproxy_pid_file: Path) -> str:
    """The lab's `killall -0 haproxy`: is this VM's haproxy process alive?"""
    return "\n".join([
        "#!/bin/sh",
        "# haproxy-boshrelease runs `killall -0 haproxy`; lab VMs share one PID namespace, so ask",
        "# the same question of this VM's own haproxy.",
        f'exec kill -0 "$(cat {haproxy_pid_file} 2>/dev/null)" 2>/dev/null',
        "",
    ])


def render_config(*, instance_group: str, bootstrap: bool, vip: str, interface: str, check: Path,
                  virtual_router_id: int = 1) -> str:
    """keepalived.config as the job's ERB template renders it (after keepalived_ctl resolved
    `interface auto`); `check` replaces the default healthcheck_command (see the module doc)."""
    state, priority = ("MASTER", 101) if bootstrap else ("SLAVE", 100)
    return "\n".join([
        "global_defs {",
        "\t# Keepalived process identifier",
        f"\tlvs_id {instance_group}",
        "}",
        "# Healthcheck test to be performed, if rc is different than 0, new master election is required "
        "between all the remaining nodes",
        f"vrrp_script {HEALTHCHECK_NAME} {{",
        f'\tscript "{check}"',
        "\tinterval 2",
        "\tweight 2",
        "}",
        "# Virtual interface",
        "# The priority specifies the order in which the assigned interface to take over in a failover",
        f"vrrp_instance {instance_group}_{HEALTHCHECK_NAME} {{",
        f"\tstate {state}",
        f"\tpriority {priority}",
        f"\tinterface {interface}",
        f"\tvirtual_router_id {virtual_router_id}",
        "# The virtual ip address shared between the two loadbalancers",
        "\tvirtual_ipaddress {",
        f"\t\t{vip}",
        "\t}",
        "\ttrack_script {",
        f"\t\t{HEALTHCHECK_NAME}",
        "\t}",
        "}",
        "",
    ])


def command_line(layout: Layout, config_id: str) -> list[str]:
    """keepalived_ctl start's command (`-l -D -n`, its config and the job's three pid files), plus
    the lab's config id so several keepalived processes can share the machine."""
    return [
        keepalived_binary(), "-l", "-D", "-n", "-f", str(config_path(layout)),
        "-p", str(layout.pid_file), "-r", str(layout.vrrp_pid_file), "-c", str(layout.checkers_pid_file),
        "-i", config_id,
    ]
