"""vipdrain.render: the keepalived.conf a validated config gives, read block by block."""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from vipdrain.errors import RuntimeFailure
from vipdrain.layout import Layout
from vipdrain.priority import HOLD_WEIGHT, STICKY_BONUS
from vipdrain.render import (
    MAX_LINE_BYTES,
    notify_fifo_command,
    probe_command,
    render_keepalived_conf,
    split_smtp_server,
    unsafe_character,
)

PYTHON = shlex.quote(sys.executable)


def render(parse, make_raw, conf_layout, props=None, **kw):
    cfg = parse(make_raw(props, **kw))
    return cfg, render_keepalived_conf(cfg, conf_layout)


def test_global_defs(parse, make_raw, conf_layout, conf):
    _, text = render(parse, make_raw, conf_layout)
    g = conf(text).blocks["global_defs"]
    assert g.words("router_id") == [["haproxy-0"]]
    assert g.words("script_user") == [["root"]]
    assert "enable_script_security" in g.lines
    assert g.words("vrrp_garp_master_delay") == [["1"]] and g.words("vrrp_garp_master_repeat") == [["3"]]
    assert g.words("vrrp_garp_lower_prio_delay") == [["1"]] and g.words("vrrp_garp_lower_prio_repeat") == [["3"]]
    assert g.words("vrrp_higher_prio_send_advert") == [["true"]]
    assert g.words("vrrp_mcast_group4") == [["224.0.0.18"]] and g.words("vrrp_mcast_group6") == [["ff02::12"]]
    assert "notification_email" not in g.blocks


def test_a_healed_split_brain_is_re_announced_with_the_garp_properties(parse, make_raw, conf_layout, conf):
    # The loser of a split brain sends one last advert as it steps down; the survivor, hearing a
    # lower-priority master, re-announces the VIP with the bursts it sends on becoming MASTER.
    _, text = render(parse, make_raw, conf_layout, {"keepalived.garp.master_delay": 0,
                                                    "keepalived.garp.master_repeat": 5})
    g = conf(text).blocks["global_defs"]
    assert g.words("vrrp_higher_prio_send_advert") == [["true"]]
    assert g.words("vrrp_garp_lower_prio_repeat") == [["5"]] and g.words("vrrp_garp_lower_prio_delay") == [["0"]]
    # Nothing per instance: an operator's `garp_lower_prio_repeat` in extra.vrrp_instance still wins.
    assert "lower_prio" not in "\n".join(conf(text).blocks["vrrp_instance vip_1"].lines)


def test_one_vrrp_instance_per_vip(parse, make_raw, conf_layout, conf):
    cfg, text = render(parse, make_raw, conf_layout, {
        "keepalived.vip": None,
        "keepalived.virtual_router_id": 40,
        "keepalived.vips": ["192.0.2.100", {"address": "2001:db8::100", "interface": "eth1"}, "192.0.2.102"],
    })
    blocks = conf(text).blocks
    assert [h for h in blocks if h.startswith("vrrp_instance")] == [
        "vrrp_instance vip_1", "vrrp_instance vip_2", "vrrp_instance vip_3"]
    first, second = blocks["vrrp_instance vip_1"], blocks["vrrp_instance vip_2"]
    assert first.words("state") == [["BACKUP"]] and second.words("state") == [["BACKUP"]]
    assert first.words("interface") == [["eth0"]] and second.words("interface") == [["eth1"]]
    assert first.words("virtual_router_id") == [["40"]] and second.words("virtual_router_id") == [["41"]]
    assert first.words("priority") == [[str(cfg.priority)]]
    assert first.words("advert_int") == [["1"]] and first.words("version") == [["3"]]
    assert first.blocks["virtual_ipaddress"].lines == ["192.0.2.100/32 dev eth0"]
    assert second.blocks["virtual_ipaddress"].lines == ["2001:db8::100/128 dev eth1"]
    assert first.blocks["track_script"].lines == ["vipdrain_healthcheck"]
    assert first.blocks["track_file"].lines == ["vipdrain_hold", "vipdrain_maintenance"]


def test_never_nopreempt_and_never_master(parse, make_raw, conf_layout, conf):
    _, text = render(parse, make_raw, conf_layout, {"vipdrain.placement": "sticky"})
    vip = conf(text).blocks["vrrp_instance vip_1"]
    assert vip.words("nopreempt") == [] and vip.words("state") == [["BACKUP"]]


