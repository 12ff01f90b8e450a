"""The metrics on real keepalived: scraped from each lab VM's textfile, the file node_exporter's
textfile collector would read, through prometheus_client's parser of the exposition format.

Each VM gets its own textfile directory (`vipdrain.metrics.textfile_dir`). The notify reader that
keepalived runs writes the file on every transition, the drain after its handoff, and
`vipdrain metrics` after a survey of the holders; the tests see the values change through a drain
and a split brain. Outcomes only, with generous deadlines.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vipdrain.lab.cluster import VM, Lab
from vipdrain.lab.plan import LAB_PRESERVE_GRACE
from vipdrain.metrics import TEXTFILE
from vipdrain.waiting import wait_until

pytestmark = pytest.mark.lab

BOSH = ("job_changed", "hash_changed", "haproxy")


def enable_metrics(lab: Lab) -> None:
    """Every VM writes its metrics to <root>/textfile (a new config: the notify reader reads it
    at its next transition, the drain and `vipdrain metrics` at their start)."""
    for vm in lab.vms:
        directory = textfile_dir(vm)
        directory.mkdir()
        vm.write_config({"vipdrain": {"metrics": {"textfile_dir": str(directory)}}})


def textfile_dir(vm: VM) -> Path:
    return vm.root / "textfile"


def scrape(vm: VM) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample, sorted labels) -> value, as Prometheus would read the VM's textfile ({} if absent)."""
    try:
        text = (textfile_dir(vm) / TEXTFILE).read_text()
    except FileNotFoundError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric(vm: VM, name: str, **labels: str) -> float | None:
    return scrape(vm).get((name, tuple(sorted(labels.items()))))


def vip_labels(lab: Lab) -> dict[str, str]:
    vip = lab.vips[0]
    name = lab.instance_name(vip)
    assert name is not None
    return {"vip": name, "address": vip}


def survey(vm: VM) -> None:
    proc = vm.vipdrain("metrics", check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("lab", [{"nodes": 2}], indirect=True)
def test_a_drain_is_counted_and_its_handoff_recorded(lab: Lab) -> None:
    enable_metrics(lab)
    vm0, vm1 = lab.vms
    key = vip_labels(lab)
    survey(vm0)
    assert metric(vm0, "vipdrain_vip_state", **key, state="MASTER") == 1
    assert metric(vm0, "vipdrain_vip_holders", **key) == 1
    assert metric(vm0, "vipdrain_drains_total", result="handed_over") == 0
    assert metric(vm0, "vipdrain_handoff_seconds_count") == 0
    master_before = metric(vm1, "vipdrain_vrrp_transitions_total", **key, state="MASTER") or 0

    proc = vm0.vipdrain("drain", *BOSH, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{LAB_PRESERVE_GRACE}\n"  # the drain contract holds with metrics on

    assert metric(vm0, "vipdrain_drains_total", result="handed_over") == 1
    assert metric(vm0, "vipdrain_handoff_seconds_count") == 1
    last = metric(vm0, "vipdrain_last_handoff_seconds")
    assert last is not None and 0 < last < 30
    assert metric(vm0, "vipdrain_hold_since_timestamp_seconds", reason="drain") is not None
    assert metric(vm0, "vipdrain_priority", kind="effective") == 1
    # Nobody ran `vipdrain metrics` on vm1: its notify reader wrote the new state itself.
    assert wait_until(lambda: metric(vm1, "vipdrain_vip_state", **key, state="MASTER") == 1, budget=10, step=0.1)
    assert metric(vm1, "vipdrain_vrrp_transitions_total", **key, state="MASTER") == master_before + 1
    assert wait_until(lambda: metric(vm0, "vipdrain_vip_state", **key, state="BACKUP") == 1, budget=10, step=0.1)


@pytest.mark.parametrize("lab", [{"nodes": 2}], indirect=True)
def test_a_split_brain_sets_the_verdict_on_both_sides_and_clears_when_it_heals(lab: Lab) -> None:
    enable_metrics(lab)
    vip = lab.vips[0]
    key = vip_labels(lab)
    for vm in lab.vms:
        survey(vm)
        assert metric(vm, "vipdrain_vip_split_brain", **key) == 0, vm

    lab.faults.drop_vrrp(*lab.vms)
    try:
        assert wait_until(lambda: lab.holders(vip) == ["vm0", "vm1"], budget=15, step=0.05)
        for vm in lab.vms:
            survey(vm)
            assert metric(vm, "vipdrain_vip_split_brain", **key) == 1, vm
            assert metric(vm, "vipdrain_vip_holders", **key) == 2, vm
            assert metric(vm, "vipdrain_vip_state", **key, state="MASTER") == 1, vm
    finally:
        lab.faults.restore_vrrp(*lab.vms)

    lab.wait_holder(vip, "vm0", timeout=15)
    for vm in lab.vms:
        survey(vm)
        assert metric(vm, "vipdrain_vip_split_brain", **key) == 0, vm
        assert metric(vm, "vipdrain_vip_holders", **key) == 1, vm


@pytest.mark.parametrize("lab", [{"nodes": 2}], indirect=True)
def test_the_notify_reader_surveys_the_holders_itself(lab: Lab) -> None:
    """`vipdrain.metrics.survey_interval`: nobody runs `vipdrain metrics`, yet the holders appear.
    The backup's keepalived is restarted so that its notify reader starts with metrics on."""
    enable_metrics(lab)
    vm1 = lab.vms[1]
    key = vip_labels(lab)
    assert vm1.stop_keepalived()
    vm1.start_keepalived()
    assert wait_until(lambda: metric(vm1, "vipdrain_vip_holders", **key) == 1, budget=20, step=0.2)
    assert metric(vm1, "vipdrain_vip_split_brain", **key) == 0
    assert metric(vm1, "vipdrain_survey_timestamp_seconds") is not None
    assert lab.holders(lab.vips[0]) == ["vm0"]
