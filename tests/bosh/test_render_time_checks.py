"""What can be rejected while the director renders the job is rejected there (issue 14): a wrong
type, a value outside its choices or its range fails `vipdrain.yml.erb` with vipdrain's own
sentence naming the property, so a bad manifest fails before any VM is touched. The same checks
are `vipdrain.config.schema.static_problem` in Python, which pre-start runs again: both come from the
schema, and the tests below hold them to the same verdicts."""

from __future__ import annotations

from typing import Any

import pytest
from bosh_harness import RenderError, render

from vipdrain import boshjob
from vipdrain.boshjob.docs import nested
from vipdrain.config.schema import BY_NAME, PROPERTIES, static_problem

VIP = {"keepalived": {"vip": "192.0.2.100"}}


def with_property(name: str, value: Any) -> dict[str, Any]:
    manifest = nested(name, value)
    manifest.setdefault("keepalived", {}).setdefault("vip", "192.0.2.100")
    return manifest


def render_error(manifest: dict[str, Any]) -> str:
    with pytest.raises(RenderError) as failure:
        render(manifest, templates=[boshjob.CONFIG_TEMPLATE])
    assert str(failure.value).startswith("Error filling in template 'vipdrain.yml.erb' (line ")
    return str(failure.value)


BAD: dict[str, tuple[str, Any, str]] = {
    "placement": ("vipdrain.placement", "nearest", "vipdrain.placement: 'nearest' must be one of preferred, sticky"),
    "no peer policy": ("vipdrain.drain.no_peer_policy", "wait",
                       "vipdrain.drain.no_peer_policy: 'wait' must be one of proceed, fail"),
    "vrrp version": ("keepalived.vrrp_version", 4, "keepalived.vrrp_version: 4 must be one of 2, 3"),
    "vrid range": ("keepalived.virtual_router_id", 300, "keepalived.virtual_router_id: 300 is out of range 1..255"),
    "vrid as string": ("keepalived.virtual_router_id", "5",
                       "keepalived.virtual_router_id: '5' must be a whole number, not a string"),
    "timeout range": ("vipdrain.drain.timeout", 0, "vipdrain.drain.timeout: 0 is out of range 0.1..3600 (seconds)"),
    "bool as string": ("keepalived.unicast", "true",
                       "keepalived.unicast: 'true' must be a boolean (true or false), not a string"),
    "list as string": ("keepalived.extra.global_defs", "vrrp_garp_interval 1",
                       "keepalived.extra.global_defs: 'vrrp_garp_interval 1' must be a list, not a string"),
    "float for integer": ("keepalived.healthcheck.interval", 0.5,
                          "keepalived.healthcheck.interval: 0.5 must be a whole number, not a number"),
    "port range": ("vipdrain.drain.preserve_port", 70000,
                   "vipdrain.drain.preserve_port: 70000 is out of range 1..65535"),
    "haproxy-boshrelease type": ("keepalived.dont_track_primary", "no",
                                 "keepalived.dont_track_primary: 'no' must be a boolean (true or false), not a string"),
}


@pytest.mark.parametrize(("name", "value", "expected"), BAD.values(), ids=BAD.keys())
def test_bad_value_fails_rendering_naming_the_property(name, value, expected):
    assert expected in render_error(with_property(name, value))


@pytest.mark.parametrize(("name", "value", "expected"), [v for v in BAD.values() if v[0] in BY_NAME],
                         ids=[k for k, v in BAD.items() if v[0] in BY_NAME])
def test_python_says_the_same(name, value, expected):
    assert expected == f"{name}: {value!r} {static_problem(BY_NAME[name], value)}"


def test_every_mistake_is_listed_at_once():
    manifest = {"keepalived": {"vip": "192.0.2.100", "advert_int": "1s", "virtual_router_id": 0},
                "vipdrain": {"placement": "nearest"}}
    message = render_error(manifest)
    assert "invalid job properties (3): " in message
    for part in ("keepalived.advert_int: '1s' must be a number, not a string",
                 "keepalived.virtual_router_id: 0 is out of range 1..255",
                 "vipdrain.placement: 'nearest' must be one of preferred, sticky"):
        assert part in message


@pytest.mark.parametrize("prop", [p for p in PROPERTIES if p.choices or p.limits], ids=lambda p: p.name)
def test_edges_of_every_choice_and_range_render(prop):
    """The allowed extremes pass the template (and Python); one step outside fails both."""
    if prop.choices:
        good, bad = list(prop.choices), ["not-a-choice" if prop.type == "string" else 99]
    else:
        assert prop.limits is not None
        lo, hi = prop.limits
        step = 1 if prop.type == "integer" else 0.001
        good, bad = [lo, hi], [lo - step, hi + step]
    for value in good:
        assert static_problem(prop, value) is None
        render(with_property(prop.name, value), templates=[boshjob.CONFIG_TEMPLATE])
    for value in bad:
        assert static_problem(prop, value) is not None
        assert f"{prop.name}: " in render_error(with_property(prop.name, value))


def test_defaults_pass():
    render(VIP, templates=[boshjob.CONFIG_TEMPLATE])
