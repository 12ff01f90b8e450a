"""features/colocation: haproxy-boshrelease's drain in parallel with vipdrain's."""

from __future__ import annotations

from pytest_bdd import parsers, scenarios, then

from vipdrain.lab.cluster import Lab

scenarios("colocation")


@then(parsers.parse('pre-start on every VM warned "{text}"'))
def pre_start_warned(lab: Lab, text: str) -> None:
    """pre-start logs its warnings to the job's vipdrain.log (and stderr)."""
    for vm in lab.vms:
        log = vm.layout.vipdrain_log.read_text()
        assert any("WARNING" in line and text in line for line in log.splitlines()), (
            f"{vm.name}'s vipdrain.log has no warning saying {text!r}"
        )


@then(parsers.parse('no VM\'s log mentions "{text}"'))
def no_log_mentions(lab: Lab, text: str) -> None:
    for vm in lab.vms:
        log = vm.layout.vipdrain_log.read_text()
        assert text not in log, f"{vm.name}'s vipdrain.log mentions {text!r}"
