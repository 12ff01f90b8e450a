"""Generate the BOSH job `jobs/keepalived/` and `docs/PROPERTIES.md` from their two sources.

- `lifecycle/`: the hand-written hook scripts (pre-start, drain, post-start, post-deploy), the
  keepalived ctl script, the `bin/vipdrain` wrapper, the monit file and `common.sh`, which the
  scripts source when run from `lifecycle/` and which is pasted into each generated script;
- `vipdrain.config.schema.PROPERTIES`: every job property (name, description, default, example, type).

From them come the job's `spec` (properties, templates, packages, links), its templates (the
scripts plus the config template `vipdrain.yml.erb`, which dumps properties + spec + link as
JSON), the monit file and the property reference. Everything under `jobs/keepalived/` is
generated: the generator owns that directory, and `--check` (a test runs it) fails when the
committed files differ from what it would write, so neither can drift from the schema.

Only `p`, `if_p`, `spec` and `if_link` appear in the ERB: one loop dumps the values, and one
applies the checks that need nothing but a value (type, choices, range), generated from the schema
(`vipdrain.config.schema.static_problem` makes the same checks in Python), so such a mistake fails while
the director renders, before any VM is touched. All other judgement is `vipdrain.config`'s.

Modules: `job` (what the job is; its `spec`), `template` (the config template), `scripts` (the
lifecycle scripts), `docs` (docs/PROPERTIES.md), `generate` (all of them, `--check`, the commands).
"""

from vipdrain.boshjob.docs import (
    render_properties_doc,
)
from vipdrain.boshjob.generate import (
    build,
    cmd_generate_job,
    cmd_keepalived_argv,
    differences,
    find_repo,
    write,
)
from vipdrain.boshjob.job import (
    CONFIG_DESTINATION,
    CONFIG_TEMPLATE,
    GENERATED_BY,
    INCLUDE_MARK,
    JOB,
    JOB_DESCRIPTION,
    JOB_DIR,
    LINK,
    LINK_INSTANCE_FIELDS,
    LINK_PROPERTIES,
    MONIT_SOURCE,
    PACKAGES,
    PROPERTIES_DOC,
    REGENERATE,
    REQUIRED_ONE_OF,
    SCRIPTS,
    SPEC_FIELDS,
    GeneratorError,
    Script,
    check_properties,
    link_properties,
    render_spec,
    required_groups,
    retired_description,
    retired_properties,
)
from vipdrain.boshjob.scripts import (
    expand_includes,
    render_script,
)
from vipdrain.boshjob.template import (
    render_config_template,
    static_checks,
)

__all__ = [
    "CONFIG_DESTINATION",
    "CONFIG_TEMPLATE",
    "GENERATED_BY",
    "INCLUDE_MARK",
    "JOB",
    "JOB_DESCRIPTION",
    "JOB_DIR",
    "LINK",
    "LINK_INSTANCE_FIELDS",
    "LINK_PROPERTIES",
    "MONIT_SOURCE",
    "PACKAGES",
    "PROPERTIES_DOC",
    "REGENERATE",
    "REQUIRED_ONE_OF",
    "SCRIPTS",
    "SPEC_FIELDS",
    "GeneratorError",
    "Script",
    "build",
    "check_properties",
    "cmd_generate_job",
    "cmd_keepalived_argv",
    "differences",
    "expand_includes",
    "find_repo",
    "link_properties",
    "render_config_template",
    "render_properties_doc",
    "render_script",
    "render_spec",
    "required_groups",
    "retired_description",
    "retired_properties",
    "static_checks",
    "write",
]
