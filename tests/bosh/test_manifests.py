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

VARS_FILE = REPO / "manifests" / "operations" / "add-vipdrain-vars.yml"

#: haproxy-boshrelease's manifests/haproxy.yml, verbatim (cloudfoundry/haproxy-boshrelease at commit
#: c8180eddb84b78c107b19f4c6191616120c05d21): what the ops file patches. It runs *one* instance.
HAPROXY_MANIFEST: dict[str, Any] = yaml.safe_load(
    (Path(__file__).with_name("fixtures") / "haproxy-boshrelease" / "haproxy.yml").read_text()
)
#: Its own variables, and the two the ops file requires.
REQUIRED_VARS: dict[str, Any] = {
    "haproxy-backend-port": 80,
    "haproxy-backend-servers": "[192.0.2.50, 192.0.2.51]",
    "vip": "192.0.2.100",
    "vrid": 1,
}


def _variables(**overrides: Any) -> dict[str, Any]:
    """What `-l add-vipdrain-vars.yml -v vip=... -v vrid=... -v K=V` gives: -v wins over -l
    (bosh-cli cmd/opts/var_flags.go `AsVariables` applies vars files first, then -v)."""
    return {**yaml.safe_load(VARS_FILE.read_text()), **REQUIRED_VARS, **overrides}


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
    result = _apply(base, ops, _variables())
    job = _keepalived_job(result)
    assert job["release"] == "vipdrain"
    # The migration settings features/migration tests: haproxy-boshrelease's VRID and VRRPv2.
    assert job["properties"]["keepalived"] == {"vip": "192.0.2.100", "virtual_router_id": 1, "vrrp_version": 2}
    assert job["properties"]["vipdrain"]["haproxy"]["probe"] == "127.0.0.1:80"
    assert result["instance_groups"][0]["instances"] == 2, "haproxy-boshrelease's 1 instance leaves no peer"
    assert {"name": "vipdrain", "version": "latest"} in result["releases"]
    assert result["update"]["max_in_flight"] == 1
    assert [j["name"] for j in result["instance_groups"][0]["jobs"]] == ["haproxy", "keepalived"]


def test_ops_file_variables_override_the_defaults() -> None:
    ops = yaml.safe_load(OPS_FILE.read_text())
    result = _apply(HAPROXY_MANIFEST, ops, _variables(**{"haproxy-instances": 3, "vipdrain-probe": "127.0.0.1:443"}))
    assert result["instance_groups"][0]["instances"] == 3
    assert _keepalived_job(result)["properties"]["vipdrain"]["haproxy"]["probe"] == "127.0.0.1:443"


def test_every_optional_ops_file_variable_has_a_default() -> None:
    used = set(re.findall(r"\(\(([^)]+)\)\)", OPS_FILE.read_text()))
    defaults = yaml.safe_load(VARS_FILE.read_text())
    assert used - {"vip", "vrid"} == set(defaults)
    from vipdrain.config.schema import PROPERTIES

    probe = next(p for p in PROPERTIES if p.name == "vipdrain.haproxy.probe")
    assert defaults["vipdrain-probe"] == probe.default, "the ops file's default is the job's default"
    assert defaults["haproxy-instances"] >= 2


def test_ops_file_result_renders_and_loads(tmp_path: Path) -> None:
    result = _apply(HAPROXY_MANIFEST, yaml.safe_load(OPS_FILE.read_text()), _variables())
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


def test_metrics_ops_file_points_vipdrain_at_node_exporters_textfile_directory(tmp_path: Path) -> None:
    """node-exporter-boshrelease's ctl script passes `--collector.textfile.directory=
    /var/vcap/jobs/node_exporter/config` (jobs/node_exporter/templates/bin/node_exporter_ctl.erb)."""
    ops = yaml.safe_load(OPS_FILE.read_text())
    ops += yaml.safe_load((OPS_FILE.parent / "add-vipdrain-metrics.yml").read_text())
    result = _apply(HAPROXY_MANIFEST, ops, _variables())
    assert [j["name"] for j in result["instance_groups"][0]["jobs"]] == ["haproxy", "keepalived", "node_exporter"]
    assert {"name": "node-exporter", "version": "latest"} in result["releases"]
    properties = _keepalived_job(result)["properties"]
    properties["keepalived"]["interface"] = "eth0"
    text = render(properties, BOOTSTRAP_SPEC, link_instances("192.0.2.10", "192.0.2.11"))[boshjob.CONFIG_DESTINATION]
    path = tmp_path / "vipdrain.yml"
    path.write_text(text)
    from vipdrain.config import load_config

    cfg = load_config(path, interface_of=lambda _ip: "eth0")
    assert cfg.metrics.textfile_dir == "/var/vcap/jobs/node_exporter/config"
    assert cfg.metrics.survey_interval == 60
