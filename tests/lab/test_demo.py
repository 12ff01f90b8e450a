"""The README's main command, end to end on a small lab: report, picture, no failed request."""

from __future__ import annotations

import json

import pytest

from vipdrain.lab.demo import DEMO_PROPERTIES, run_demo

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def test_demo_rolls_a_deploy_without_a_failed_request(tmp_path) -> None:
    lines: list[str] = []
    report = run_demo(tmp_path, nodes=2, advert_int=0.3, overrides=DEMO_PROPERTIES, progress=lines.append)
    assert report.requests > 500
    assert report.failed == {}, "\n".join(report.lines())
    assert 1 <= report.vip_moves <= 2  # away from vm0 and back (placement: preferred)
    assert [h.vm for h in report.handoffs] == ["vm0", "vm1"]
    assert (tmp_path / "timeline.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "report.json").read_text())["requests"] == report.requests
    assert any("drain" in line for line in lines)  # progress while it runs
