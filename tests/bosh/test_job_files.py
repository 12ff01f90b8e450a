"""Files the keepalived job leaves on a VM: modes and log rotation, as the BOSH agent treats them."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from bosh_harness import AGENT_LOGROTATE_GLOBS, REPO, FakeVM, rotated_by_agent

from vipdrain.layout import Layout


def _job_logs() -> list[str]:
    """Every file the job writes under sys/log, relative to it: vipdrain's Layout paths there and
    the lifecycle scripts' LOG_FILE (lifecycle/common.sh)."""
    layout = Layout(root=Path("/var/vcap"))
    names = {f.name for f in fields(Layout)}
    paths = []
    for attribute in dir(Layout):
        if attribute.startswith("_") or attribute in names or attribute == "log_dir":
            continue
        value = getattr(layout, attribute)
        if isinstance(value, Path) and value.is_relative_to(layout.log_dir):
            paths.append(value.relative_to(layout.root / "sys" / "log").as_posix())
    common = (REPO / "lifecycle" / "common.sh").read_text()
    log_file = re.search(r'^LOG_FILE="\$LOG_DIR/([^"]+)"', common, re.MULTILINE)
    assert log_file, "lifecycle/common.sh sets LOG_FILE"
    paths.append(f"{layout.job}/{log_file.group(1)}")
    return sorted(paths)


def test_every_log_of_the_job_is_rotated_by_the_agents_logrotate() -> None:
    logs = _job_logs()
    assert {"keepalived/keepalived.log", "keepalived/lifecycle.log", "keepalived/transitions.log"} <= set(logs)
    assert [log for log in logs if not rotated_by_agent(log)] == [], f"not matched by {AGENT_LOGROTATE_GLOBS}"


def test_agent_logrotate_globs_do_not_match_other_names() -> None:
    assert not rotated_by_agent("keepalived/transitions.jsonl")
    assert not rotated_by_agent("keepalived/a/b/c.log")  # deeper than the agent's rule
    assert rotated_by_agent("keepalived/.hidden.log")


def test_job_files_have_the_agents_modes(vm: FakeVM) -> None:
    """The job config can hold auth_pass: 0640 (root:vcap), never world-readable."""
    assert (vm.job_dir / "config" / "vipdrain.yml").stat().st_mode & 0o777 == 0o640
    assert (vm.job_dir / "bin" / "drain").stat().st_mode & 0o777 == 0o750
    assert vm.job_dir.stat().st_mode & 0o777 == 0o750
