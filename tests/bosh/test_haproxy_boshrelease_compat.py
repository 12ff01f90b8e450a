"""A manifest written for haproxy-boshrelease's keepalived job deploys unchanged (issue 14).

The property block below is what that job accepts: its spec is jobs/keepalived/spec of
cloudfoundry/haproxy-boshrelease, last changed in commit 09a4539975acb92162e5414b1819457e9b6cb5e7
("Allow configuring dont_track_primary for keepalived") and unchanged at
c8180eddb84b78c107b19f4c6191616120c05d21. Its properties and defaults: keepalived.vip (no default),
healthcheck_name (check_haproxy), healthcheck_command (killall -0 haproxy), interface (auto),
virtual_router_id (1), dont_track_primary (false). The block goes through this job's spec and
config template with real ERB (render_erb.rb: undeclared properties dropped, as the director
does), then through the validation pre-start runs (`vipdrain check`, the same load_config).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bosh_harness import BOOTSTRAP_SPEC, link_instances, render

from vipdrain import boshjob
from vipdrain.cli import main
from vipdrain.config import load_config
from vipdrain.errors import EXIT_OK

#: haproxy-boshrelease's defaults, spelled out.
DEFAULTS: dict[str, Any] = {
    "vip": "192.0.2.100",
    "healthcheck_name": "check_haproxy",
    "healthcheck_command": "killall -0 haproxy",
    "interface": "auto",
    "virtual_router_id": 1,
    "dont_track_primary": False,
}
MANIFESTS: dict[str, dict[str, Any]] = {
    "only the vip": {"vip": "192.0.2.100"},
    "defaults spelled out": DEFAULTS,
    "common overrides": {**DEFAULTS, "interface": "eth1", "virtual_router_id": 51, "dont_track_primary": True,
                         "healthcheck_name": "haproxy_alive",
                         "healthcheck_command": "/var/vcap/jobs/haproxy/bin/haproxy_wrapper check"},
    "pidof check": {"vip": "192.0.2.100", "healthcheck_command": "pidof haproxy"},
}
SET_LEGACY = {"healthcheck_name", "healthcheck_command", "dont_track_primary"}


def rendered_config(tmp_path: Path, keepalived: dict[str, Any]) -> Path:
    links = link_instances("192.0.2.10", "192.0.2.11")
    text = render({"keepalived": keepalived}, BOOTSTRAP_SPEC, links, templates=[boshjob.CONFIG_TEMPLATE])
    path = tmp_path / "vipdrain.yml"
    path.write_text(text[boshjob.CONFIG_DESTINATION])
    return path


@pytest.mark.parametrize("keepalived", MANIFESTS.values(), ids=MANIFESTS.keys())
def test_haproxy_boshrelease_manifest_passes_validation_unchanged(tmp_path, keepalived):
    path = rendered_config(tmp_path, keepalived)
    # Every property set reaches vipdrain: none is dropped by the spec.
    assert json.loads(path.read_text())["properties"]["keepalived"].keys() >= keepalived.keys()
    # `auto` is the interface holding spec.ip (192.0.2.10, on eth0 of the VM this stands for).
    cfg = load_config(path, interface_of=lambda ip: "eth0")
    vip = cfg.vips[0]
    assert (str(vip.address), vip.virtual_router_id) == ("192.0.2.100", keepalived.get("virtual_router_id", 1))
    assert vip.interface == ("eth0" if keepalived.get("interface", "auto") == "auto" else keepalived["interface"])
    command = keepalived.get("healthcheck_command", "killall -0 haproxy")
    assert cfg.healthcheck is not None
    assert cfg.healthcheck.command == ("" if command == "killall -0 haproxy" else command)
    assert ("dont_track_primary" in cfg.extra_instance_options) is keepalived.get("dont_track_primary", False)
    # One warning per haproxy-boshrelease name set, naming it.
    named = sorted(w.split(":", 1)[0] for w in cfg.warnings)
    assert named == sorted(f"keepalived.{n}" for n in SET_LEGACY & keepalived.keys())


def test_vipdrain_check_accepts_the_defaults(tmp_path, capsys):
    path = rendered_config(tmp_path, {**DEFAULTS, "interface": "eth0"})
    assert main(["check", "--config", str(path)]) == EXIT_OK
    err = capsys.readouterr().err
    assert sorted(line.split(":", 2)[1].strip() for line in err.splitlines() if line.startswith("warning: ")) == [
        "keepalived.dont_track_primary", "keepalived.healthcheck_command", "keepalived.healthcheck_name"]
