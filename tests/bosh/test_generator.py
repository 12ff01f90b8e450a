"""The generator: committed jobs/keepalived/ and docs/PROPERTIES.md are exactly its output, and
what it generates carries every property of the schema."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from bosh_harness import REPO

from vipdrain import boshjob
from vipdrain.cli import main
from vipdrain.config.schema import NO_DEFAULT, PROPERTIES, PropertyDef
from vipdrain.layout import Layout

LIFECYCLE = REPO / "lifecycle"

SAMPLE = (
    PropertyDef("keepalived.vip", "The VIP.", example="192.0.2.100"),
    PropertyDef("keepalived.vips", "More VIPs.", example=["192.0.2.101"], type="list"),
    PropertyDef("keepalived.virtual_router_id", "VRID.", default=1, example=51, type="integer"),
    PropertyDef("vipdrain.drain.timeout", "Seconds.", default=30.5, type="number"),
    PropertyDef("vipdrain.note", "Quotes ' \" and: colons, # hashes, unicode \u00e9.", default="a: b # c"),
)


def test_committed_files_match_the_generator() -> None:
    report = boshjob.differences(boshjob.build(PROPERTIES, LIFECYCLE), REPO)
    assert not report, "generated files are stale - run `make generate`:\n" + "\n".join(report)


def test_cli_check_passes_on_the_repository(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate-job", "--repo", str(REPO), "--check"]) == 0
    assert "up to date" in capsys.readouterr().err


def test_check_reports_drift_and_generate_repairs_it(tmp_path: Path) -> None:
    out = tmp_path / "release"
    assert main(["generate-job", "--repo", str(REPO), "--out", str(out)]) == 0
    spec = out / "jobs/keepalived/spec"
    spec.write_text(spec.read_text().replace("keepalived.vip:", "keepalived.vipp:"))
    (out / "jobs/keepalived/templates/drain.erb").unlink()
    (out / "jobs/keepalived/templates/stray.erb").write_text("x")
    report = boshjob.differences(boshjob.build(PROPERTIES, LIFECYCLE), out)
    kinds = sorted(line.split(":", 1)[0] for line in report)
    assert kinds == ["differs", "missing", "not generated (remove it)"]
    assert main(["generate-job", "--repo", str(REPO), "--out", str(out), "--check"]) == 1
    assert main(["generate-job", "--repo", str(REPO), "--out", str(out)]) == 0
    assert not (out / "jobs/keepalived/templates/stray.erb").exists()
    assert main(["generate-job", "--repo", str(REPO), "--out", str(out), "--check"]) == 0


def test_generation_is_deterministic() -> None:
    assert boshjob.build(PROPERTIES, LIFECYCLE) == boshjob.build(PROPERTIES, LIFECYCLE)


def _spec(props: tuple[PropertyDef, ...] = PROPERTIES) -> dict:
    return yaml.safe_load(boshjob.render_spec(props))


@pytest.mark.parametrize("props", [PROPERTIES, SAMPLE], ids=["schema", "sample"])
def test_spec_declares_every_property_with_its_default_and_example(props: tuple[PropertyDef, ...]) -> None:
    declared = _spec(props)["properties"]
    retired = boshjob.retired_properties()
    assert list(declared) == [p.name for p in props] + list(retired)
    for name, advice in retired.items():
        assert declared[name] == {"description": boshjob.retired_description(advice)}  # no default
    for prop in props:
        entry = declared[prop.name]
        assert entry["description"] == prop.description
        assert entry.get("default", NO_DEFAULT) == prop.default
        assert entry.get("example", NO_DEFAULT) == prop.example
        # BOSH reads `type` as a config-server generation type: the type word goes in a comment.
        assert "type" not in entry


def test_spec_shape_links_packages_and_templates() -> None:
    spec = _spec()
    assert spec["name"] == "keepalived"
    assert spec["packages"] == ["keepalived", "python-3.12", "vipdrain"]
    assert spec["provides"] == [
        {"name": "keepalived", "type": "keepalived", "properties": boshjob.link_properties(PROPERTIES)}
    ]
    assert {"keepalived.vip", "keepalived.vips"} <= set(spec["provides"][0]["properties"])
    assert spec["consumes"] == [{"name": "keepalived", "type": "keepalived", "optional": True}]
    assert spec["templates"] == {
        **{s.template: s.destination for s in boshjob.SCRIPTS},
        "vipdrain.yml.erb": "config/vipdrain.yml",
    }
    for destination in ("bin/pre-start", "bin/drain", "bin/post-start", "bin/post-deploy"):
        assert destination in spec["templates"].values()
    on_disk = {p.name for p in (REPO / "jobs/keepalived/templates").iterdir()}
    assert on_disk == set(spec["templates"])


def test_config_destination_matches_the_layout() -> None:
    from vipdrain.layout import Layout

    layout = Layout(root=Path("/var/vcap"))
    assert layout.config_file == Path("/var/vcap/jobs/keepalived") / boshjob.CONFIG_DESTINATION


def test_config_template_lists_every_property_once() -> None:
    text = boshjob.render_config_template(PROPERTIES)
    listed = re.search(r"%w\(\n(.*?)\n  \)\.each", text, re.S)
    assert listed is not None
    assert listed.group(1).split() == [p.name for p in PROPERTIES] + list(boshjob.retired_properties())
    assert "p(%w(keepalived.vip keepalived.vips))" in text


def test_required_groups_only_name_existing_properties() -> None:
    assert boshjob.required_groups(SAMPLE) == [("keepalived.vip", "keepalived.vips")]
    only_vips = tuple(p for p in SAMPLE if p.name != "keepalived.vip")
    assert boshjob.required_groups(only_vips) == [("keepalived.vips",)]
    assert boshjob.required_groups(SAMPLE[2:]) == []
    assert "p(%w(" not in boshjob.render_config_template(SAMPLE[2:])


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ((PropertyDef("a.b", "x"), PropertyDef("a.b.c", "y")), "is a property and the parent of"),
        ((PropertyDef("a.b", "x"), PropertyDef("a.b", "y")), "defined twice"),
        ((PropertyDef("A.b", "x"),), "not a dotted lower-case name"),
        ((PropertyDef("single", "x"),), "not a dotted lower-case name"),
        ((PropertyDef("a.b c", "x"),), "not a dotted lower-case name"),
    ],
)
def test_invalid_property_tables_are_refused(props: tuple[PropertyDef, ...], message: str) -> None:
    with pytest.raises(boshjob.GeneratorError, match=message):
        boshjob.build(props, LIFECYCLE)


def test_scripts_are_self_contained_and_free_of_erb() -> None:
    files = boshjob.build(PROPERTIES, LIFECYCLE)
    for script in boshjob.SCRIPTS:
        text = files[boshjob.JOB_DIR / "templates" / script.template]
        if script.source == "healthcheck":
            continue  # stands alone: test_healthcheck_starts_no_process
        assert text.startswith("#!/usr/bin/env bash\n# GENERATED by `vipdrain generate-job`")
        assert boshjob.INCLUDE_MARK not in text
        assert "load_runtime()" in text and 'ROOT="${VIPDRAIN_ROOT:-/var/vcap}"' in text
        assert "<%" not in text


def test_retired_names_must_not_clash_with_the_schema() -> None:
    with pytest.raises(boshjob.GeneratorError, match="also in the schema"):
        boshjob.build(SAMPLE, LIFECYCLE, retired={"keepalived.vip": "is old"})


def test_retired_names_cover_haproxy_boshreleases_keepalived_job() -> None:
    """Every property of haproxy-boshrelease's keepalived job is either ours or retired."""
    theirs = {
        "keepalived.vip",
        "keepalived.healthcheck_name",
        "keepalived.healthcheck_command",
        "keepalived.interface",
        "keepalived.virtual_router_id",
        "keepalived.dont_track_primary",
    }
    ours = {p.name for p in PROPERTIES} | set(boshjob.retired_properties())
    assert theirs <= ours


