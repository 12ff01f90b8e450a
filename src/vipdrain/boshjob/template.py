"""The config template `vipdrain.yml.erb`: dumps properties + spec + link as JSON, after the checks
that need nothing but a value (generated from the schema)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from vipdrain.boshjob.job import (
    GENERATED_BY,
    LINK,
    LINK_INSTANCE_FIELDS,
    REGENERATE,
    SPEC_FIELDS,
    required_groups,
    retired_properties,
)

if TYPE_CHECKING:  # annotations only: the schema loads when the generator runs
    from vipdrain.config.schema import PropertyDef

def render_config_template(props: Sequence[PropertyDef], retired: Mapping[str, str] | None = None) -> str:
    """`vipdrain.yml.erb`: the job's properties, the instance's spec and the link, as JSON.

    JSON is YAML, and Ruby's JSON writer emits no tags, anchors or ambiguous plain scalars.
    haproxy-boshrelease's names are dumped too (when set), so that vipdrain can apply them.
    """
    groups = required_groups(props)
    retired = retired_properties() if retired is None else retired
    required = "\n".join(f"  p(%w({' '.join(g)}))" for g in groups)
    names = "\n".join(f"    {name}" for name in [*(p.name for p in props), *retired])
    checks = "\n".join(f"    {line}" for line in static_checks(props, retired).splitlines())
    spec_fields = ",\n".join(f"    '{f}' => spec.{f}" for f in SPEC_FIELDS)
    link_fields = ", ".join(f"'{f}' => i.{f}" for f in LINK_INSTANCE_FIELDS)
    return f"""<%-
  # {GENERATED_BY} from vipdrain.config.schema.PROPERTIES:
  # {REGENERATE}.
  # Dumps what vipdrain needs (properties, this instance's spec, the {LINK} link) as JSON, which is
  # YAML; vipdrain validates it in pre-start. No decisions here: they are tested in Python.
  require 'json'

  # At least one of each group must be set: p() with a list raises UnknownProperty, as in any
  # BOSH template, so a manifest without a VIP fails while rendering, before a VM is touched.
{required}

  # Every property the job declares, nested again by its dotted name; unset ones are left out.
  properties = {{}}
  %w(
{names}
  ).each do |name|
    if_p(name) do |value|
      *parents, leaf = name.split('.')
      parents.inject(properties) {{ |tree, key| tree[key] ||= {{}} }}[leaf] = value
    end
  end

  # What needs nothing but the value itself (type, choices, range; from vipdrain.config.schema) is
  # checked here too, so such a mistake fails the deploy while the director renders, before any
  # VM is touched, with vipdrain's wording. vipdrain checks everything again in pre-start.
  checks = JSON.parse(<<~'CHECKS')
{checks}
  CHECKS
  kinds = {{
    'string' => [String], 'integer' => [Integer], 'number' => [Integer, Float],
    'boolean' => [TrueClass, FalseClass], 'list' => [Array], 'map' => [Hash]
  }}
  described = {{
    String => 'a string', Integer => 'a number', Float => 'a number', TrueClass => 'a boolean',
    FalseClass => 'a boolean', Array => 'a list', Hash => 'a map'
  }}
  problems = []
  checks.each do |name, check|
    if_p(name) do |value|
      shown = value.is_a?(String) ? "'#{{value}}'" : value.inspect
      if kinds[check['type']].none? {{ |kind| value.is_a?(kind) }}
        actual = described.fetch(value.class, value.class.name)
        problems << "#{{name}}: #{{shown}} must be #{{check['words']}}, not #{{actual}}"
      elsif check['choices'] && !check['choices'].include?(value)
        problems << "#{{name}}: #{{shown}} must be one of #{{check['choices'].join(', ')}}"
      elsif check['limits'] && !value.between?(*check['limits'])
        problems << "#{{name}}: #{{shown}} is out of range #{{check['range']}}"
      end
    end
  end
  raise ArgumentError, "invalid job properties (#{{problems.size}}): #{{problems.join('; ')}}" unless problems.empty?

  links = {{}}
  if_link('{LINK}') do |link|
    links['{LINK}'] = {{ 'instances' => link.instances.map {{ |i| {{ {link_fields} }} }} }}
  end
-%>
<%= JSON.pretty_generate(
  'properties' => properties,
  'spec' => {{
{spec_fields}
  }},
  'links' => links
) %>
"""


def static_checks(props: Sequence[PropertyDef], retired: Mapping[str, str]) -> str:
    """The checks `vipdrain.config.schema.static_problem` makes, as JSON for the config template:
    {name: {type, words, choices?, limits?, range?}}, haproxy-boshrelease's names by type only."""
    import json

    from vipdrain.config.compat import LEGACY_TYPES
    from vipdrain.config.schema import TYPE_WORDS

    table: dict[str, dict[str, Any]] = {}
    for prop in props:
        check: dict[str, Any] = {"type": prop.type, "words": TYPE_WORDS[prop.type]}
        if prop.choices:
            check["choices"] = list(prop.choices)
        if prop.limits is not None:
            check["limits"], check["range"] = list(prop.limits), prop.range_text
        table[prop.name] = check
    for name in retired:
        kind = LEGACY_TYPES.get(name)
        if kind:
            table[name] = {"type": kind, "words": TYPE_WORDS[kind]}
    return "{\n" + ",\n".join(f"{json.dumps(name)}: {json.dumps(check)}" for name, check in table.items()) + "\n}"
