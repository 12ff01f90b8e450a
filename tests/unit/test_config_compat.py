"""Drop-in for haproxy-boshrelease's keepalived job (issue 14): each of its properties is accepted
with its meaning, and each one set gives exactly one warning naming the vipdrain property to use.

The job matched is jobs/keepalived/spec of cloudfoundry/haproxy-boshrelease, last changed in
09a4539975acb92162e5414b1819457e9b6cb5e7 ("Allow configuring dont_track_primary for
keepalived"), unchanged at c8180eddb84b78c107b19f4c6191616120c05d21: keepalived.vip,
healthcheck_name (default check_haproxy), healthcheck_command (default `killall -0 haproxy`),
interface (default auto), virtual_router_id (default 1), dont_track_primary (default false).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from vipdrain import keepalived
from vipdrain.cli import main
from vipdrain.errors import EXIT_OK
from vipdrain.layout import Layout
from vipdrain.render import HEALTHCHECK_SCRIPT, render_keepalived_conf

#: haproxy-boshrelease's defaults, spelled out as a manifest may carry them.
DEFAULTS: dict[str, Any] = {
    "keepalived.vip": "192.0.2.100",
    "keepalived.healthcheck_name": "check_haproxy",
    "keepalived.healthcheck_command": "killall -0 haproxy",
    "keepalived.interface": "auto",
    "keepalived.virtual_router_id": 1,
    "keepalived.dont_track_primary": False,
}
LAYOUT = Layout(root=Path("/var/vcap"), vipdrain_cmd=f"{sys.executable} -m vipdrain")


def test_defaults_spelled_out_are_accepted_with_one_warning_each(make_raw, parse):
    cfg = parse(make_raw(DEFAULTS))
    assert [(v.address.exploded, v.virtual_router_id, v.interface) for v in cfg.vips] == [("192.0.2.100", 1, "eth0")]
    # `killall -0 haproxy` asks whether a haproxy process lives; vipdrain's probe asks that of the
    # pid file and also connects to the frontend: the default check stays.
    assert cfg.healthcheck is not None and cfg.healthcheck.command == ""
    assert cfg.extra_instance_options == ()
    assert len(cfg.warnings) == 3
    by_property = {w.split(":", 1)[0]: w for w in cfg.warnings}
    assert set(by_property) == {"keepalived.healthcheck_name", "keepalived.healthcheck_command",
                                "keepalived.dont_track_primary"}
    assert "keepalived.healthcheck.command" in by_property["keepalived.healthcheck_command"]
    assert "is ignored" in by_property["keepalived.healthcheck_name"]
    assert by_property["keepalived.dont_track_primary"] == (
        "keepalived.dont_track_primary: false is haproxy-boshrelease's default and keepalived's: remove it "
        "(keepalived.extra.vrrp_instance: [dont_track_primary] turns the option on)")


def test_unset_legacy_properties_give_no_warning(make_raw, parse):
    assert parse(make_raw({"keepalived.vip": "192.0.2.100"})).warnings == ()


def test_a_custom_healthcheck_command_becomes_the_check(make_raw, parse, conf):
    cfg = parse(make_raw({"keepalived.healthcheck_command": "/var/vcap/jobs/haproxy/bin/healthy --strict"}))
    assert cfg.healthcheck is not None and cfg.healthcheck.command == "/var/vcap/jobs/haproxy/bin/healthy --strict"
    assert cfg.warnings == (
        "keepalived.healthcheck_command: haproxy-boshrelease's name, used as keepalived.healthcheck.command "
        "(exit 0 = healthy; a failing check puts this VM in FAULT; its default, killall -0 haproxy, keeps "
        "vipdrain's own check, which covers it): set keepalived.healthcheck.command instead",)
    script = conf(render_keepalived_conf(cfg, LAYOUT)).blocks[f"vrrp_script {HEALTHCHECK_SCRIPT}"]
    assert script.words("script") == [['"/var/vcap/jobs/haproxy/bin/healthy', '--strict"']]


def test_a_relative_healthcheck_command_like_the_default_is_fine(make_raw, parse):
    # keepalived looks a bare program name up in its PATH, as haproxy-boshrelease relies on.
    cfg = parse(make_raw({"keepalived.healthcheck_command": "pidof haproxy"}))
    assert cfg.healthcheck is not None and cfg.healthcheck.command == "pidof haproxy"


def test_both_health_check_names_must_agree(make_raw, parse, problems):
    same = parse(make_raw({"keepalived.healthcheck_command": "/bin/true",
                           "keepalived.healthcheck.command": "/bin/true"}))
    assert same.healthcheck is not None and same.healthcheck.command == "/bin/true" and len(same.warnings) == 1
    assert problems(make_raw({"keepalived.healthcheck_command": "/bin/false",
                              "keepalived.healthcheck.command": "/bin/true"})) == [
        "keepalived.healthcheck_command: '/bin/false' differs from keepalived.healthcheck.command ('/bin/true'): "
        "set only keepalived.healthcheck.command"]


def test_dont_track_primary_true_sets_keepalived_option(make_raw, parse, conf):
    cfg = parse(make_raw({"keepalived.dont_track_primary": True}))
    assert cfg.extra_instance_options == ("dont_track_primary",)
    assert cfg.warnings == ("keepalived.dont_track_primary: haproxy-boshrelease's name; true adds keepalived's "
                            "dont_track_primary to every VRRP instance: set keepalived.extra.vrrp_instance: "
                            "[dont_track_primary] instead",)
    instance = conf(render_keepalived_conf(cfg, LAYOUT)).blocks["vrrp_instance vip_1"]
    assert "dont_track_primary" in instance.lines


def test_dont_track_primary_is_not_doubled(make_raw, parse):
    cfg = parse(make_raw({"keepalived.dont_track_primary": True,
                          "keepalived.extra.vrrp_instance": ["dont_track_primary"]}))
    assert cfg.extra_instance_options == ("dont_track_primary",)


@pytest.mark.parametrize(("props", "expected"), [
    ({"keepalived.dont_track_primary": "yes"},
     "keepalived.dont_track_primary: 'yes' must be a boolean (true or false), not a string"),
    ({"keepalived.healthcheck_command": ["killall", "-0"]},
     "keepalived.healthcheck_command: ['killall', '-0'] must be a string, not a list"),
    ({"keepalived.healthcheck_command": "killall -0 haproxy $X"},
     "keepalived.healthcheck_command: 'killall -0 haproxy $X' contains '$'"),
    ({"keepalived.healthcheck_name": 7}, "keepalived.healthcheck_name: 7 must be a string, not a number"),
])
def test_legacy_values_are_type_checked(make_raw, problems, props, expected):
    found = problems(make_raw(props))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_keepalived_t_accepts_the_mapped_options(keepalived_bin, make_raw, parse, vrrp_interface):
    cfg = parse(make_raw({**DEFAULTS, "keepalived.interface": vrrp_interface, "keepalived.dont_track_primary": True,
                          "keepalived.healthcheck_command": "/bin/true"}))
    keepalived.check_config(render_keepalived_conf(cfg, LAYOUT))


def test_check_prints_each_warning_once(tmp_path, make_raw, capsys):
    path = tmp_path / "vipdrain.yml"
    path.write_text(yaml.safe_dump(make_raw({**DEFAULTS, "keepalived.interface": "eth0"})))
    assert main(["check", "--config", str(path)]) == EXIT_OK
    captured = capsys.readouterr()
    assert captured.out == ""
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3 and len(set(warnings)) == 3
    for name in ("keepalived.healthcheck_name", "keepalived.healthcheck_command", "keepalived.dont_track_primary"):
        assert sum(w.startswith(f"warning: {name}:") for w in warnings) == 1
