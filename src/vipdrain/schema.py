"""The job's properties: name, default and description of each, in one place.

`vipdrain.config` validates against this table (unknown names are typos), and the BOSH job's
`spec` and the property reference in the docs are generated from it, so the three never drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Marker for "no default": the property is required or optional-without-default.
NO_DEFAULT: Any = object()


@dataclass(frozen=True)
class PropertyDef:
    """One job property as an operator sets it in a manifest."""

    #: Dotted name, e.g. `keepalived.virtual_router_id`.
    name: str
    description: str
    default: Any = NO_DEFAULT
    example: Any = NO_DEFAULT
    #: A short type word for the docs: string, integer, number, boolean, list, map.
    type: str = "string"

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT


#: Filled in by the config work (issue 2); order is the order of the generated spec.
PROPERTIES: tuple[PropertyDef, ...] = ()
