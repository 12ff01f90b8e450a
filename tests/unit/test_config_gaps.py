"""Validation gaps of issue 18 (item 9): the escape hatch may not override what vipdrain renders,
open a block or set `track_*`; notify hooks are absolute paths; a file that cannot be decoded
or parsed is one problem naming it (exit 2), never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from vipdrain import keepalived
from vipdrain.cli import main
from vipdrain.config import load_config
from vipdrain.errors import EXIT_INVALID_CONFIG, ConfigInvalid
from vipdrain.layout import Layout
from vipdrain.render import render_keepalived_conf

#: Every feature that adds lines to global_defs or vrrp_instance: email, multicast groups,
#: VRRPv2 authentication, sticky placement, notify hooks, a source address.
EVERYTHING: dict[str, Any] = {
    "keepalived.vrrp_version": 2,
    "keepalived.authentication": "s3cret",
    "keepalived.source_address": "192.0.2.10",
    "vipdrain.placement": "sticky",
    "keepalived.notification_email.to": ["ops@example.com"],
    "keepalived.notification_email.from": "keepalived@example.com",
    "keepalived.notification_email.smtp_server": "192.0.2.25:2525",
    "keepalived.notify.master": "/bin/true",
    "keepalived.notify.backup": "/bin/true",
    "keepalived.notify.fault": "/bin/true",
    "keepalived.notify.stop": "/bin/true",
}
LAYOUT = Layout(root=Path("/var/vcap"), vipdrain_cmd=f"{sys.executable} -m vipdrain")


def rendered_keywords(tree: Any, block: str) -> set[str]:
    """The keywords of the lines (and sub-block headers) directly inside `block` of keepalived.conf."""
    found: set[str] = set()
    for header, sub in tree.blocks.items():
        if header.split()[0] == block:
            found |= {line.split()[0] for line in sub.lines} | {h.split()[0] for h in sub.blocks}
    return found


@pytest.mark.parametrize(("block", "unicast"), [("global_defs", False), ("vrrp_instance", False),
                                                 ("vrrp_instance", True)])
def test_every_keyword_vipdrain_renders_is_refused_in_the_escape_hatch(make_raw, parse, problems, conf, block,
                                                                       unicast):
    # Derived from the renderer, so a keyword it learns later is covered without a list to update.
    # keepalived takes the last of two settings: an extra line after vipdrain's would win.
    text = render_keepalived_conf(parse(make_raw({**EVERYTHING, "keepalived.unicast": unicast})), LAYOUT)
    keywords = rendered_keywords(conf(text), block)
    assert {"state", "priority", "virtual_ipaddress"} <= keywords or block == "global_defs"
    assert {"router_id", "vrrp_higher_prio_send_advert", "vrrp_garp_lower_prio_repeat"} <= keywords or (
        block == "vrrp_instance")
    name = f"keepalived.extra.{block}"
    for keyword in sorted(keywords):
        found = problems(make_raw({name: [f"{keyword} 1"]}))
        assert len(found) == 1 and found[0].startswith(f"{name}[0]: '{keyword} 1' sets {keyword}, which vipdrain "
                                                       f"manages in {block}"), (keyword, found)


@pytest.mark.parametrize("line", ["vrrp_higher_prio_send_advert false", "vrrp_garp_lower_prio_repeat 0",
                                  "vrrp_garp_lower_prio_delay 0", "vrrp_notify_fifo /tmp/fifo",
                                  "vrrp_notify_fifo_script /bin/true"])
def test_issue_18_global_defs_overrides_are_refused(make_raw, problems, line):
    keyword = line.split()[0]
    found = problems(make_raw({"keepalived.extra.global_defs": ["vrrp_garp_interval 0.001", line]}))
    assert len(found) == 1, found
    assert found[0].startswith(f"keepalived.extra.global_defs[1]: {line!r} sets {keyword}, which vipdrain "
                               "manages in global_defs: ")


@pytest.mark.parametrize("keyword", ["track_interface", "track_process", "track_bfd", "track_anything"])
def test_every_track_keyword_is_refused(make_raw, problems, keyword):
    found = problems(make_raw({"keepalived.extra.vrrp_instance": [f"{keyword} eth1"]}))
    assert len(found) == 1
    assert found[0].startswith(f"keepalived.extra.vrrp_instance[0]: '{keyword} eth1' sets {keyword}, which "
                               "vipdrain manages in vrrp_instance")


@pytest.mark.parametrize("keyword", ["virtual_routes", "virtual_rules", "virtual_ipaddress_excluded"])
def test_block_keywords_are_refused(make_raw, problems, keyword):
    name = "keepalived.extra.vrrp_instance"
    found = problems(make_raw({name: [keyword, "garp_lower_prio_repeat 2"]}))
    assert any(p.startswith(f"{name}[0]: {keyword!r} ") and "block" in p for p in found), found


def test_block_keywords_cover_every_block_keepalived_opens_in_a_vrrp_instance():
    # keepalived 2.2.7 keepalived/vrrp/vrrp_parser.c: the vrrp_instance keywords whose handler
    # reads a value block (alloc_value_block), plus the `authentication` sublevel.
    from vipdrain.config.extra import BLOCK_KEYWORDS

    assert {"unicast_peer", "track_interface", "track_script", "track_file", "track_process", "track_bfd",
            "virtual_ipaddress", "virtual_ipaddress_excluded", "virtual_routes", "virtual_rules",
            "authentication"} <= BLOCK_KEYWORDS["vrrp_instance"]
    assert "notification_email" in BLOCK_KEYWORDS["global_defs"]


def test_keepalived_t_accepts_a_bare_block_keyword_that_swallows_the_closing_brace(
        keepalived_bin, make_raw, parse, vrrp_interface, conf_layout):
    """Why the check exists: with one VIP, a bare `virtual_routes` reads the instance's closing
    brace as the end of its own block, and the real `keepalived -t` still passes the file."""
    cfg = parse(make_raw({"keepalived.interface": vrrp_interface}))
    text = render_keepalived_conf(cfg, conf_layout)
    closing = text.rindex("}")
    keepalived.check_config(text[:closing] + "    virtual_routes\n" + text[closing:])


@pytest.mark.parametrize(("value", "why"), [
    ("claim", "must start with the absolute path of the program"),
    ("bin/claim --vip 1", "must start with the absolute path of the program"),
    ("'/opt/my claim' x", "must start with the absolute path of the program"),
    ("~/claim", "must start with the absolute path of the program"),
    ("/bin/claim\x00", "contains the control character"),
    ("/bin/x;rm", "must start with the absolute path of the program"),
    ("/bin/x`id`", "must start with the absolute path of the program"),
])
@pytest.mark.parametrize("hook", ["master", "backup", "fault", "stop"])
def test_notify_hooks_must_be_absolute_paths(make_raw, problems, hook, value, why):
    name = f"keepalived.notify.{hook}"
    found = problems(make_raw({name: value}))
    assert len(found) == 1 and found[0].startswith(f"{name}: ") and why in found[0], found


def test_notify_hook_with_arguments_is_fine(make_raw, parse):
    cfg = parse(make_raw({"keepalived.notify.master": "/var/vcap/jobs/eip/bin/claim --vip 192.0.2.100 'a b'"}))
    assert cfg.notify.master == "/var/vcap/jobs/eip/bin/claim --vip 192.0.2.100 'a b'"


# --- files that cannot be decoded or parsed ---------------------------------------------------


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("vipdrain.yml", b"properties: {keepalived: {vip: \xff\xfe}}\n", "is not UTF-8 text (byte 0xff at offset 31)"),
    ("vipdrain.json", b'{"a": "\xc3"}', "is not UTF-8 text (byte 0xc3 at offset 7)"),
    ("vipdrain.yml", b"[" * 100_000 + b"]" * 100_000, "is nested too deeply"),
    ("vipdrain.json", b"[" * 100_000 + b"]" * 100_000, "is nested too deeply"),
    ("vipdrain.yml", b"a: " + b"{b: " * 100_000 + b"1" + b"}" * 100_000, "is nested too deeply"),
])
def test_undecodable_or_deep_files_are_one_problem_naming_the_file(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigInvalid) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == [f"{path}: {expected}"] or (
        len(info.value.problems) == 1 and str(info.value.problems[0]).startswith(f"{path}: {expected}")), (
        info.value.problems)


@pytest.mark.parametrize("content", [b"\xff\xfe", b"[" * 100_000])
def test_check_exits_2_naming_the_file(tmp_path, capsys, content):
    path = tmp_path / "vipdrain.yml"
    path.write_bytes(content)
    assert main(["check", "--config", str(path)]) == EXIT_INVALID_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("vipdrain: invalid configuration (1 problem(s)):") and str(path) in err
    assert "Traceback" not in err


def test_the_tunnel_port_must_not_be_the_notice_port(make_raw, problems, parse):
    name = "vipdrain.drain.preserve_tunnel_port"
    found = problems(make_raw({name: 7112}))
    assert len(found) == 1 and found[0].startswith(f"{name}: ") and "7112" in found[0], found
    assert "must differ from vipdrain.drain.preserve_port (the drain notice's port)" in found[0]
    cfg = parse(make_raw({"vipdrain.drain.preserve_port": 9000, name: 9001,
                          "vipdrain.drain.preserve_forwarding": "layer2"}))
    drain = cfg.drain
    assert (drain.preserve_port, drain.preserve_tunnel_port, drain.preserve_forwarding) == (9000, 9001, "layer2")
    assert parse(make_raw()).drain.preserve_forwarding == "encapsulated"


def test_the_forwarding_mode_is_one_of_two(make_raw, problems):
    found = problems(make_raw({"vipdrain.drain.preserve_forwarding": "gre"}))
    assert len(found) == 1 and "must be one of encapsulated, layer2" in found[0], found