def test_health_check_means_fault_and_runs_the_probe(parse, make_raw, conf_layout, conf):
    _, text = render(parse, make_raw, conf_layout, {"vipdrain.haproxy.probe": "127.0.0.1:8080",
                                                    "keepalived.healthcheck.timeout": 2})
    script = conf(text).blocks["vrrp_script vipdrain_healthcheck"]
    assert script.words("weight") == [["0"]]
    assert (script.words("interval"), script.words("timeout"), script.words("fall"), script.words("rise")) == (
        [["1"]], [["2"]], [["2"]], [["2"]])
    (command,) = script.words("script")
    # The job's bash check (no Python per check), 0.7 of keepalived's timeout, failures logged
    # to keepalived's own log.
    assert " ".join(command) == (
        f'"{conf_layout.job_dir}/bin/healthcheck --pid-file /var/vcap/sys/run/bpm/haproxy/haproxy.pid '
        f'--tcp 127.0.0.1:8080 --timeout 1.4 --log {conf_layout.log_dir}/keepalived.log"')


def test_custom_health_check_is_used_as_given(parse, make_raw, conf_layout, conf):
    _, text = render(parse, make_raw, conf_layout, {"keepalived.healthcheck.command": "/bin/check 'a b' c"})
    script = conf(text).blocks["vrrp_script vipdrain_healthcheck"]
    assert script.lines[0] == "script \"/bin/check 'a b' c\""


def test_probe_is_the_jobs_bash_check_whatever_runs_vipdrain(parse, make_raw, tmp_path):
    cfg = parse(make_raw())
    layout = Layout(root=tmp_path, vipdrain_cmd="/var/vcap/jobs/keepalived/bin/vipdrain")
    assert probe_command(cfg, layout).startswith(f"{tmp_path}/jobs/keepalived/bin/healthcheck --pid-file ")
    assert notify_fifo_command(layout) == f"/var/vcap/jobs/keepalived/bin/vipdrain notify-fifo --root {tmp_path}"


def test_paths_with_spaces_are_single_quoted(parse, make_raw, tmp_path):
    layout = Layout(root=tmp_path / "my root", vipdrain_cmd="'/opt/my venv/bin/python' -m vipdrain")
    assert notify_fifo_command(layout) == f"'/opt/my venv/bin/python' -m vipdrain notify-fifo --root '{layout.root}'"
    command = probe_command(parse(make_raw()), layout)
    assert command.startswith(f"'{layout.root}/jobs/keepalived/bin/healthcheck' ")
    assert command.endswith(f" --log '{layout.root}/sys/log/keepalived/keepalived.log'")


def test_empty_vipdrain_command_falls_back_to_this_python(parse, make_raw, tmp_path):
    assert notify_fifo_command(Layout(root=tmp_path)).startswith(f"{PYTHON} -m vipdrain notify-fifo ")


def test_hold_track_file_is_never_overwritten(parse, make_raw, conf_layout, conf):
    _, text = render(parse, make_raw, conf_layout)
    hold = conf(text).blocks["track_file vipdrain_hold"]
    assert hold.lines == [f'file "{conf_layout.hold_track_file}"', f"weight {HOLD_WEIGHT}", "init_file 0"]


def test_maintenance_track_file_is_on_disk_and_never_overwritten(parse, make_raw, conf_layout, conf):
    """Maintenance outlives a reboot: its track file is under data/, not the sys/run tmpfs."""
    _, text = render(parse, make_raw, conf_layout)
    maintenance = conf(text).blocks["track_file vipdrain_maintenance"]
    assert maintenance.lines == [f'file "{conf_layout.maintenance_track_file}"', f"weight {HOLD_WEIGHT}",
                                 "init_file 0"]
    assert conf_layout.maintenance_track_file.is_relative_to(conf_layout.data_dir)


def test_sticky_adds_a_holder_track_file_per_vip(parse, make_raw, conf_layout, conf):
    _, text = render(parse, make_raw, conf_layout, {
        "vipdrain.placement": "sticky", "keepalived.vip": None, "keepalived.vips": ["192.0.2.100", "192.0.2.101"]})
    blocks = conf(text).blocks
    for name in ("vip_1", "vip_2"):
        holder = blocks[f"track_file holder_{name}"]
        assert holder.lines == [f'file "{conf_layout.holder_track_file(name)}"', f"weight {STICKY_BONUS}",
                                "init_file 0 overwrite"]
        assert blocks[f"vrrp_instance {name}"].blocks["track_file"].lines == [
            "vipdrain_hold", "vipdrain_maintenance", f"holder_{name}"]


def test_preferred_has_no_holder_files(parse, make_raw, conf_layout, conf):
    _, text = render(parse, make_raw, conf_layout)
    root = conf(text)
    assert [h for h in root.blocks if h.startswith("track_file")] == [
        "track_file vipdrain_hold", "track_file vipdrain_maintenance"]
    assert root.blocks["vrrp_instance vip_1"].blocks["track_file"].lines == ["vipdrain_hold", "vipdrain_maintenance"]


