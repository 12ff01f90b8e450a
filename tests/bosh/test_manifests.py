"""The example manifest and the ops file: the ops file applies (go-patch semantics, the subset it
uses) to a haproxy-boshrelease style manifest - with or without that release's keepalived job -
and the result renders the job and loads in vipdrain.config."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from bosh_harness import BOOTSTRAP_SPEC, REPO, link_instances, render

from vipdrain import boshjob

OPS_FILE = REPO / "manifests" / "operations" / "add-vipdrain.yml"
EXAMPLE = REPO / "manifests" / "haproxy-vipdrain.yml"

# The shape of haproxy-boshrelease's manifests/haproxy.yml (what the ops file patches).
HAPROXY_MANIFEST: dict[str, Any] = {
    "name": "haproxy",
    "instance_groups": [
        {
            "name": "haproxy",
            "instances": 2,
            "jobs": [{"name": "haproxy", "release": "haproxy", "properties": {"ha_proxy": {"backend_port": 80}}}],
        }
    ],
    "update": {"canaries": 1, "max_in_flight": 2, "canary_watch_time": "1000-30000"},
    "releases": [{"name": "haproxy", "version": "latest"}],
}


def _apply(document: Any, operations: list[dict[str, Any]], variables: dict[str, Any]) -> Any:
    """go-patch `replace` with `/key`, `/name=value` and optional `?` segments, then ((vars))."""
    doc = copy.deepcopy(document)
    for op in operations:
        assert op["type"] == "replace", op
        *parents, last = op["path"].strip("/").split("/")
        node = doc
        for segment in parents:
            node = _step(node, segment, create=segment.endswith("?"))
        _set(node, last, copy.deepcopy(op["value"]))
    text = yaml.safe_dump(doc)
    for name, value in variables.items():
        text = text.replace(f"(({name}))", str(value))
    leftover = re.findall(r"\(\([^)]+\)\)", text)
    assert not leftover, f"unset variables: {leftover}"
    return yaml.safe_load(text)


def _step(node: Any, segment: str, create: bool) -> Any:
    segment = segment.rstrip("?")
    if "=" in segment:
        key, value = segment.split("=", 1)
        for item in node:
            if item.get(key) == value:
                return item
        assert create, f"no element {segment}"
        node.append({key: value})
        return node[-1]
    if segment not in node:
        assert create, f"no key {segment}"
        node[segment] = {}
    return node[segment]


def _set(node: Any, segment: str, value: Any) -> None:
    segment = segment.rstrip("?")
    if "=" in segment:
        key, wanted = segment.split("=", 1)
        for i, item in enumerate(node):
            if item.get(key) == wanted:
                node[i] = value
                return
        node.append(value)
    else:
        node[segment] = value


def _keepalived_job(manifest: dict[str, Any]) -> dict[str, Any]:
    group = next(g for g in manifest["instance_groups"] if g["name"] == "haproxy")
    jobs = [j for j in group["jobs"] if j["name"] == "keepalived"]
    assert len(jobs) == 1
    return jobs[0]


@pytest.mark.parametrize("with_old_job", [False, True], ids=["fresh", "replaces-haproxy-keepalived"])
def test_ops_file_adds_the_job_next_to_haproxy(with_old_job: bool) -> None:
    base = copy.deepcopy(HAPROXY_MANIFEST)
    if with_old_job:
        base["instance_groups"][0]["jobs"].append(
            {"name": "keepalived", "release": "haproxy", "properties": {"keepalived": {"vip": "192.0.2.99"}}}
        )
    ops = yaml.safe_load(OPS_FILE.read_text())
    result = _apply(base, ops, {"vip": "192.0.2.100", "vrid": 1})
    job = _keepalived_job(result)
    assert job["release"] == "vipdrain"
    # The migration settings features/migration tests: haproxy-boshrelease's VRID and VRRPv2.
    assert job["properties"]["keepalived"] == {"vip": "192.0.2.100", "virtual_router_id": 1, "vrrp_version": 2}
    assert {"name": "vipdrain", "version": "latest"} in result["releases"]
    assert result["update"]["max_in_flight"] == 1
    assert [j["name"] for j in result["instance_groups"][0]["jobs"]] == ["haproxy", "keepalived"]


def test_ops_file_result_renders_and_loads(tmp_path: Path) -> None:
    result = _apply(HAPROXY_MANIFEST, yaml.safe_load(OPS_FILE.read_text()), {"vip": "192.0.2.100", "vrid": 1})
    properties = _keepalived_job(result)["properties"]
    properties["keepalived"]["interface"] = "eth0"  # `auto` needs the VM's interfaces
    text = render(properties, BOOTSTRAP_SPEC, link_instances("192.0.2.10", "192.0.2.11"))[boshjob.CONFIG_DESTINATION]
    path = tmp_path / "vipdrain.yml"
    path.write_text(text)
    from vipdrain.config import load_config

    cfg = load_config(path, interface_of=lambda _ip: "eth0")
    assert [str(v.address) for v in cfg.vips] == ["192.0.2.100"]
    assert (cfg.vips[0].virtual_router_id, cfg.vrrp_version) == (1, 2)
    assert [str(p.address) for p in cfg.peers] == ["192.0.2.11"]


def test_example_manifest_settings_that_matter() -> None:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    group = next(g for g in manifest["instance_groups"] if g["name"] == "haproxy")
    assert group["instances"] >= 2
    assert manifest["update"]["max_in_flight"] < group["instances"]
    assert group["update"]["max_in_flight"] < group["instances"]
    assert manifest["update"]["canaries"] == 1
    assert {j["name"] for j in group["jobs"]} == {"haproxy", "keepalived"}
    assert {r["name"] for r in manifest["releases"]} >= {"haproxy", "vipdrain"}
