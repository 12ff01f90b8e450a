"""docs/PROPERTIES.md: the property reference, in the order of the job's `spec`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from vipdrain.boshjob.job import (
    GENERATED_BY,
    JOB,
    LINK,
    REGENERATE,
    has_value,
    link_properties,
    required_groups,
    requirement_of,
    retired_properties,
    yaml_inline,
)

if TYPE_CHECKING:  # annotations only: the schema loads when the generator runs
    from vipdrain.config.schema import PropertyDef

def nested(name: str, value: Any) -> dict[str, Any]:
    """`a.b.c`, value -> {"a": {"b": {"c": value}}}: a property as a manifest writes it."""
    tree: dict[str, Any] = {}
    node = tree
    *parents, leaf = name.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return tree


def _manifest_snippet(name: str, value: Any) -> str:
    import yaml

    return yaml.safe_dump(nested(name, value), default_flow_style=False, sort_keys=False, allow_unicode=True)


def _anchor(name: str) -> str:
    return name.replace(".", "")


def render_properties_doc(props: Sequence[PropertyDef], retired: Mapping[str, str] | None = None) -> str:
    """docs/PROPERTIES.md: a summary table and one section per property, in spec order."""
    groups = required_groups(props)
    retired = retired_properties() if retired is None else retired
    out = [
        f"# Properties of the `{JOB}` job",
        "",
        f"<!-- {GENERATED_BY} from vipdrain.config.schema.PROPERTIES: {REGENERATE}. -->",
        "",
        f"Every property of the `{JOB}` job, in the order of its `spec`. Set them under the job's",
        "`properties:` in the deployment manifest ([BOSH.md](BOSH.md) shows where).",
        "`vipdrain check --config FILE` validates a rendered config and reports every problem at once;",
        "pre-start does the same on the VM and fails the deploy before keepalived is touched. A wrong type,",
        "a value outside its choices or its range (the *one of* and *range* below) fails earlier, while the",
        "director renders the job's templates, before any VM is touched.",
        "",
    ]
    if groups:
        out.append("**Required:** " + "; ".join("one of " + ", ".join(f"`{n}`" for n in g) for g in groups) + ".")
        out.append("All other properties are optional.")
        out.append("")
    out += [
        f"The job provides and (optionally) consumes a `{LINK}` link of type `{LINK}`: the group's",
        "own instances (`address`, `index`, `bootstrap`, `id`), used as unicast peers and as the peers",
        "a drain expects to see. It shares "
        + ", ".join(f"`{n}`" for n in link_properties(props))
        + " with consumers.",
        "",
        "| property | type | default |",
        "|---|---|---|",
    ]
    for prop in props:
        default = f"`{yaml_inline(prop.default)}`" if has_value(prop, "default") else "-"
        if requirement_of(prop, groups):
            default = "required" if default == "-" else default
        out.append(f"| [`{prop.name}`](#{_anchor(prop.name)}) | {prop.type} | {default} |")
    current_section = None
    for prop in props:
        section = prop.name.split(".")[0]
        if section != current_section:
            out += ["", f"## {section}.*"]
            current_section = section
        facts = [f"*{prop.type}*"]
        requirement = requirement_of(prop, groups)
        if requirement:
            facts.append(f"**{requirement}**")
        facts.append(f"default: `{yaml_inline(prop.default)}`" if has_value(prop, "default") else "no default")
        if prop.choices:
            facts.append("one of " + ", ".join(f"`{c}`" for c in prop.choices))
        if prop.limits is not None:
            facts.append(f"range {prop.range_text}")
        out += ["", f"### {prop.name}", "", " · ".join(facts), "", prop.description]
        if has_value(prop, "example"):
            out += ["", "Example:", "", "```yaml", _manifest_snippet(prop.name, prop.example).rstrip(), "```"]
    if retired:
        out += [
            "",
            "## haproxy-boshrelease's property names",
            "",
            "Names of haproxy-boshrelease's keepalived job that are not this job's own. The spec declares",
            "them (BOSH would otherwise drop them silently), so a manifest written for that job deploys",
            "unchanged: each one set is applied as below, with one warning naming the property to use.",
            "See [BOSH.md](BOSH.md#upgrading-from-haproxy-boshreleases-keepalived-job).",
            "",
            "| property | what vipdrain does with it |",
            "|---|---|",
        ]
        out += [f"| `{name}` | {advice} |" for name, advice in retired.items()]
    return "\n".join(out) + "\n"
