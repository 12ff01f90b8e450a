"""`vipdrain check` and `vipdrain render` through vipdrain.cli.main: exit codes, stderr, files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from vipdrain.cli import main
from vipdrain.errors import EXIT_INVALID_CONFIG, EXIT_OK, EXIT_RUNTIME

EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "vipdrain" / "examples" / "example.yml"


def write(tmp_path: Path, doc: dict[str, Any], name: str = "vipdrain.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(autouse=True)
def _own_python(monkeypatch):
    # Scripts in the rendered file call this interpreter, whatever the caller's environment says.
    monkeypatch.delenv("VIPDRAIN_CMD", raising=False)
    monkeypatch.delenv("VIPDRAIN_ROOT", raising=False)


def test_check_ok(tmp_path, raw_config, capsys):
    assert main(["check", "--config", str(write(tmp_path, raw_config))]) == EXIT_OK
    assert capsys.readouterr().err.startswith("ok: 1 VIP(s)")


def test_check_the_example(capsys):
    assert main(["check", "--config", str(EXAMPLE)]) == EXIT_OK


def test_check_reports_every_problem(tmp_path, make_raw, capsys):
    doc = make_raw({"keepalived.vip": "192.0.2.0/24", "keepalived.virtual_router_id": 300,
                    "keepalived.vrrp_version": 2, "keepalived.advert_int": 0.5,
                    "keepalived.virtual_routerid": 4}, spec={"ip": None})
    assert main(["check", "--config", str(write(tmp_path, doc))]) == EXIT_INVALID_CONFIG
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0] == "vipdrain: invalid configuration (5 problem(s)):"
    assert sorted(lines[1:]) == sorted([
        "  - keepalived.vip: '192.0.2.0/24' must be a VIP address without a prefix length (a single host, "
        "not a network)",
        "  - keepalived.virtual_router_id: 300 is out of range 1..255",
        "  - keepalived.advert_int: 0.5 must be whole seconds 1..255 with VRRP version 2",
        "  - keepalived.virtual_routerid: 4 is not a known property (did you mean keepalived.virtual_router_id?)",
        "  - spec.ip: is required: the instance's IP address",
    ])


def test_check_unreadable_file(tmp_path, capsys):
    missing = tmp_path / "missing.yml"
    assert main(["check", "--config", str(missing)]) == EXIT_INVALID_CONFIG
    assert f"{missing}: cannot be read" in capsys.readouterr().err


def test_check_reads_the_config_under_root(tmp_path, raw_config):
    config = tmp_path / "jobs" / "keepalived" / "config" / "vipdrain.yml"
    config.parent.mkdir(parents=True)
    config.write_text(yaml.safe_dump(raw_config))
    assert main(["check", "--root", str(tmp_path)]) == EXIT_OK


def test_render_to_stdout(tmp_path, raw_config, capsys):
    root = tmp_path / "vcap"
    assert main(["render", "--config", str(write(tmp_path, raw_config)), "--root", str(root)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "vrrp_instance vip_1 {" in out
    assert f'file "{root}/sys/run/keepalived/hold.track"' in out


def test_render_out_writes_a_checked_file(tmp_path, make_raw, vrrp_interface, keepalived_bin, conf_layout, capsys):
    doc = make_raw({"keepalived.interface": vrrp_interface})
    out = tmp_path / "data" / "keepalived.conf"
    # conf_layout's root has bin/healthcheck: keepalived -t rejects a track script that does not exist.
    code = main(["render", "--config", str(write(tmp_path, doc)), "--root", str(conf_layout.root), "--out", str(out)])
    assert code == EXIT_OK, capsys.readouterr().err
    assert f"interface {vrrp_interface}" in out.read_text()


def test_render_out_writes_nothing_for_an_invalid_config(tmp_path, make_raw, capsys):
    out = tmp_path / "data" / "keepalived.conf"
    doc = make_raw({"keepalived.extra.vrrp_instance": ["nopreempt"]})
    code = main(["render", "--config", str(write(tmp_path, doc)), "--out", str(out)])
    assert code == EXIT_INVALID_CONFIG
    assert "keepalived.extra.vrrp_instance[0]: 'nopreempt' sets nopreempt" in capsys.readouterr().err
    assert not out.exists() and not out.parent.exists()


def test_render_out_keeps_the_old_file_when_keepalived_rejects(tmp_path, make_raw, keepalived_bin, capsys):
    out = tmp_path / "keepalived.conf"
    out.write_text("previous\n")
    doc = make_raw({"keepalived.interface": "vipdrainnone0"})
    code = main(["render", "--config", str(write(tmp_path, doc)), "--root", str(tmp_path), "--out", str(out)])
    assert code == EXIT_RUNTIME
    err = capsys.readouterr().err
    assert "keepalived -t rejected the configuration" in err and "vipdrainnone0" in err
    assert out.read_text() == "previous\n"
