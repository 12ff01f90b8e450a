"""The lab's haproxy-boshrelease keepalived job renders what that job's own template renders.

`fixtures/haproxy-boshrelease-keepalived/` holds the job's spec, monit file and
keepalived.config.erb as they are in cloudfoundry/haproxy-boshrelease at c8180ed (copied
unchanged). The template is rendered with real ERB (render_erb.rb) and `interface auto` replaced
as its keepalived_ctl start does; vipdrain.lab.oldjob must give the same lines, with the lab's
check as `keepalived.healthcheck_command` (lab VMs share a PID space: see vipdrain.lab.oldjob).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bosh_harness import BOOTSTRAP_SPEC, render

from vipdrain.lab.oldjob import render_config

OLD_JOB_DIR = Path(__file__).parent / "fixtures" / "haproxy-boshrelease-keepalived"
CHECK = Path("/var/vcap/jobs/keepalived/bin/check_haproxy")


def lines(text: str) -> list[str]:
    """Non-empty lines without their indentation (ERB leaves blank and tab-indented lines)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("bootstrap", [True, False], ids=["bootstrap", "other"])
@pytest.mark.parametrize("vrid", [1, 51])
def test_lab_old_job_config_is_the_templates_output(bootstrap: bool, vrid: int) -> None:
    props = {"keepalived": {"vip": "192.0.2.100", "healthcheck_command": str(CHECK), "virtual_router_id": vrid}}
    spec = {**BOOTSTRAP_SPEC, "name": "haproxy", "bootstrap": bootstrap}
    rendered = render(props, spec, templates=["keepalived.config.erb"], job_dir=OLD_JOB_DIR)
    template = rendered["config/keepalived.config.template"].replace("interface auto", "interface eth0")

    ours = render_config(instance_group="haproxy", bootstrap=bootstrap, vip="192.0.2.100", interface="eth0",
                         check=CHECK, virtual_router_id=vrid)

    assert lines(ours) == lines(template)
    assert ("state MASTER" in ours) == bootstrap and ("priority 101" in ours) == bootstrap
