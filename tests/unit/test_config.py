"""vipdrain.config: what the rendered job config may hold, and how every mistake is reported."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from vipdrain.config import load_config, parse_config
from vipdrain.config.schema import BY_NAME, NO_DEFAULT, PROPERTIES, TYPES
from vipdrain.errors import ConfigInvalid
from vipdrain.model import Peer
from vipdrain.priority import PREFERRED_PRIORITY

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address

# --- accepted configs -------------------------------------------------------------------------


def test_minimal_config_gets_every_default(raw_config, parse):
    cfg = parse(raw_config)
    assert [(v.name, v.address, v.virtual_router_id, v.interface) for v in cfg.vips] == [
        ("vip_1", V4("192.0.2.100"), 1, "eth0")
    ]
    assert cfg.instance.ip == V4("192.0.2.10") and cfg.instance.id == raw_config["spec"]["id"]
    assert (cfg.vrrp_version, cfg.advert_int, cfg.placement, cfg.unicast) == (3, 1.0, "preferred", False)
    assert cfg.priority == PREFERRED_PRIORITY
    assert [p.address for p in cfg.peers] == [V4("192.0.2.11"), V4("192.0.2.12")]
    assert cfg.source_address == V4("192.0.2.10")
    assert cfg.healthcheck is not None and cfg.healthcheck.command == ""
    assert (cfg.healthcheck.interval, cfg.healthcheck.timeout, cfg.healthcheck.fall, cfg.healthcheck.rise) == (
        1, 1, 2, 2)
    assert (cfg.garp.master_delay, cfg.garp.master_repeat, cfg.garp.master_refresh) == (1, 3, 0)
    assert (cfg.multicast_group_v4, cfg.multicast_group_v6) == ("224.0.0.18", "ff02::12")
    assert cfg.authentication is None and cfg.notification_email is None
    assert cfg.extra_global_defs == () and cfg.extra_instance_options == ()
    assert cfg.drain.enabled and cfg.drain.timeout == 30 and cfg.drain.no_peer_policy == "proceed"
    assert cfg.drain.poll_interval == 0.1 and not cfg.drain.dynamic and cfg.drain.resign_advert
    assert cfg.haproxy.pid_file == "/var/vcap/sys/run/bpm/haproxy/haproxy.pid"
    assert cfg.haproxy.probe == "127.0.0.1:80" and cfg.haproxy.drain_grace_time is None


ACCEPTED: dict[str, dict[str, Any]] = {
    "ipv6 vip": {"keepalived.vip": "2001:db8::100"},
    "three vips, strings and maps": {
        "keepalived.vip": None,
        "keepalived.vips": [
            "192.0.2.100",
            {"address": "192.0.2.101", "virtual_router_id": 9},
            {"address": "2001:db8::100", "interface": "eth1"},
        ],
    },
    "vrrp v2 with authentication": {
        "keepalived.vrrp_version": 2,
        "keepalived.advert_int": 3,
        "keepalived.authentication": "s3cret",
    },
    "v3 centisecond adverts": {"keepalived.advert_int": 0.05},
    "v3 longest adverts": {"keepalived.advert_int": 40.95},
    "unicast from the link": {"keepalived.unicast": True},
    "unicast peers listing this instance too": {
        "keepalived.unicast": True,
        "keepalived.unicast_peers": ["192.0.2.10", "192.0.2.11", "192.0.2.12"],
    },
    "sticky": {"vipdrain.placement": "sticky"},
    "email": {
        "keepalived.notification_email.to": ["ops@example.com", "oncall@example.org"],
        "keepalived.notification_email.from": "keepalived@example.com",
        "keepalived.notification_email.smtp_server": "192.0.2.25:2525",
        "keepalived.notification_email.smtp_connect_timeout": 10,
    },
    "operator notify hooks": {
        "keepalived.notify.master": "/var/vcap/jobs/eip/bin/claim --vip 192.0.2.100",
        "keepalived.notify.backup": "/bin/true",
        "keepalived.notify.fault": "/usr/bin/logger 'vip fault'",
        "keepalived.notify.stop": "/bin/true",
    },
    "escape hatch": {
        "keepalived.extra.global_defs": ["vrrp_garp_interval 0.001", "vrrp_min_garp true"],
        "keepalived.extra.vrrp_instance": ["dont_track_primary", 'garp_lower_prio_repeat 2'],
    },
    "custom health check": {
        "keepalived.healthcheck.command": "/var/vcap/jobs/haproxy/bin/healthy --port 443",
        "keepalived.healthcheck.interval": 2,
        "keepalived.healthcheck.timeout": 3,
        "keepalived.healthcheck.fall": 1,
        "keepalived.healthcheck.rise": 5,
    },
    "transport settings": {
        "keepalived.multicast_group.ipv4": "224.0.0.19",
        "keepalived.multicast_group.ipv6": "ff02::13",
        "keepalived.source_address": "192.0.2.20",
        "keepalived.garp.master_delay": 0,
        "keepalived.garp.master_repeat": 1,
        "keepalived.garp.master_refresh": 60,
    },
    "drain and haproxy settings": {
        "vipdrain.drain.timeout": 12.5,
        "vipdrain.drain.no_peer_policy": "fail",
        "vipdrain.drain.poll_interval": 0.05,
        "vipdrain.drain.dynamic": True,
        "vipdrain.drain.resign_advert": False,
        "vipdrain.drain.enabled": False,
        "vipdrain.haproxy.pid_file": "/var/vcap/sys/run/bpm/haproxy/haproxy.pid",
        "vipdrain.haproxy.probe": "[::1]:8443",
        "vipdrain.haproxy.drain_grace_time": 45,
    },
    "interface auto": {"keepalived.interface": "auto"},
    "bosh nulls and blanks mean unset": {
        "keepalived.vips": None,
        "keepalived.authentication": "",
        "keepalived.healthcheck.command": "",
        "keepalived.notify.master": None,
        "keepalived.source_address": None,
        "vipdrain.haproxy.drain_grace_time": None,
    },
}


@pytest.mark.parametrize("props", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted(make_raw, parse, props):
    cfg = parse(make_raw(props))
    assert cfg.vips


def test_every_default_given_explicitly_is_accepted(make_raw, parse):
    """The BOSH job spec renders every default; the defaults must validate as given values."""
    given = {p.name: p.default for p in PROPERTIES if p.has_default}
    assert parse(make_raw(given)) == parse(make_raw())


def test_dotted_property_names_work_like_nested_maps(raw_config, parse):
    raw_config["properties"] = {"keepalived.vip": "192.0.2.100", "keepalived.interface": "eth0",
                                "keepalived": {"healthcheck.interval": 3}}
    assert parse(raw_config).healthcheck.interval == 3


def test_vrids_count_up_from_the_base_unless_given(make_raw, parse):
    cfg = parse(make_raw({
        "keepalived.vip": None,
        "keepalived.virtual_router_id": 50,
        "keepalived.vips": ["192.0.2.100", {"address": "192.0.2.101", "virtual_router_id": 7}, "192.0.2.102"],
    }))
    assert [(v.name, v.virtual_router_id) for v in cfg.vips] == [("vip_1", 50), ("vip_2", 7), ("vip_3", 52)]


def test_the_same_vrid_on_another_interface_or_family_is_fine(make_raw, parse):
    cfg = parse(make_raw({
        "keepalived.vip": None,
        "keepalived.vips": [
            {"address": "192.0.2.100", "virtual_router_id": 5},
            {"address": "2001:db8::100", "virtual_router_id": 5},
            {"address": "192.0.2.101", "virtual_router_id": 5, "interface": "eth1"},
        ],
    }))
    assert [(v.interface, v.family, v.virtual_router_id) for v in cfg.vips] == [
        ("eth0", 4, 5), ("eth0", 6, 5), ("eth1", 4, 5)]


def test_interface_auto_is_looked_up_once_from_spec_ip(make_raw):
    asked = []

    def lookup(ip):
        asked.append(ip)
        return "ens5"

    doc = make_raw({"keepalived.interface": "auto", "keepalived.vip": None,
                    "keepalived.vips": ["192.0.2.100", {"address": "192.0.2.101", "interface": "eth9"}, "192.0.2.102"]})
    cfg = parse_config(doc, interface_of=lookup)
    assert [v.interface for v in cfg.vips] == ["ens5", "eth9", "ens5"]
    assert asked == [V4("192.0.2.10")]


def test_explicit_interface_never_runs_the_lookup(raw_config):
    def lookup(ip):
        raise AssertionError("no lookup expected")

    assert parse_config(raw_config, interface_of=lookup).vips[0].interface == "eth0"


def test_interface_auto_without_a_holder_is_a_problem(make_raw):
    doc = make_raw({"keepalived.interface": "auto"})
    with pytest.raises(ConfigInvalid) as info:
        parse_config(doc, interface_of=lambda ip: None)
    assert [str(p) for p in info.value.problems] == [
        "keepalived.interface: 'auto' found no local interface holding spec.ip 192.0.2.10: set the interface name"
    ]


def test_interface_auto_resolving_to_loopback_is_a_problem(make_raw):
    with pytest.raises(ConfigInvalid) as info:
        parse_config(make_raw({"keepalived.interface": "auto"}), interface_of=lambda ip: "lo")
    assert [str(p) for p in info.value.problems] == [
        "keepalived.interface: 'auto' resolved to 'lo', which is the loopback interface; keepalived cannot run "
        "VRRP on it"
    ]


def test_interface_auto_defaults_to_netstate(make_raw, monkeypatch):
    monkeypatch.setattr("vipdrain.netstate.interface_of", lambda ip: "ens7" if ip == V4("192.0.2.10") else None)
    assert parse_config(make_raw({"keepalived.interface": "auto"})).vips[0].interface == "ens7"


def test_a_vip_with_its_own_interface_survives_a_bad_default(make_raw, problems):
    doc = make_raw({"keepalived.interface": "bad name", "keepalived.vip": None,
                    "keepalived.vips": [{"address": "192.0.2.100", "interface": "eth1"}, "192.0.2.101"]})
    assert problems(doc) == [
        "keepalived.interface: 'bad name' is not a Linux interface name (1..15 of A-Z a-z 0-9 _ . : -) or auto"]


def test_priority_ranks_the_group_by_index(make_raw, parse):
    second = parse(make_raw(spec={"index": 2, "bootstrap": False, "id": "peer-2", "ip": "192.0.2.12"}))
    first = parse(make_raw(spec={"index": 1, "bootstrap": False, "id": "peer-1", "ip": "192.0.2.11"}))
    assert (first.priority, second.priority) == (150, 125)
    sticky = parse(make_raw({"vipdrain.placement": "sticky"}, spec={"index": 1, "bootstrap": False,
                                                                    "id": "peer-1", "ip": "192.0.2.11"}))
    assert sticky.priority == 125


def test_peers_leave_this_instance_out_by_id_then_by_address(make_raw, parse, raw_config):
    by_id = parse(make_raw(spec={"index": 1, "bootstrap": False, "id": "peer-1", "ip": "192.0.2.11"}))
    assert [p.id for p in by_id.peers] == [raw_config["spec"]["id"], "peer-2"]
    links = {"keepalived": {"instances": [{"address": "192.0.2.10"}, {"address": "192.0.2.11"}]}}
    by_address = parse(make_raw(links=links))
    assert by_address.peers == (Peer(address=V4("192.0.2.11")),)


def test_no_link_means_no_peers(make_raw, parse):
    assert parse(make_raw(links=None)).peers == ()


def test_unicast_peers_replace_the_link_and_keep_its_details(make_raw, parse):
    cfg = parse(make_raw({"keepalived.unicast": True,
                          "keepalived.unicast_peers": ["192.0.2.12", "192.0.2.10", "198.51.100.7"]}))
    assert cfg.peers == (
        Peer(address=V4("192.0.2.12"), index=2, bootstrap=False, id="peer-2"),
        Peer(address=V4("198.51.100.7")),
    )


def test_ipv6_vip_with_ipv6_unicast_peers(make_raw, parse):
    cfg = parse(make_raw({"keepalived.vip": "2001:db8::100", "keepalived.unicast": True,
                          "keepalived.unicast_peers": ["2001:db8::11"]}))
    assert [p.address for p in cfg.peers] == [V6("2001:db8::11")]


def test_escape_hatch_lines_are_normalised(make_raw, parse):
    cfg = parse(make_raw({"keepalived.extra.vrrp_instance": ["  garp_lower_prio_repeat    2 "]}))
    assert cfg.extra_instance_options == ("garp_lower_prio_repeat 2",)


# --- rejected configs: one mistake, one problem naming path and value ---------------------------

REJECTED: dict[str, tuple[dict[str, Any], str]] = {
    "network vip": ({"keepalived.vip": "192.0.2.0/24"},
                    "keepalived.vip: '192.0.2.0/24' must be a VIP address without a prefix length"),
    "host prefix vip": ({"keepalived.vip": "192.0.2.100/32"}, "keepalived.vip: '192.0.2.100/32' must be"),
    "not an ip": ({"keepalived.vip": "vip.example.com"},
                  "keepalived.vip: 'vip.example.com' is not a VIP address"),
    "multicast vip": ({"keepalived.vip": "224.0.0.18"}, "keepalived.vip: '224.0.0.18' is a multicast address"),
    "unspecified vip": ({"keepalived.vip": "0.0.0.0"}, "keepalived.vip: '0.0.0.0' is the unspecified address"),
    "zoned vip": ({"keepalived.vip": "fe80::1%eth0"}, "keepalived.vip: 'fe80::1%eth0' must be a VIP address "
                  "without a zone index"),
    "vip as a number": ({"keepalived.vip": 3221226084}, "keepalived.vip: 3221226084 must be a string, not a number"),
    "vip is spec.ip": ({"keepalived.vip": "192.0.2.10"},
                       "keepalived.vip: '192.0.2.10' is this instance's own address (spec.ip)"),
    "vip is a peer": ({"keepalived.vip": "192.0.2.12"},
                      "keepalived.vip: '192.0.2.12' is the address of a peer (instance 2)"),
    "vip is a unicast peer": ({"keepalived.unicast_peers": ["198.51.100.9"], "keepalived.vip": "198.51.100.9"},
                              "keepalived.vip: '198.51.100.9' is the address of a peer (198.51.100.9)"),
    "duplicate vips": ({"keepalived.vip": None, "keepalived.vips": ["192.0.2.100", "192.0.2.100"]},
                       "keepalived.vips[1]: '192.0.2.100' is listed twice (also keepalived.vips[0])"),
    "duplicate vrids": (
        {"keepalived.vip": None,
         "keepalived.vips": ["192.0.2.100", {"address": "192.0.2.101", "virtual_router_id": 1}]},
        "keepalived.vips[1]: '192.0.2.101' has virtual_router_id 1, already used by vip_1 (192.0.2.100) on eth0 "
        "(IPv4)"),
    "vrid out of range": ({"keepalived.virtual_router_id": 300},
                          "keepalived.virtual_router_id: 300 is out of range 1..255"),
    "vrid zero": ({"keepalived.virtual_router_id": 0}, "keepalived.virtual_router_id: 0 is out of range 1..255"),
    "per-vip vrid out of range": (
        {"keepalived.vip": None, "keepalived.vips": [{"address": "192.0.2.100", "virtual_router_id": 256}]},
        "keepalived.vips[0].virtual_router_id: 256 is out of range 1..255"),
    "counted vrid past 255": (
        {"keepalived.vip": None, "keepalived.virtual_router_id": 255, "keepalived.vips": ["192.0.2.100",
                                                                                          "192.0.2.101"]},
        "keepalived.vips[1]: '192.0.2.101' gets virtual_router_id 256 (keepalived.virtual_router_id 255 + "
        "position 1), above 255"),
    "advert_int above v3 range": ({"keepalived.advert_int": 41},
                                  "keepalived.advert_int: 41 is out of range 0.01..40.95 (seconds, VRRPv3)"),
    "advert_int zero": ({"keepalived.advert_int": 0}, "keepalived.advert_int: 0 is out of range 0.01..40.95"),
    "advert_int finer than centiseconds": ({"keepalived.advert_int": 0.005},
                                           "keepalived.advert_int: 0.005 is out of range"),
    "advert_int not a centisecond multiple": ({"keepalived.advert_int": 0.125},
                                              "keepalived.advert_int: 0.125 must be a multiple of 0.01 seconds"),
    "fractional advert_int with v2": ({"keepalived.vrrp_version": 2, "keepalived.advert_int": 0.5},
                                      "keepalived.advert_int: 0.5 must be whole seconds 1..255 with VRRP version 2"),
    "advert_int above v2 range": ({"keepalived.vrrp_version": 2, "keepalived.advert_int": 256},
                                  "keepalived.advert_int: 256 must be whole seconds 1..255"),
    "vrrp version 4": ({"keepalived.vrrp_version": 4}, "keepalived.vrrp_version: 4 must be one of 2, 3"),
    "auth with v3": ({"keepalived.authentication": "secret"},
                     "keepalived.authentication: needs keepalived.vrrp_version: 2 (VRRPv3 has no authentication)"),
    "auth too long": ({"keepalived.vrrp_version": 2, "keepalived.authentication": "123456789"},
                      "keepalived.authentication: is 9 characters long; VRRPv2 PASS authentication allows 1..8"),
    "auth with a space": ({"keepalived.vrrp_version": 2, "keepalived.authentication": "a b"},
                          "keepalived.authentication: may only hold"),
    "ipv6 vip with v2": ({"keepalived.vrrp_version": 2, "keepalived.vip": "2001:db8::100"},
                         "keepalived.vip: '2001:db8::100' is IPv6, which needs VRRP version 3"),
    "unicast without peers of the vip's family": (
        {"keepalived.unicast": True, "keepalived.vip": "2001:db8::100"},
        "keepalived.vip: '2001:db8::100' is IPv6 but no unicast peer is"),
    "bad unicast peer": ({"keepalived.unicast_peers": ["192.0.2.11", "192.0.2.0/24"]},
                         "keepalived.unicast_peers[1]: '192.0.2.0/24' must be an IP address without a prefix length"),
    "duplicate unicast peer": ({"keepalived.unicast_peers": ["192.0.2.11", "192.0.2.11"]},
                               "keepalived.unicast_peers[1]: '192.0.2.11' is listed twice"),
    "interface with a space": ({"keepalived.interface": "eth 0"},
                               "keepalived.interface: 'eth 0' is not a Linux interface name"),
    "interface too long": ({"keepalived.interface": "a-very-long-interface"},
                           "keepalived.interface: 'a-very-long-interface' is not a Linux interface name"),
    "interface with a brace": ({"keepalived.interface": "eth0}"}, "keepalived.interface: 'eth0}' is not a Linux"),
    "loopback interface": ({"keepalived.interface": "lo"}, "keepalived.interface: 'lo' is the loopback interface"),
    "per-vip interface": ({"keepalived.vip": None, "keepalived.vips": [{"address": "192.0.2.100",
                                                                         "interface": "eth0\n"}]},
                          "keepalived.vips[0].interface: 'eth0\\n' is not a Linux interface name"),
    "unknown vip key": ({"keepalived.vip": None, "keepalived.vips": [{"address": "192.0.2.100", "vrid": 3}]},
                        "keepalived.vips[0].vrid: 3 is not a VIP key"),
    "misspelt vip address": ({"keepalived.vip": None, "keepalived.vips": [{"adress": "192.0.2.100"}]},
                             "keepalived.vips[0].adress: '192.0.2.100' is not a VIP key (did you mean address?)"),
    "vip entry of the wrong type": ({"keepalived.vip": None, "keepalived.vips": [["192.0.2.100"]]},
                                    "keepalived.vips[0]: ['192.0.2.100'] must be an address or a map"),
    "empty vips": ({"keepalived.vip": None, "keepalived.vips": []}, "keepalived.vips: [] must list at least one VIP"),
    "vip and vips": ({"keepalived.vips": ["192.0.2.101"]},
                     "keepalived.vips: ['192.0.2.101'] cannot be combined with keepalived.vip"),
    "no vip": ({"keepalived.vip": None}, "keepalived.vip: is required"),
    "multicast group not multicast": ({"keepalived.multicast_group.ipv4": "192.0.2.1"},
                                      "keepalived.multicast_group.ipv4: '192.0.2.1' must be an IPv4 multicast"),
    "ipv6 multicast group not link-local": ({"keepalived.multicast_group.ipv6": "ff05::12"},
                                            "keepalived.multicast_group.ipv6: 'ff05::12' must be a link-local"),
    "multicast group as a string": ({"keepalived.multicast_group": "224.0.0.19"},
                                    "keepalived.multicast_group: '224.0.0.19' must be a map with the keys ipv4, ipv6"),
    "source of another family": ({"keepalived.source_address": "2001:db8::5"},
                                 "keepalived.source_address: '2001:db8::5' is IPv6 but vip_1 (192.0.2.100) is IPv4"),
    "source is the vip": ({"keepalived.source_address": "192.0.2.100"},
                          "keepalived.source_address: '192.0.2.100' is one of the VIPs"),
    "garp repeat zero": ({"keepalived.garp.master_repeat": 0},
                         "keepalived.garp.master_repeat: 0 is out of range 1..255"),
    "garp delay too long": ({"keepalived.garp.master_delay": 5000},
                            "keepalived.garp.master_delay: 5000 is out of range 0..4294 (seconds)"),
    "health interval fractional": ({"keepalived.healthcheck.interval": 0.5},
                                   "keepalived.healthcheck.interval: 0.5 must be a whole number, not a number"),
    "health timeout zero": ({"keepalived.healthcheck.timeout": 0},
                            "keepalived.healthcheck.timeout: 0 is out of range 1..4294 (seconds)"),
    "health fall zero": ({"keepalived.healthcheck.fall": 0}, "keepalived.healthcheck.fall: 0 is out of range 1..1000"),
    "health command injection": (
        {"keepalived.healthcheck.command": "/bin/true\n}\nvrrp_instance evil {"},
        "keepalived.healthcheck.command: '/bin/true\\n}\\nvrrp_instance evil {' contains a line break"),
    "health command with a double quote": ({"keepalived.healthcheck.command": '/bin/echo "x"'},
                                           "keepalived.healthcheck.command: '/bin/echo \"x\"' contains '\"'"),
    "health command with a comment": ({"keepalived.healthcheck.command": "/bin/true # check"},
                                      "keepalived.healthcheck.command: '/bin/true # check' contains '#'"),
    "health command with an unbalanced quote": ({"keepalived.healthcheck.command": "/bin/echo 'x"},
                                                "keepalived.healthcheck.command: \"/bin/echo 'x\" has an "
                                                "unbalanced single quote"),
    "health command with a parameter": ({"keepalived.healthcheck.command": "/bin/echo ${_RANDOM}"},
                                        "keepalived.healthcheck.command: '/bin/echo ${_RANDOM}' contains '$'"),
    "health command too long": ({"keepalived.healthcheck.command": "/bin/echo " + "a" * 1000},
                                "keepalived.healthcheck.command: '/bin/echo aaaa"),
    "blank health command": ({"keepalived.healthcheck.command": "   "},
                             "keepalived.healthcheck.command: '   ' is blank"),
    "notify with a brace": ({"keepalived.notify.master": "/bin/claim }"},
                            "keepalived.notify.master: '/bin/claim }' contains '}'"),
    "notify with a control character": ({"keepalived.notify.fault": "/bin/x\x1b[2J"},
                                        "keepalived.notify.fault: '/bin/x\\x1b[2J' contains the control character"),
    "notify with a tab": ({"keepalived.notify.stop": "/bin/x\ty"},
                          "keepalived.notify.stop: '/bin/x\\ty' contains the control character"),
    "notify with a backslash": ({"keepalived.notify.backup": "/bin/x \\n"},
                                "keepalived.notify.backup: '/bin/x \\\\n' contains '\\\\'"),
    "email recipient": ({"keepalived.notification_email.to": ["ops@example.com", "ops\n@example.com"],
                         "keepalived.notification_email.smtp_server": "192.0.2.25"},
                        "keepalived.notification_email.to[1]: 'ops\\n@example.com' is not an email address"),
    "email sender with a quote": ({"keepalived.notification_email.to": ["ops@example.com"],
                                   "keepalived.notification_email.from": 'a"b@example.com',
                                   "keepalived.notification_email.smtp_server": "192.0.2.25"},
                                  "keepalived.notification_email.from: 'a\"b@example.com' is not an email address"),
    "smtp server with a brace": ({"keepalived.notification_email.to": ["ops@example.com"],
                                  "keepalived.notification_email.smtp_server": "smtp}"},
                                 "keepalived.notification_email.smtp_server: 'smtp}' must be HOST, HOST:PORT"),
    "smtp port out of range": ({"keepalived.notification_email.to": ["ops@example.com"],
                                "keepalived.notification_email.smtp_server": "192.0.2.25:70000"},
                               "keepalived.notification_email.smtp_server: '192.0.2.25:70000' must be HOST"),
    "email without server": ({"keepalived.notification_email.to": ["ops@example.com"]},
                             "keepalived.notification_email.smtp_server: is required when "
                             "keepalived.notification_email.to is set"),
    "email server without recipients": ({"keepalived.notification_email.smtp_server": "192.0.2.25"},
                                        "keepalived.notification_email.to: is empty, but "
                                        "keepalived.notification_email.smtp_server is set"),
    "smtp timeout": ({"keepalived.notification_email.smtp_connect_timeout": 0},
                     "keepalived.notification_email.smtp_connect_timeout: 0 is out of range 1..4294"),
    "escape hatch nopreempt": ({"keepalived.extra.vrrp_instance": ["nopreempt"]},
                               "keepalived.extra.vrrp_instance[0]: 'nopreempt' sets nopreempt, which vipdrain manages"),
    "escape hatch priority": ({"keepalived.extra.vrrp_instance": ["priority 255"]},
                              "keepalived.extra.vrrp_instance[0]: 'priority 255' sets priority"),
    "escape hatch state": ({"keepalived.extra.vrrp_instance": ["state MASTER"]},
                           "keepalived.extra.vrrp_instance[0]: 'state MASTER' sets state"),
    "escape hatch notify": ({"keepalived.extra.vrrp_instance": ["notify_master /bin/x"]},
                            "keepalived.extra.vrrp_instance[0]: 'notify_master /bin/x' sets notify_master"),
    "escape hatch track_file": ({"keepalived.extra.vrrp_instance": ["track_file x"]},
                                "keepalived.extra.vrrp_instance[0]: 'track_file x' sets track_file"),
    "escape hatch vrrp_strict": ({"keepalived.extra.global_defs": ["vrrp_strict"]},
                                 "keepalived.extra.global_defs[0]: 'vrrp_strict' sets vrrp_strict"),
    "escape hatch router_id": ({"keepalived.extra.global_defs": ["router_id x"]},
                               "keepalived.extra.global_defs[0]: 'router_id x' sets router_id"),
    "escape hatch include": ({"keepalived.extra.global_defs": ["include /etc/keepalived/*.conf"]},
                             "keepalived.extra.global_defs[0]: 'include /etc/keepalived/*.conf' would include"),
    "escape hatch block": ({"keepalived.extra.vrrp_instance": ["track_interface { eth1 }"]},
                           "keepalived.extra.vrrp_instance[0]: 'track_interface { eth1 }' contains '{'"),
    "escape hatch newline": ({"keepalived.extra.global_defs": ["vrrp_garp_interval 1\n}"]},
                             "keepalived.extra.global_defs[0]: 'vrrp_garp_interval 1\\n}' contains a line break"),
    "escape hatch comment": ({"keepalived.extra.global_defs": ["vrrp_garp_interval 1 ! x"]},
                             "keepalived.extra.global_defs[0]: 'vrrp_garp_interval 1 ! x' contains '!'"),
    "escape hatch unbalanced quote": ({"keepalived.extra.global_defs": ['vrrp_notify_fifo "/tmp/f']},
                                      "keepalived.extra.global_defs[0]: 'vrrp_notify_fifo \"/tmp/f' has an "
                                      "unbalanced quote"),
    "escape hatch conditional line": ({"keepalived.extra.global_defs": ["@main router_id x"]},
                                      "keepalived.extra.global_defs[0]: '@main router_id x' must start with a "
                                      "keepalived keyword"),
    "escape hatch not a string": ({"keepalived.extra.global_defs": [{"a": 1}]},
                                  "keepalived.extra.global_defs[0]: {'a': 1} must be a string"),
    "escape hatch as a string": ({"keepalived.extra.global_defs": "vrrp_garp_interval 1"},
                                 "keepalived.extra.global_defs: 'vrrp_garp_interval 1' must be a list, not a string"),
    "unknown property": ({"keepalived.virtual_routerid": 5},
                         "keepalived.virtual_routerid: 5 is not a known property (did you mean "
                         "keepalived.virtual_router_id?)"),
    "unknown nested property": ({"keepalived.healthcheck.intervall": 2},
                                "keepalived.healthcheck.intervall: 2 is not a known property (did you mean "
                                "keepalived.healthcheck.interval?)"),
    "unknown top namespace": ({"haproxy.backend_port": 80}, "haproxy: {'backend_port': 80} is not a known property"),
    "bool as string": ({"keepalived.unicast": "true"},
                       "keepalived.unicast: 'true' must be a boolean (true or false), not a string"),
    "integer as string": ({"keepalived.virtual_router_id": "5"},
                          "keepalived.virtual_router_id: '5' must be a whole number, not a string"),
    "bool as integer": ({"keepalived.virtual_router_id": True},
                        "keepalived.virtual_router_id: True must be a whole number, not a boolean"),
    "number as string": ({"vipdrain.drain.timeout": "30s"},
                         "vipdrain.drain.timeout: '30s' must be a number, not a string"),
    "placement": ({"vipdrain.placement": "random"},
                  "vipdrain.placement: 'random' must be one of preferred, sticky"),
    "no_peer_policy": ({"vipdrain.drain.no_peer_policy": "wait"},
                       "vipdrain.drain.no_peer_policy: 'wait' must be one of proceed, fail"),
    "drain timeout": ({"vipdrain.drain.timeout": 0}, "vipdrain.drain.timeout: 0 is out of range 0.1..3600 (seconds)"),
    "poll interval": ({"vipdrain.drain.poll_interval": 60},
                      "vipdrain.drain.poll_interval: 60 is out of range 0.01..10 (seconds)"),
    "relative pid file": ({"vipdrain.haproxy.pid_file": "run/haproxy.pid"},
                          "vipdrain.haproxy.pid_file: 'run/haproxy.pid' must be an absolute path"),
    "pid file with a space": ({"vipdrain.haproxy.pid_file": "/var/run/ha proxy.pid"},
                              "vipdrain.haproxy.pid_file: '/var/run/ha proxy.pid' must be an absolute path"),
    "probe without port": ({"vipdrain.haproxy.probe": "127.0.0.1"},
                           "vipdrain.haproxy.probe: '127.0.0.1' must be HOST:PORT"),
    "probe with unbracketed ipv6": ({"vipdrain.haproxy.probe": "::1:80"},
                                    "vipdrain.haproxy.probe: '::1:80' must be HOST:PORT"),
    "grace time negative": ({"vipdrain.haproxy.drain_grace_time": -1},
                            "vipdrain.haproxy.drain_grace_time: -1 is out of range 0..86400"),
}


@pytest.mark.parametrize(("props", "expected"), REJECTED.values(), ids=REJECTED.keys())
def test_rejected_with_one_clear_problem(make_raw, problems, props, expected):
    found = problems(make_raw(props))
    assert len(found) == 1, found
    assert found[0].startswith(expected), found[0]


@pytest.mark.parametrize("links", [None, {"keepalived": {"instances": [{"address": "192.0.2.10", "id": "x"}]}}])
def test_unicast_without_peers(make_raw, problems, links, raw_config):
    if links:
        links["keepalived"]["instances"][0]["id"] = raw_config["spec"]["id"]
    assert problems(make_raw({"keepalived.unicast": True}, links=links)) == [
        "keepalived.unicast: True needs peers: the keepalived link lists no other instance and "
        "keepalived.unicast_peers is empty"
    ]


SPEC_PROBLEMS = {
    "ip": "spec.ip: is required: the instance's IP address",
    "index": "spec.index: is required: the instance's index",
    "name": "spec.name: is required: the instance group's name",
    "id": "spec.id: is required: the instance's id",
    "bootstrap": "spec.bootstrap: is required: whether this is the group's bootstrap instance",
}


@pytest.mark.parametrize("key", SPEC_PROBLEMS)
def test_missing_spec_field(make_raw, problems, key):
    assert problems(make_raw(spec={key: None})) == [SPEC_PROBLEMS[key]]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"ip": "192.0.2.0/24"}, "spec.ip: '192.0.2.0/24' must be an IP address without a prefix length"),
        ({"ip": "not-an-ip"}, "spec.ip: 'not-an-ip' is not an IP address"),
        ({"index": "0"}, "spec.index: '0' must be a whole number, not a string"),
        ({"index": -1}, "spec.index: -1 must not be negative"),
        ({"bootstrap": "true"}, "spec.bootstrap: 'true' must be a boolean (true or false), not a string"),
        ({"name": "ha proxy"}, "spec.name: 'ha proxy' must be an instance group name"),
        ({"az": 3}, "spec.az: 3 must be a string, not a number"),
    ],
)
def test_bad_spec_field(make_raw, problems, spec, expected):
    found = problems(make_raw(spec=spec))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_missing_spec_section(raw_config, problems):
    del raw_config["spec"]
    assert problems(raw_config) == ["spec: is required: the BOSH instance (name, index, id, bootstrap, ip)"]


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        ({"keepalived": {"instances": [{"address": "haproxy-1.example.internal", "index": 1}]}},
         "links.keepalived.instances[0].address: 'haproxy-1.example.internal' is not an IP address (with "
         "use_dns_addresses"),
        ({"keepalived": {"instances": [{"index": 1}]}},
         "links.keepalived.instances[0].address: is required: the instance's IP address"),
        ({"keepalived": {"instances": [{"address": "192.0.2.11", "index": "1"}]}},
         "links.keepalived.instances[0].index: '1' must be a whole number"),
        ({"keepalived": {"instances": "192.0.2.11"}}, "links.keepalived.instances: '192.0.2.11' must be a list"),
        ({"keepalived": {}}, "links.keepalived.instances: must be a list"),
        ("keepalived", "links: 'keepalived' must be a map"),
    ],
)
def test_bad_link(make_raw, problems, links, expected):
    found = problems(make_raw(links=links))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_unknown_section(raw_config, problems):
    raw_config["propertys"] = {}
    assert problems(raw_config) == ["propertys: {} is not a known section (expected properties, spec, links)"]


def test_document_must_be_a_map(problems):
    assert problems(["properties"]) == [  # type: ignore[arg-type]
        "(config): ['properties'] must be a map with the sections properties, spec, links"]


def test_every_problem_is_reported_at_once(make_raw, problems):
    doc = make_raw(
        {
            "keepalived.vip": "192.0.2.0/24",
            "keepalived.virtual_router_id": 300,
            "keepalived.unicast": "yes",
            "keepalived.notify.master": "/bin/claim\n}",
            "keepalived.extra.vrrp_instance": ["nopreempt"],
        },
        spec={"ip": None},
    )
    found = problems(doc)
    assert len(found) == 6, found
    for path in ("keepalived.vip:", "keepalived.virtual_router_id:", "keepalived.unicast:",
                 "keepalived.notify.master:", "keepalived.extra.vrrp_instance[0]:", "spec.ip:"):
        assert any(p.startswith(path) for p in found), (path, found)


def test_five_mistakes_five_problems(make_raw, problems):
    found = problems(make_raw({
        "keepalived.vrrp_version": 2,
        "keepalived.advert_int": 0.5,
        "keepalived.authentication": "far-too-long",
        "keepalived.vip": "2001:db8::100",
        "keepalived.interface": "lo",
        "vipdrain.placement": "anywhere",
    }))
    assert len(found) == 5, found


def test_password_never_appears_in_problems(make_raw, problems):
    found = problems(make_raw({"keepalived.authentication": "hunter2-secret"}))
    assert found and not any("hunter2" in p for p in found)


# --- loading files ----------------------------------------------------------------------------


def test_load_yaml_and_json(tmp_path: Path, raw_config):
    as_yaml, as_json = tmp_path / "vipdrain.yml", tmp_path / "vipdrain.json"
    as_yaml.write_text(yaml.safe_dump(raw_config))
    as_json.write_text(json.dumps(raw_config))
    assert load_config(as_yaml) == load_config(as_json) == parse_config(raw_config)


def test_json_in_a_yml_file_is_fine(tmp_path: Path, raw_config):
    # BOSH templates often dump JSON into the .yml the job reads.
    path = tmp_path / "vipdrain.yml"
    path.write_text(json.dumps(raw_config))
    assert load_config(path).vips[0].address == V4("192.0.2.100")


def test_json_is_read_without_pyyaml(tmp_path: Path, raw_config):
    # The job's template renders JSON: the drain must not pay PyYAML's import (12 ms) to read it.
    path = tmp_path / "vipdrain.yml"
    path.write_text(json.dumps(raw_config))
    code = ("import sys\nfrom vipdrain.config import load_config\n"
            f"load_config({str(path)!r}, interface_of=lambda ip: 'eth0')\nprint('yaml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_example_config_is_valid():
    example = Path(__file__).resolve().parents[2] / "src" / "vipdrain" / "examples" / "example.yml"
    cfg = load_config(example)
    assert cfg.is_bootstrap and len(cfg.peers) == 2 and len(cfg.vips) == 1
    assert all(str(v.address).startswith("192.0.2.") for v in cfg.vips)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("vipdrain.yml", "properties: [\n", "is not valid YAML: expected the node content"),
        ("vipdrain.json", "{'a': 1}", "is not valid JSON: Expecting property name"),
        ("vipdrain.yml", "", "spec: is required"),
        ("vipdrain.yml", "- a\n- b\n", "(config): ['a', 'b'] must be a map"),
    ],
)
def test_unparseable_file(tmp_path: Path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigInvalid) as info:
        load_config(path)
    assert expected in str(info.value.problems[0])


def test_unreadable_file_is_one_problem_naming_it(tmp_path: Path):
    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigInvalid) as info:
        load_config(missing)
    assert [str(p) for p in info.value.problems] == [f"{missing}: cannot be read: No such file or directory"]


# --- the property table -----------------------------------------------------------------------


@pytest.mark.parametrize("prop", PROPERTIES, ids=lambda p: p.name)
def test_property_is_documented(prop):
    assert prop.name.split(".")[0] in ("keepalived", "vipdrain")
    assert prop.type in TYPES
    assert len(prop.description) > 20 and prop.description.endswith((".", ")"))
    if prop.has_default and prop.default is not None:
        type_of = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "list": list}
        assert isinstance(prop.default, type_of[prop.type])


def test_property_names_are_unique_and_indexed():
    assert len(BY_NAME) == len(PROPERTIES)
    assert BY_NAME["keepalived.vip"].default is NO_DEFAULT