def test_erb_in_a_lifecycle_script_is_refused(tmp_path: Path) -> None:
    lifecycle = tmp_path / "lifecycle"
    shutil.copytree(LIFECYCLE, lifecycle)
    (lifecycle / "drain").write_text("#!/bin/bash\necho <%= p('x') %>\n")
    with pytest.raises(boshjob.GeneratorError, match="contains '<%'"):
        boshjob.build(PROPERTIES, lifecycle)


def test_missing_include_is_refused(tmp_path: Path) -> None:
    lifecycle = tmp_path / "lifecycle"
    shutil.copytree(LIFECYCLE, lifecycle)
    (lifecycle / "common.sh").unlink()
    with pytest.raises(boshjob.GeneratorError, match=r"includes common\.sh"):
        boshjob.build(PROPERTIES, lifecycle)


def test_properties_doc_covers_every_property_with_parseable_examples() -> None:
    doc = boshjob.render_properties_doc(PROPERTIES)
    for prop in PROPERTIES:
        assert f"\n### {prop.name}\n" in doc
        assert f"[`{prop.name}`](#{prop.name.replace('.', '')})" in doc
    snippets = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    assert len(snippets) == sum(1 for p in PROPERTIES if p.example is not NO_DEFAULT)
    examples = [p for p in PROPERTIES if p.example is not NO_DEFAULT]
    for prop, snippet in zip(examples, snippets, strict=True):
        node = yaml.safe_load(snippet)
        for key in prop.name.split("."):
            node = node[key]
        assert node == prop.example


def test_spec_values_survive_yaml_quoting() -> None:
    spec = _spec(SAMPLE)
    assert spec["properties"]["vipdrain.note"]["default"] == "a: b # c"
    assert spec["properties"]["vipdrain.note"]["description"] == SAMPLE[-1].description
    assert spec["properties"]["vipdrain.drain.timeout"]["default"] == 30.5


def test_find_repo_walks_up(tmp_path: Path) -> None:
    assert boshjob.find_repo(REPO / "src" / "vipdrain") == REPO
    assert boshjob.find_repo(tmp_path) == REPO  # falls back to this source tree


def test_healthcheck_starts_no_process() -> None:
    """keepalived runs bin/healthcheck every second: bash itself, straight from the stemcell's
    /bin/bash (no `env` exec), no runtime to load, no command substitution or pipe (each forks)."""
    text = boshjob.build(PROPERTIES, LIFECYCLE)[boshjob.JOB_DIR / "templates" / "healthcheck.erb"]
    assert text.startswith("#!/bin/bash\n# GENERATED by `vipdrain generate-job` from lifecycle/healthcheck")
    code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    forks = re.compile(r"\$\((?!\()|`|[^|]\|[^|]|load_runtime")  # $( but not $((, a backtick, a pipe
    assert not [line for line in code if forks.search(line) and not line.rstrip().endswith(")")]  # not case arms
    assert "<%" not in text
    (script,) = [s for s in boshjob.SCRIPTS if s.source == "healthcheck"]
    # keepalived.conf names the file where the job puts it.
    assert Layout(root=Path("/var/vcap")).healthcheck_script == Path("/var/vcap/jobs/keepalived") / script.destination
