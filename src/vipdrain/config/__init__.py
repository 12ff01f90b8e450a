"""The job's rendered config file -> a validated `JobConfig`, with every problem reported at once.

The file BOSH renders holds three sections:

    properties: {keepalived: {...}, vipdrain: {...}}   # the job's properties (see vipdrain.config.schema)
    spec: {name, index, id, bootstrap, ip, az, deployment}
    links: {keepalived: {instances: [{address, index, bootstrap, id}, ...]}}

Validation never stops at the first mistake: each one becomes a `Problem(path, value, message)`
and `ConfigInvalid` carries them all. A value that is wrong is replaced by its default while the
rest is checked, and checks that combine several properties only run when those are valid, so
one mistake gives one problem. Pure, except for the interface lookup behind `interface: auto`,
which is injected (`vipdrain.netstate.interface_of` by default).

Modules, in the order a load runs through them: `load` (file -> document), `props` (property names
and the typed accessor), `spec` (the BOSH instance and its link), `checks` (one per section,
assembling the JobConfig) with `vips`, `extra` (the escape hatch), `compat` (haproxy-boshrelease's
names) and `values` (single-value checks); `schema` is the table of every property.
"""

from vipdrain.config.load import load_config, parse_config

__all__ = ["load_config", "parse_config"]
