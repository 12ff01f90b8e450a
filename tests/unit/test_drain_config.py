"""The BOSH drain never fails on a config it cannot load (issue 14): pre-start saves the config
that passed it; a drain whose config is invalid works with that one while keepalived runs (it is
what keepalived.conf was rendered from), and prints 0 when keepalived is not running (nothing to
hand over), saying why in vipdrain.log. A manual drain still refuses an invalid config."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from vipdrain import cli, keepalived, lifecycle
from vipdrain.cli import main
from vipdrain.errors import EXIT_INVALID_CONFIG, EXIT_OK, ConfigInvalid
from vipdrain.layout import Layout


@pytest.fixture
def layout(tmp_path, monkeypatch) -> Layout:
    monkeypatch.delenv("VIPDRAIN_ROOT", raising=False)
    return Layout(root=tmp_path / "vcap")


def write_config(layout: Layout, doc: dict[str, Any]) -> Path:
    path = layout.config_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


BAD = {"vipdrain.placement": "nearest"}


def test_invalid_config_and_no_keepalived_prints_0_and_logs_why(layout, make_raw, capfd):
    write_config(layout, make_raw(BAD))
    assert not keepalived.running(layout)
    assert main(["drain", "job_changed", "hash_changed", "--root", str(layout.root)]) == EXIT_OK
    assert capfd.readouterr().out == "0\n"
    log = layout.vipdrain_log.read_text()
    assert "vipdrain.placement: 'nearest' must be one of preferred, sticky" in log
    assert "keepalived is not running" in log and "returning 0" in log


def test_invalid_config_with_keepalived_running_uses_the_last_config_pre_start_passed(
        layout, make_raw, monkeypatch):
    good = make_raw({"keepalived.interface": "eth0"})
    layout.last_good_config.parent.mkdir(parents=True)
    layout.last_good_config.write_text(yaml.safe_dump(good))
    write_config(layout, make_raw(BAD))
    monkeypatch.setattr(keepalived, "running", lambda _layout: True)
    args = cli.build_parser().parse_args(["drain", "job_changed", "--root", str(layout.root)])
    cfg = cli._drain_config(args, layout, manual=False)
    assert cfg is not None and cfg.placement == "preferred" and str(cfg.vips[0].address) == "192.0.2.100"


def test_invalid_config_with_keepalived_running_and_nothing_saved_fails(layout, make_raw, monkeypatch, capfd):
    write_config(layout, make_raw(BAD))
    monkeypatch.setattr(keepalived, "running", lambda _layout: True)
    assert main(["drain", "job_changed", "hash_changed", "--root", str(layout.root)]) == EXIT_INVALID_CONFIG
    out, err = capfd.readouterr()
    assert out == "" and "vipdrain.placement: 'nearest'" in err


def test_manual_drain_still_refuses_an_invalid_config(layout, make_raw):
    write_config(layout, make_raw(BAD))
    args = cli.build_parser().parse_args(["drain", "--root", str(layout.root)])
    with pytest.raises(ConfigInvalid):
        cli._drain_config(args, layout, manual=True)


def test_pre_start_saves_the_config_it_passed(layout, make_raw, monkeypatch):
    monkeypatch.setattr(lifecycle, "pre_start", lambda cfg, layout, text: [])
    path = write_config(layout, make_raw({"keepalived.interface": "eth0", "keepalived.authentication": "s3cret",
                                          "keepalived.vrrp_version": 2}))
    assert main(["pre-start", "--root", str(layout.root)]) == EXIT_OK
    saved = layout.last_good_config
    assert saved.read_text() == path.read_text()
    # It holds the VRRP password, like the rendered file: root only.
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600


def test_pre_start_that_fails_keeps_the_previous_saved_config(layout, make_raw):
    layout.last_good_config.parent.mkdir(parents=True)
    layout.last_good_config.write_text("previous\n")
    write_config(layout, make_raw(BAD))
    assert main(["pre-start", "--root", str(layout.root)]) == EXIT_INVALID_CONFIG
    assert layout.last_good_config.read_text() == "previous\n"
