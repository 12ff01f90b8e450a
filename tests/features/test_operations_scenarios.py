"""features/operations: manual maintenance, a release with bad properties, --skip-drain."""

from __future__ import annotations

from pytest_bdd import parsers, scenarios, then
from rollout_support import Story, status_json

from vipdrain.lab.cluster import Lab

scenarios("operations")


@then(parsers.parse('"vipdrain status --json" on {vm} shows maintenance on'))
def status_shows_maintenance(lab: Lab, story: Story, vm: str) -> None:
    status = status_json(lab, story, vm)
    assert status["maintenance"] is True and "maintenance" in status["hold_reasons"], status
