"""Fixtures of the lab tests: labs (always torn down), load clients and VIP observers on them.

    @pytest.mark.parametrize("lab", [{"nodes": 2}], indirect=True)
    def test_x(lab, client, observer): ...

`lab` takes `Lab.up` keyword arguments through indirect parametrisation (default: 3 nodes,
advert_int 0.2 s); `lab_factory` makes any number of labs. Teardown runs even after a failure or
Ctrl-C and checks that the run's namespaces are gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from vipdrain.lab.client import ClientRun
from vipdrain.lab.cluster import Lab
from vipdrain.lab.observer import VipObserver

LabFactory = Callable[..., Lab]


@pytest.fixture
def lab(request: pytest.FixtureRequest, lab_factory: LabFactory) -> Lab:
    """A running lab; parametrize indirectly with a dict of `Lab.up` arguments."""
    return lab_factory(**getattr(request, "param", {}))


@pytest.fixture
def client(lab: Lab) -> Iterator[Callable[..., ClientRun]]:
    """`client(rate=200, **ClientRun options) -> ClientRun`, already sending; stopped after the test."""
    runs: list[ClientRun] = []

    def start(**kwargs: Any) -> ClientRun:
        run = lab.client(**kwargs).start()
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()


@pytest.fixture
def observer(lab: Lab) -> Iterator[VipObserver]:
    """A started VIP observer on `lab` (addresses and ARP)."""
    with lab.observe(arp=True) as obs:
        yield obs