def test_transitions_go_through_one_ordered_fifo(parse, make_raw, conf_layout, conf):
    _, text = render(parse, make_raw, conf_layout)
    root = conf(text)
    defs = root.blocks["global_defs"].lines
    assert f'vrrp_notify_fifo "{conf_layout.notify_fifo}"' in defs
    assert f'vrrp_notify_fifo_script "{PYTHON} -m vipdrain notify-fifo --root {conf_layout.root}"' in defs
    assert not [line for line in root.blocks["vrrp_instance vip_1"].lines if line.startswith("notify")]


def test_operator_hooks_are_rendered_per_instance(parse, make_raw, conf_layout, conf):
    _, text = render(parse, make_raw, conf_layout, {
        "keepalived.notify.master": "/var/vcap/jobs/eip/bin/claim 192.0.2.100",
        "keepalived.notify.fault": "/usr/bin/logger 'vip fault'",
    })
    lines = conf(text).blocks["vrrp_instance vip_1"].lines
    hooks = [line for line in lines if line.startswith("notify")]
    assert hooks[:2] == ['notify_master "/var/vcap/jobs/eip/bin/claim 192.0.2.100"',
                         "notify_fault \"/usr/bin/logger 'vip fault'\""]
    assert len(hooks) == 2


def test_multicast_source_is_the_instance_ip_for_its_family(parse, make_raw, conf_layout, conf):
    _, text = render(parse, make_raw, conf_layout, {
        "keepalived.vip": None, "keepalived.vips": ["192.0.2.100", "2001:db8::100"]})
    blocks = conf(text).blocks
    assert blocks["vrrp_instance vip_1"].words("mcast_src_ip") == [["192.0.2.10"]]
    # An IPv4 instance has no IPv6 address to offer: keepalived uses the link-local one.
    assert blocks["vrrp_instance vip_2"].words("mcast_src_ip") == []
    assert blocks["vrrp_instance vip_2"].words("version") == [["3"]]


def test_explicit_source_address(parse, make_raw, conf_layout, conf):
    _, text = render(parse, make_raw, conf_layout, {"keepalived.source_address": "192.0.2.20"})
    assert conf(text).blocks["vrrp_instance vip_1"].words("mcast_src_ip") == [["192.0.2.20"]]


def test_unicast_peers_by_family(parse, make_raw, conf_layout, conf):
    _, text = render(parse, make_raw, conf_layout, {
        "keepalived.unicast": True,
        "keepalived.vip": None,
        "keepalived.vips": ["192.0.2.100", "2001:db8::100"],
        "keepalived.unicast_peers": ["192.0.2.11", "2001:db8::11", "192.0.2.12"],
    })
    root = conf(text)
    v4, v6 = root.blocks["vrrp_instance vip_1"], root.blocks["vrrp_instance vip_2"]
    assert v4.words("unicast_src_ip") == [["192.0.2.10"]] and v4.blocks["unicast_peer"].lines == [
        "192.0.2.11", "192.0.2.12"]
    assert v6.words("unicast_src_ip") == [] and v6.blocks["unicast_peer"].lines == ["2001:db8::11"]
    assert "mcast_src_ip" not in text and "vrrp_mcast_group" not in text


def test_authentication_only_with_v2(parse, make_raw, conf_layout, conf):
    _, text = render(parse, make_raw, conf_layout, {
        "keepalived.vrrp_version": 2, "keepalived.authentication": "s3cret", "keepalived.advert_int": 2})
    vip = conf(text).blocks["vrrp_instance vip_1"]
    assert vip.blocks["authentication"].lines == ["auth_type PASS", "auth_pass s3cret"]
    assert vip.words("version") == [["2"]] and vip.words("advert_int") == [["2"]]


def test_fractional_advert_int(parse, make_raw, conf_layout, conf):
    _, text = render(parse, make_raw, conf_layout, {"keepalived.advert_int": 0.05})
    assert conf(text).blocks["vrrp_instance vip_1"].words("advert_int") == [["0.05"]]


def test_email(parse, make_raw, conf_layout, conf):
    _, text = render(parse, make_raw, conf_layout, {
        "keepalived.notification_email.to": ["ops@example.com", "oncall@example.org"],
        "keepalived.notification_email.from": "keepalived@example.com",
        "keepalived.notification_email.smtp_server": "192.0.2.25:2525",
    })
    root = conf(text)
    g = root.blocks["global_defs"]
    assert g.blocks["notification_email"].lines == ["ops@example.com", "oncall@example.org"]
    assert g.words("notification_email_from") == [["keepalived@example.com"]]
    assert g.words("smtp_server") == [["192.0.2.25", "2525"]]
    assert g.words("smtp_connect_timeout") == [["30"]]
    assert root.blocks["vrrp_instance vip_1"].words("smtp_alert") == [["true"]]


