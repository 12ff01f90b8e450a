"""The example alert rules (docs/prometheus/) are valid Prometheus rules, and each alert fires on
the series it is meant for (promtool's rule unit tests). promtool is Debian's `prometheus` package,
which `make setup` installs; without it these tests skip, and fail where the lab is required (CI)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from labpolicy import unavailable
from vipdrain.metrics import RESULTS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "prometheus"
RULES = DOCS / "vipdrain-alerts.yml"



@pytest.mark.parametrize("argv", [["check", "rules", RULES.name], ["test", "rules", "vipdrain-alerts.test.yml"]])
def test_promtool_accepts_the_rules(argv: list[str]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool is not installed (apt-get install prometheus)")
    done = subprocess.run([promtool, *argv], cwd=DOCS, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_name_only_metrics_and_results_vipdrain_writes() -> None:
    """Runs without promtool: an alert on a misspelt metric or result would never fire."""
    import re

    from prometheus_client import generate_latest

    from vipdrain import metrics

    snapshot = metrics.Snapshot(
        vips=(metrics.VipSample("vip_1", "192.0.2.100", holders=1, verdict="ok"),), base_priority=1,
        effective_priority=1, hold_since={"maintenance": 1.0},
        counters=metrics.Counters().with_drain("handed_over", 1.0), survey_time=1.0,
    )
    written = {line.split("{")[0].split(" ")[0]
               for line in generate_latest(metrics.build_registry(snapshot)).decode().splitlines()
               if line and not line.startswith("#")}
    text = RULES.read_text()
    used = set(re.findall(r"\bvipdrain_[a-z_]+\b", text))
    assert used and used <= written, used - written
    for result in re.findall(r'result=~"([^"]+)"', text):
        assert set(result.split("|")) <= set(RESULTS)
