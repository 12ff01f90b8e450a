"""Every template of the job rendered with real Ruby ERB, as the director would, for several
property sets and instance specs; the config file is checked against the schema and loaded by
vipdrain.config."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from bosh_harness import BOOTSTRAP_SPEC, JOB_DIR, REPO, RenderError, link_instances, render

from vipdrain import boshjob
from vipdrain.config.schema import PROPERTIES

CONFIG = boshjob.CONFIG_DESTINATION

SECOND_SPEC = {
    **BOOTSTRAP_SPEC,
    "index": 2,
    "id": "0c5e9a3e-0000-4000-8000-000000000002",
    "bootstrap": False,
    "ip": "192.0.2.12",
    "az": "z2",
}

# (id, manifest properties, spec, links)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("seed-compatible", {"keepalived": {"vip": "192.0.2.100"}}, BOOTSTRAP_SPEC, {}),
    (
        "vips-unicast-link",
        {
            "keepalived": {
                "vips": ["192.0.2.100", {"address": "192.0.2.101", "virtual_router_id": 9, "interface": "eth1"}],
                "unicast": True,
                "virtual_router_id": 7,
                "advert_int": 0.5,
            },
            "vipdrain": {"placement": "sticky", "drain": {"timeout": 12.5, "no_peer_policy": "fail"}},
        },
        SECOND_SPEC,
        link_instances("192.0.2.10", "192.0.2.11", "192.0.2.12", me=SECOND_SPEC),
    ),
    (
        "ipv6-email-hooks",
        {
            "keepalived": {
                "vip": "2001:db8::100",
                "interface": "eth0",
                "notification_email": {"to": ["ops@example.com"], "smtp_server": "192.0.2.25:25"},
                "notify": {"master": "/var/vcap/jobs/eip/bin/claim"},
                "extra": {"vrrp_instance": ["dont_track_primary"]},
            },
            "vipdrain": {"haproxy": {"pid_file": "/var/vcap/sys/run/bpm/haproxy/haproxy.pid", "drain_grace_time": 40}},
        },
        {**BOOTSTRAP_SPEC, "az": None},
        link_instances("192.0.2.10"),
    ),
    (
        "awkward-strings",
        {
            "keepalived": {
                "vip": "192.0.2.100",
                "healthcheck": {"command": "/var/vcap/jobs/haproxy/bin/check 'two words' \u00e9t\u00e9 a:b"},
            }
        },
        BOOTSTRAP_SPEC,
        {},
    ),
]


def expected_properties(manifest: dict[str, Any]) -> dict[str, Any]:
    """What BOSH gives the template: every declared property, the default when unset."""
    tree: dict[str, Any] = {}
    for prop in PROPERTIES:
        node: Any = manifest
        for key in prop.name.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if node is None and prop.has_default:
            node = prop.default
        if node is None:
            continue
        *parents, leaf = prop.name.split(".")
        target = tree
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = node
    return tree


def _config(rendered: dict[str, str]) -> dict[str, Any]:
    text = rendered[CONFIG]
    as_yaml = yaml.safe_load(text)
    assert as_yaml == json.loads(text), "the rendered config must read the same as YAML and as JSON"
    return as_yaml


@pytest.mark.parametrize(("manifest", "spec", "links"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_config_carries_properties_spec_and_link(
    manifest: dict[str, Any], spec: dict[str, Any], links: dict[str, Any]
) -> None:
    config = _config(render(manifest, spec, links, templates=[boshjob.CONFIG_TEMPLATE]))
    assert set(config) == {"properties", "spec", "links"}
    assert config["properties"] == expected_properties(manifest)
    assert config["spec"] == {k: spec.get(k) for k in boshjob.SPEC_FIELDS}
    if links:
        instances = links["keepalived"]["instances"]
        assert config["links"] == {
            "keepalived": {"instances": [{k: i[k] for k in boshjob.LINK_INSTANCE_FIELDS} for i in instances]}
        }
    else:
        assert config["links"] == {}


def test_defaults_come_from_the_spec_as_ruby_reads_it() -> None:
    """Ruby's YAML parser reads the spec's defaults back to exactly the schema's values."""
    config = _config(render({"keepalived": {"vip": "192.0.2.100"}}, templates=[boshjob.CONFIG_TEMPLATE]))
    for prop in PROPERTIES:
        if not prop.has_default:
            continue
        node: Any = config["properties"]
        for key in prop.name.split("."):
            node = node[key]
        assert node == prop.default and type(node) is type(prop.default), prop.name