def test_escape_hatch_lines_land_in_their_blocks(parse, make_raw, conf_layout, conf):
    _, text = render(parse, make_raw, conf_layout, {
        "keepalived.extra.global_defs": ["vrrp_garp_interval 0.001"],
        "keepalived.extra.vrrp_instance": ["dont_track_primary", "garp_lower_prio_repeat 2"],
    })
    root = conf(text)
    assert root.blocks["global_defs"].lines[-1] == "vrrp_garp_interval 0.001"
    assert root.blocks["vrrp_instance vip_1"].lines[-2:] == ["dont_track_primary", "garp_lower_prio_repeat 2"]


def test_rendering_is_deterministic(parse, make_raw, conf_layout):
    props = {"keepalived.vip": None, "keepalived.vips": ["192.0.2.100", "192.0.2.101"],
             "vipdrain.placement": "sticky", "keepalived.unicast": True}
    assert render(parse, make_raw, conf_layout, props)[1] == render(parse, make_raw, conf_layout, props)[1]


def test_without_a_health_check(parse, make_raw, conf_layout, conf):
    cfg = replace(parse(make_raw()), healthcheck=None)
    root = conf(render_keepalived_conf(cfg, conf_layout))
    assert "vrrp_script vipdrain_healthcheck" not in root.blocks
    assert "track_script" not in root.blocks["vrrp_instance vip_1"].blocks


def test_a_layout_path_keepalived_cannot_read_is_refused(parse, make_raw, tmp_path):
    layout = Layout(root=tmp_path / 'quote"dir', vipdrain_cmd="python3 -m vipdrain")
    with pytest.raises(RuntimeFailure, match="cannot render"):
        render_keepalived_conf(parse(make_raw()), layout)


def test_a_line_keepalived_would_crash_on_is_refused(parse, make_raw, tmp_path):
    layout = Layout(root=tmp_path / ("d" * 1000), vipdrain_cmd="python3 -m vipdrain")
    with pytest.raises(RuntimeFailure, match=f"keepalived 2.2 crashes on lines over {MAX_LINE_BYTES} bytes"):
        render_keepalived_conf(parse(make_raw()), layout)


def test_every_line_fits(parse, make_raw, conf_layout):
    _, text = render(parse, make_raw, conf_layout, {"keepalived.healthcheck.command": "/bin/" + "x" * 900})
    assert max(len(line.encode()) for line in text.splitlines()) <= MAX_LINE_BYTES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.25", ("192.0.2.25", None)),
        ("192.0.2.25:587", ("192.0.2.25", 587)),
        ("smtp.example.com", ("smtp.example.com", None)),
        ("2001:db8::25", ("2001:db8::25", None)),
        ("[2001:db8::25]:25", ("2001:db8::25", 25)),
    ],
)
def test_split_smtp_server(text, expected):
    assert split_smtp_server(text) == expected


@pytest.mark.parametrize("text", ["", "smtp example", "a:0", "a:b", "[::1", "smtp}", "-x"])
def test_split_smtp_server_refuses(text):
    with pytest.raises(ValueError):
        split_smtp_server(text)


@pytest.mark.parametrize(
    ("text", "allowed", "reason"),
    [
        ("plain words ok", "", None),
        ("a 'b c'", "'", None),
        ("a 'b c'", "", "contains \"'\", which keepalived.conf reads as a quote"),
        ("a\nb", "", "contains a line break"),
        ("a\rb", "", "contains a line break"),
        ("a\x00b", "", "contains the control character '\\x00'"),
        ("a\u2028b", "", "contains the control character"),
        ("a ! b", "", "contains '!', which keepalived.conf reads as a comment"),
        ("${_PWD}", "", "contains '$', which keepalived.conf reads as parameter substitution"),
        ("a\\b", "", "contains '\\\\', which keepalived.conf reads as an escape"),
    ],
)
def test_unsafe_character(text, allowed, reason):
    found = unsafe_character(text, allowed)
    assert found == reason if reason is None else found.startswith(reason)


def test_layout_paths_render_as_given(parse, make_raw, tmp_path: Path):
    layout = Layout(root=tmp_path, vipdrain_cmd="python3 -m vipdrain")
    text = render_keepalived_conf(parse(make_raw()), layout)
    assert f'file "{tmp_path}/sys/run/keepalived/hold.track"' in text
