"""features/rolling: rolling deploys (placements, node counts), a backup-only deploy, the default
advert_int, several VIPs."""

from __future__ import annotations

from pytest_bdd import parsers, scenarios, then
from rollout_support import BoshRun, Traffic

from vipdrain.lab.cluster import Lab

scenarios("rolling")


@then(parsers.parse("every VIP left {vm} during its drain"))
def every_vip_left_during_drain(lab: Lab, traffic: Traffic, deploy: BoshRun, vm: str) -> None:
    """Each VIP was seen on a peer (and no longer on `vm`) between the start and the end of
    `vm`'s first drain: one drain handed all of them over."""
    drains = deploy.steps(vm, "drain")
    assert drains, f"{vm} did not drain"
    drain = drains[0]
    for vip in lab.vips:
        left = next((c.time for c in traffic.observer.timeline(vip)
                     if c.time >= drain.start and c.holders and vm not in c.holders), None)
        assert left is not None and left <= drain.end, (
            f"{vip} did not leave {vm} during its drain ({drain.start:.3f}..{drain.end:.3f}): "
            f"{traffic.observer.timeline(vip)}"
        )
