"""features/operations: manual maintenance, a release with bad properties, --skip-drain,
haproxy-boshrelease's property names."""

from __future__ import annotations

from pytest_bdd import parsers, scenarios, then
from rollout_support import BoshRun, Story, status_json

from vipdrain.lab.cluster import Lab

scenarios("operations")


@then(parsers.parse('"vipdrain status --json" on {vm} shows maintenance on'))
def status_shows_maintenance(lab: Lab, story: Story, vm: str) -> None:
    status = status_json(lab, story, vm)
    assert status["maintenance"] is True and "maintenance" in status["hold_reasons"], status


@then(parsers.parse("{vm}'s pre-start warned once about {names}"))
def pre_start_warned_once(deploy: BoshRun, vm: str, names: str) -> None:
    """Each named property gets exactly one warning line on pre-start's stderr (the agent's log)."""
    calls = deploy.calls_of("pre-start", vm)
    assert len(calls) == 1, f"{vm} ran pre-start {len(calls)} times"
    lines = calls[0].stderr.splitlines()
    for name in names.replace(" and ", ", ").split(", "):
        warned = [line for line in lines if f"WARNING vipdrain: {name}: " in line]
        assert len(warned) == 1, f"{vm}'s pre-start warned {len(warned)} times about {name}:\n{calls[0].stderr}"
