"""haproxy of a lab VM: its config (from the `haproxy.cfg` template next to this module) and argv.

haproxy runs in the foreground (`-db`), one process per VM; the lab writes its pid file the way
bpm does for haproxy-boshrelease, so vipdrain's health check reads a real pid file.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

HTTP_PORT = 80
TCP_STREAM_PORT = 81
HEALTH_PORT = 8080
#: The per-VM app server (vipdrain.lab.backend) listens on 127.0.0.1 behind haproxy.
APP_HTTP_PORT = 18080
APP_TCP_PORT = 18081


@dataclass(frozen=True)
class HaproxyPaths:
    """haproxy's files under a VM's BOSH root, shaped like haproxy-boshrelease's job."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "jobs" / "haproxy" / "config" / "haproxy.cfg"

    @property
    def pid_file(self) -> Path:
        return self.root / "sys" / "run" / "haproxy" / "haproxy.pid"

    @property
    def stats_socket(self) -> Path:
        return self.root / "sys" / "run" / "haproxy" / "stats.sock"

    @property
    def log(self) -> Path:
        return self.root / "sys" / "log" / "haproxy" / "haproxy.log"

    @property
    def app_log(self) -> Path:
        return self.root / "sys" / "log" / "app" / "app.log"


def render_config(name: str, paths: HaproxyPaths, *, ipv6: bool = False) -> str:
    """haproxy.cfg text for VM `name` (answers `name` on port 80)."""
    template = Template(resources.files("vipdrain.lab").joinpath("haproxy.cfg").read_text())
    return template.substitute(
        name=name,
        stats_socket=paths.stats_socket,
        bind6_http=f"  bind :::{HTTP_PORT} v6only" if ipv6 else "",
        bind6_tcp=f"  bind :::{TCP_STREAM_PORT} v6only" if ipv6 else "",
        http_port=APP_HTTP_PORT,
        tcp_port=APP_TCP_PORT,
    )


def command_line(paths: HaproxyPaths) -> list[str]:
    """Foreground haproxy with the VM's config."""
    return ["haproxy", "-db", "-f", str(paths.config)]
