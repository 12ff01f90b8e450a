"""vipdrain.metrics: from snapshots to metrics (pure), and the writers on a temp layout.

Metrics are read back the way Prometheus reads them: through prometheus_client's parser of the
exposition format, never by matching text.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import asdict
from pathlib import Path

import pytest
from fakes import job_config
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vipdrain import metrics
from vipdrain.drain import Drain, DrainArgs, DrainOutcome
from vipdrain.hold import set_hold
from vipdrain.layout import Layout
from vipdrain.metrics import HANDOFF_BUCKETS, Counters, Snapshot, VipSample
from vipdrain.model import DrainSettings, JobConfig, MetricsSettings
from vipdrain.notify import follow_fifo
from vipdrain.verdicts import Verdict, VipView

SELF = ipaddress.ip_address("192.0.2.10")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from exposition text."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def exposition(snapshot: Snapshot) -> str:
    return generate_latest(metrics.build_registry(snapshot)).decode()


def snap(*vips: VipSample, counters: Counters | None = None, **kw) -> Snapshot:
    return Snapshot(vips=vips, base_priority=kw.pop("base", 150), effective_priority=kw.pop("effective", 150),
                    hold_since=kw.pop("hold_since", {}), counters=counters or Counters(), **kw)


def test_per_vip_state_priority_holders_and_verdicts() -> None:
    found = samples(exposition(snap(
        VipSample("vip_1", "192.0.2.100", state="MASTER", priority=150, last_transition=1700.0, holders=2,
                  verdict="split brain"),
        VipSample("vip_2", "192.0.2.101", state="BACKUP", priority=150, last_transition=1600.0, holders=0,
                  verdict="unowned", forwarding=True),
        survey_time=1800.0,
    )))
    one, two = {"vip": "vip_1", "address": "192.0.2.100"}, {"vip": "vip_2", "address": "192.0.2.101"}
    assert value(found, "vipdrain_vip_state", **one, state="MASTER") == 1
    assert value(found, "vipdrain_vip_state", **one, state="BACKUP") == 0
    assert value(found, "vipdrain_vip_state", **two, state="BACKUP") == 1
    assert value(found, "vipdrain_vip_priority", **one) == 150
    assert value(found, "vipdrain_vip_last_transition_timestamp_seconds", **one) == 1700.0
    assert value(found, "vipdrain_vip_holders", **one) == 2
    assert value(found, "vipdrain_vip_split_brain", **one) == 1 and value(found, "vipdrain_vip_unowned", **one) == 0
    assert value(found, "vipdrain_vip_split_brain", **two) == 0 and value(found, "vipdrain_vip_unowned", **two) == 1
    assert value(found, "vipdrain_forwarding_armed", **two) == 1
    assert value(found, "vipdrain_survey_timestamp_seconds") == 1800.0


def test_nothing_recorded_yet_is_unknown_and_no_survey_means_no_verdict() -> None:
    found = samples(exposition(snap(VipSample("vip_1", "192.0.2.100"))))
    key = {"vip": "vip_1", "address": "192.0.2.100"}
    assert value(found, "vipdrain_vip_state", **key, state="UNKNOWN") == 1
    # No survey: no verdict at all rather than a reassuring 0 (an alert on absence can catch it).
    assert not any(name in ("vipdrain_vip_split_brain", "vipdrain_vip_holders") for name, _ in found)
    assert value(found, "vipdrain_drains_total", result="failed") == 0


def test_drains_count_by_result_and_handoffs_fill_the_histogram() -> None:
    counters = (Counters().with_drain("handed_over", 0.8).with_drain("handed_over", 2.5)
                .with_drain("failed", None).with_drain("nothing_held", None).with_drain("handed_over", 400.0))
    found = samples(exposition(snap(counters=counters)))
    assert value(found, "vipdrain_drains_total", result="handed_over") == 3
    assert value(found, "vipdrain_drains_total", result="failed") == 1
    assert value(found, "vipdrain_drains_total", result="proceeded_without_handoff") == 0
    assert value(found, "vipdrain_handoff_seconds_bucket", le="0.5") == 0
    assert value(found, "vipdrain_handoff_seconds_bucket", le="1.0") == 1
    assert value(found, "vipdrain_handoff_seconds_bucket", le="3.0") == 2
    assert value(found, "vipdrain_handoff_seconds_bucket", le="60.0") == 2
    assert value(found, "vipdrain_handoff_seconds_bucket", le="+Inf") == 3
    assert value(found, "vipdrain_handoff_seconds_count") == 3
    assert value(found, "vipdrain_handoff_seconds_sum") == pytest.approx(403.3)
    assert value(found, "vipdrain_last_handoff_seconds") == 400.0


def test_transitions_hold_and_priorities() -> None:
    counters = Counters().with_transition("vip_1", "FAULT").with_transition("vip_1", "FAULT")
    found = samples(exposition(snap(VipSample("vip_1", "192.0.2.100", state="FAULT"), counters=counters,
                                    effective=1, hold_since={"maintenance": 1234.5})))
    key = {"vip": "vip_1", "address": "192.0.2.100"}
    assert value(found, "vipdrain_vrrp_transitions_total", **key, state="FAULT") == 2
    assert value(found, "vipdrain_vrrp_transitions_total", **key, state="MASTER") == 0
    assert value(found, "vipdrain_hold_since_timestamp_seconds", reason="maintenance") == 1234.5
    assert value(found, "vipdrain_priority", kind="effective") == 1


def test_counters_survive_a_json_round_trip_and_other_buckets_restart_the_histogram() -> None:
    counters = Counters().with_drain("handed_over", 1.5).with_transition("vip_1", "MASTER")
    raw = json.loads(json.dumps(asdict(counters)))
    assert Counters.from_json(raw) == counters
    raw["handoff_buckets"] = [1, 2]
    again = Counters.from_json(raw)
    assert again.drains == {"handed_over": 1} and sum(again.handoff_buckets) == 0
    assert len(again.handoff_buckets) == len(HANDOFF_BUCKETS) + 1


# --- how a drain ended ---------------------------------------------------------------------------


def cfg_for(tmp_path: Path | None, peers: int = 1, **settings) -> JobConfig:
    return job_config(1, peers, priority=200, drain=DrainSettings(timeout=1.0),
                      metrics=MetricsSettings(textfile_dir=str(tmp_path) if tmp_path else None, **settings))


class HeldHere:
    """An observer for a drain that ends before it waits: the VIP is here, nothing else seen."""

    def __init__(self, cfg: JobConfig) -> None:
        self.cfg = cfg

    def views(self, own_priority: int) -> list[VipView]:
        return [VipView(vip=v, local=True, state="MASTER", peer_master=None, own_priority=own_priority)
                for v in self.cfg.vips]


def test_a_real_drain_without_peer_is_counted_as_proceeded_without_handoff(tmp_path: Path) -> None:
    """The result is read from the outcome the real drain builds."""
    cfg = cfg_for(None, peers=0)
    outcome = Drain(cfg, Layout(root=tmp_path), HeldHere(cfg)).run(DrainArgs(manual=False, action="job_changed"))
    assert metrics.drain_result(outcome) == "proceeded_without_handoff"


@pytest.mark.parametrize(("outcome", "expected"), [
    (None, "failed"),
    (DrainOutcome(0, "x handed over", handoff_seconds=1.2), "handed_over"),
    (DrainOutcome(0, "x handed over", verdicts=[Verdict(True, "ok")]), "handed_over"),  # dynamic call-back
    (DrainOutcome(-1, "handing over 1 VIP(s); BOSH calls back"), None),
    (DrainOutcome(0, "this VM holds none of its VIPs: nothing to hand over"), "nothing_held"),
    (DrainOutcome.proceeding("no peer", warning=""), "proceeded_without_handoff"),
])
def test_drain_result(outcome: DrainOutcome | None, expected: str | None) -> None:
    assert metrics.drain_result(outcome) == expected


# --- the writers on a temp layout ----------------------------------------------------------------


def read_textfile(directory: Path) -> dict:
    return samples((directory / metrics.TEXTFILE).read_text())


def test_transitions_from_the_fifo_update_the_textfile(tmp_path: Path) -> None:
    out = tmp_path / "textfile"
    out.mkdir()
    layout, cfg = Layout(root=tmp_path / "vm"), cfg_for(out)
    seen = []

    writer = metrics.TransitionWriter(layout, lambda: cfg)

    def hook(t) -> None:
        seen.append(t.instance)
        writer.put(t)

    follow_fifo(layout, ['INSTANCE "vip_1" BACKUP 200\n', 'GROUP "g" MASTER 0\n', 'INSTANCE "vip_1" MASTER 200\n'],
                on_transition=hook)
    writer.close()
    assert seen == ["vip_1", "vip_1"]  # a sync group's line is no VIP's transition
    found = read_textfile(out)
    key = {"vip": "vip_1", "address": "192.0.2.100"}
    assert value(found, "vipdrain_vip_state", **key, state="MASTER") == 1
    assert value(found, "vipdrain_vrrp_transitions_total", **key, state="BACKUP") == 1
    assert oct((out / metrics.TEXTFILE).stat().st_mode & 0o777) == oct(0o644)


def test_drain_counters_survive_the_process_and_show_the_hold(tmp_path: Path) -> None:
    out = tmp_path / "textfile"
    out.mkdir()
    layout, cfg = Layout(root=tmp_path / "vm"), cfg_for(out)
    set_hold(layout, add=("maintenance",), now=1000.0)
    metrics.record_drain(cfg, layout, DrainOutcome(0, "handed over", handoff_seconds=0.9))
    metrics.record_drain(cfg, layout, None)
    assert metrics.read_counters(layout).drains == {"handed_over": 1, "failed": 1}  # from the JSON file
    found = read_textfile(out)
    assert value(found, "vipdrain_drains_total", result="failed") == 1
    assert value(found, "vipdrain_handoff_seconds_count") == 1
    assert value(found, "vipdrain_hold_since_timestamp_seconds", reason="maintenance") == 1000.0
    assert value(found, "vipdrain_priority", kind="effective") == 1


def test_metrics_off_write_nothing(tmp_path: Path) -> None:
    layout, cfg = Layout(root=tmp_path / "vm"), cfg_for(None)
    metrics.record_drain(cfg, layout, None)
    assert not layout.metrics_counters_file.exists()
    assert metrics.refresh(cfg, layout) is None


def test_a_missing_textfile_dir_is_a_warning_never_an_error_and_never_created(tmp_path: Path, caplog) -> None:
    missing = tmp_path / "jobs" / "node_exporter" / "config"
    layout, cfg = Layout(root=tmp_path / "vm"), cfg_for(missing)
    with caplog.at_level(logging.WARNING, logger="vipdrain.metrics"):
        assert metrics.best_effort("recording the drain", lambda: metrics.record_drain(cfg, layout, None)) is None
    assert "vipdrain.metrics.textfile_dir" in caplog.text and str(missing) in caplog.text
    assert not missing.exists()


def test_a_corrupt_counters_file_counts_from_zero_with_a_warning(tmp_path: Path, caplog) -> None:
    layout = Layout(root=tmp_path)
    layout.metrics_counters_file.parent.mkdir(parents=True)
    layout.metrics_counters_file.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="vipdrain.metrics"):
        assert metrics.read_counters(layout) == Counters()
    assert "corrupt" in caplog.text


# --- the properties ------------------------------------------------------------------------------


@pytest.mark.parametrize(("props", "expected"), [
    ({"vipdrain.metrics.textfile_dir": "textfile"}, "vipdrain.metrics.textfile_dir: 'textfile' must be an absolute"),
    ({"vipdrain.metrics.survey_interval": 5}, "vipdrain.metrics.survey_interval: 5 must be 0 (no periodic survey) "
                                              "or 10..3600"),
])
def test_bad_metrics_properties(make_raw, problems, props, expected) -> None:
    found = problems(make_raw(props))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_metrics_are_off_by_default_and_blank_is_off(make_raw, parse) -> None:
    assert parse(make_raw({})).metrics == MetricsSettings()
    assert parse(make_raw({"vipdrain.metrics.textfile_dir": ""})).metrics.textfile_dir is None
    on = parse(make_raw({"vipdrain.metrics.textfile_dir": "/var/vcap/jobs/node_exporter/config",
                         "vipdrain.metrics.survey_interval": 0}))
    assert on.metrics == MetricsSettings("/var/vcap/jobs/node_exporter/config", 0.0)


# --- the callers never depend on the metrics -------------------------------------------------------


@pytest.fixture
def no_prometheus_client(monkeypatch):
    """prometheus_client cannot be imported (a package built without its wheel)."""
    import sys

    import vipdrain

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "vipdrain.metrics", raising=False)
    monkeypatch.delattr(vipdrain, "metrics", raising=False)


def test_the_notify_reader_records_transitions_without_prometheus_client(tmp_path, no_prometheus_client, capsys):
    from vipdrain import cli
    from vipdrain.notify import read_state

    fifo = tmp_path / "notify.fifo"  # a file stands in for the FIFO: the reader reads lines to EOF
    fifo.write_text('INSTANCE "vip_1" MASTER 200\n')
    assert cli.main(["notify-fifo", "--root", str(tmp_path), str(fifo)]) == 0
    assert read_state(Layout(root=tmp_path), "vip_1").state == "MASTER"
    assert "metrics: cannot import them" in capsys.readouterr().err


def test_a_drain_with_metrics_on_carries_on_without_prometheus_client(tmp_path, no_prometheus_client, caplog):
    from vipdrain import cli

    with caplog.at_level(logging.WARNING):
        cli._drain_metrics(cfg_for(tmp_path), Layout(root=tmp_path), None)
    assert "metrics: cannot import them" in caplog.text


def test_the_config_is_parsed_again_only_when_its_file_changed(tmp_path: Path) -> None:
    path = tmp_path / "vipdrain.yml"
    path.write_text("a")
    parsed = []

    def load(p: Path) -> JobConfig:
        parsed.append(p.read_text())
        return cfg_for(None)

    cache = metrics.ConfigCache(path, load)
    cache()
    cache()
    path.write_text("bb")
    cache()
    assert parsed == ["a", "bb"]