@pytest.mark.parametrize(
    "manifest",
    [
        {},
        {"keepalived": {"interface": "eth0"}},
        {"keepalived": {"vip": None}},
        # A typo: BOSH drops properties the spec does not declare, so the VIP is simply missing.
        {"keepalived": {"vipp": "192.0.2.100"}},
    ],
    ids=["empty", "no-vip", "null-vip", "typo"],
)
def test_missing_vip_fails_rendering_like_bosh(manifest: dict[str, Any]) -> None:
    with pytest.raises(RenderError) as failure:
        render(manifest, templates=[boshjob.CONFIG_TEMPLATE])
    assert failure.value.kind == "UnknownProperty"
    assert str(failure.value).startswith("Error filling in template 'vipdrain.yml.erb' (line ")
    assert "Can't find property '[\"keepalived.vip\", \"keepalived.vips\"]'" in str(failure.value)


def test_either_vip_property_satisfies_the_requirement() -> None:
    for manifest in ({"keepalived": {"vip": "192.0.2.100"}}, {"keepalived": {"vips": ["192.0.2.100"]}}):
        assert _config(render(manifest, templates=[boshjob.CONFIG_TEMPLATE]))["properties"]["keepalived"]


def test_undeclared_link_is_refused_like_bosh() -> None:
    with pytest.raises(AssertionError, match="not consumed by this job"):
        render({"keepalived": {"vip": "192.0.2.100"}}, links={"other": {"instances": []}})


def test_link_with_no_instances_renders_empty_peer_list() -> None:
    config = _config(
        render({"keepalived": {"vip": "192.0.2.100"}}, links={"keepalived": {"instances": [], "properties": {}}})
    )
    assert config["links"] == {"keepalived": {"instances": []}}


def test_every_template_renders_and_scripts_come_out_verbatim(rendered_job: dict[str, str]) -> None:
    spec = yaml.safe_load((JOB_DIR / "spec").read_text())
    assert set(rendered_job) == {*spec["templates"].values(), "monit"}
    # The scripts hold no ERB: what BOSH renders is the generated file, byte for byte.
    for source, destination in spec["templates"].items():
        if destination.startswith("bin/"):
            assert rendered_job[destination] == (JOB_DIR / "templates" / source).read_text()
    assert rendered_job["monit"] == (JOB_DIR / "monit").read_text()


def test_monit_watches_keepalived_pid_file_with_long_stop_timeout(rendered_job: dict[str, str]) -> None:
    monit = rendered_job["monit"]
    assert "check process keepalived" in monit
    assert "with pidfile /var/vcap/sys/run/keepalived/keepalived.pid" in monit
    assert '"/var/vcap/jobs/keepalived/bin/keepalived_ctl stop" with timeout 90 seconds' in monit
    # Longer than keepalived_ctl's SIGTERM deadline (60 s), so monit waits for VIP removal.
    ctl = rendered_job["bin/keepalived_ctl"]
    assert 'STOP_TIMEOUT="${KEEPALIVED_STOP_TIMEOUT:-60}"' in ctl


# --- the rendered config loads in vipdrain.config --------------------------------------------


def _load_config(path: Path) -> Any:
    config = pytest.importorskip("vipdrain.config", reason="vipdrain.config not written yet")
    load = config.load_config
    params = inspect.signature(load).parameters
    # The instance IPs are documentation addresses no interface here has: resolve `auto` to eth0.
    for name in ("interface_of", "interface_lookup", "lookup_interface"):
        if name in params:
            return load(path, **{name: lambda *_a, **_k: "eth0"})
    return load(path)


@pytest.mark.parametrize(("manifest", "spec", "links"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rendered_config_loads_in_vipdrain(
    tmp_path: Path, manifest: dict[str, Any], spec: dict[str, Any], links: dict[str, Any]
) -> None:
    manifest = json.loads(json.dumps(manifest))
    manifest.setdefault("keepalived", {}).setdefault("interface", "eth0")
    path = tmp_path / "vipdrain.yml"
    path.write_text(render(manifest, spec, links, templates=[boshjob.CONFIG_TEMPLATE])[CONFIG])
    cfg = _load_config(path)
    assert cfg.instance.index == spec["index"]
    assert cfg.instance.bootstrap is spec["bootstrap"]
    assert str(cfg.instance.ip) == spec["ip"]
    assert len(cfg.vips) == len(manifest["keepalived"].get("vips", [None]))


def test_repo_example_manifest_properties_render(tmp_path: Path) -> None:
    """The properties of manifests/haproxy-vipdrain.yml render (and load) as they are."""
    manifest = yaml.safe_load((REPO / "manifests" / "haproxy-vipdrain.yml").read_text())
    group = next(g for g in manifest["instance_groups"] if g["name"] == "haproxy")
    job = next(j for j in group["jobs"] if j["name"] == "keepalived")
    config = _config(render(job["properties"], BOOTSTRAP_SPEC, link_instances("192.0.2.10", "192.0.2.11")))
    assert config["properties"]["keepalived"]["vip"] == job["properties"]["keepalived"]["vip"]
