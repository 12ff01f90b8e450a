"""The job's own drain script, with the real vipdrain, after a pre-start that rejected the config
(issue 14): the agent applied the job before pre-start ran, so the next deploy starts with this
drain. keepalived is not running (monit stopped it), so the drain prints exactly `0` and exits 0
instead of failing the deploy; vipdrain.log says why."""

from __future__ import annotations

import sys
from pathlib import Path

from bosh_harness import BOOTSTRAP_SPEC, FakeVM, link_instances, render

from vipdrain import boshjob

DRAIN_ARGS = ("job_changed", "hash_changed", "vipdrain", "keepalived")
#: Found only by pre-start (a notify hook must be an absolute path): the template renders it.
REJECTED = {"keepalived": {"vip": "192.0.2.100", "interface": "eth0", "notify": {"master": "claim"}}}


def test_drain_after_a_rejected_config_prints_0(vm: FakeVM) -> None:
    rendered = render(REJECTED, BOOTSTRAP_SPEC, link_instances("192.0.2.10", "192.0.2.11"),
                      templates=[boshjob.CONFIG_TEMPLATE])
    (vm.job_dir / boshjob.CONFIG_DESTINATION).write_text(rendered[boshjob.CONFIG_DESTINATION])
    # The real vipdrain of this checkout (the console script next to this interpreter).
    done = vm.run("bin/drain", *DRAIN_ARGS, fakes_on_path=False,
                  env={"PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin"})
    assert (done.returncode, done.stdout) == (0, "0\n"), done.stderr
    log = (vm.log_dir / "vipdrain.log").read_text()
    assert "keepalived.notify.master: 'claim' must start with the absolute path" in log
    assert "keepalived is not running, so this VM holds no VIP to hand over: returning 0" in log
    assert "done: 0" in vm.log()
