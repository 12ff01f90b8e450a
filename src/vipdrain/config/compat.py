"""haproxy-boshrelease's keepalived job: its property names that are not vipdrain's, and what each
one set means here (a warning naming the vipdrain property to use)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vipdrain.config.schema import TYPE_WORDS, describe, has_type
from vipdrain.config.values import command_problem

if TYPE_CHECKING:
    from vipdrain.config.props import Props

#: Properties of haproxy-boshrelease's keepalived job (jobs/keepalived/spec, last changed in
#: 09a4539975acb92162e5414b1819457e9b6cb5e7) that are not vipdrain's own names, with their type
#: and what each one set tells the operator (one warning, naming the vipdrain property to use).
#: keepalived.vip, interface and virtual_router_id are vipdrain properties with the same meaning.
LEGACY = {
    "keepalived.healthcheck_command": "haproxy-boshrelease's name, used as keepalived.healthcheck.command "
    "(exit 0 = healthy; a failing check puts this VM in FAULT; its default, killall -0 haproxy, keeps "
    "vipdrain's own check, which covers it): set keepalived.healthcheck.command instead",
    "keepalived.healthcheck_name": "is ignored (haproxy-boshrelease's label of its check; vipdrain's check is "
    "vipdrain_healthcheck, run as keepalived.healthcheck.command says): remove it",
    "keepalived.dont_track_primary": "haproxy-boshrelease's name; true adds keepalived's dont_track_primary to "
    "every VRRP instance: set keepalived.extra.vrrp_instance: [dont_track_primary] instead",
}
LEGACY_TYPES = {
    "keepalived.healthcheck_command": "string",
    "keepalived.healthcheck_name": "string",
    "keepalived.dont_track_primary": "boolean",
}
#: haproxy-boshrelease's default health check: whether some haproxy process lives. vipdrain's
#: own probe checks that (haproxy's pid file names a live process) and that the frontend accepts
#: a connection, so a manifest that spells this default out keeps the probe.
LEGACY_DEFAULT_CHECK = "killall -0 haproxy"


def legacy_settings(props: Props, legacy: Mapping[str, Any], command: str) -> tuple[list[str], str, bool]:
    """haproxy-boshrelease's properties set in `legacy`, with their meaning: (one warning per
    property, the health check command they ask for or "", whether to set dont_track_primary).
    `command` is keepalived.healthcheck.command as validated ("" = unset or rejected)."""
    warnings, custom, dont_track_primary = [], "", False
    for name, value in legacy.items():
        expected = LEGACY_TYPES[name]
        why = None if has_type(value, expected) else f"must be {TYPE_WORDS[expected]}, not {describe(value)}"
        advice = LEGACY[name]
        if why is None and name == "keepalived.healthcheck_command":
            why = command_problem(value)
            if why is None and command and value != command:
                why = (f"differs from keepalived.healthcheck.command ({command!r}): set only "
                       "keepalived.healthcheck.command")
            elif why is None and value == LEGACY_DEFAULT_CHECK and not command:
                advice = ("is haproxy-boshrelease's default check, which vipdrain's own check covers (haproxy's pid "
                          "file names a live process and its frontend accepts a connection): remove it, or set "
                          "keepalived.healthcheck.command for a check of your own")
            elif why is None:
                custom = value
        if why is None and name == "keepalived.dont_track_primary" and value is False:
            advice = ("false is haproxy-boshrelease's default and keepalived's: remove it "
                      "(keepalived.extra.vrrp_instance: [dont_track_primary] turns the option on)")
        if why:
            props.report.add(name, value, why)
            continue
        dont_track_primary = dont_track_primary or (name == "keepalived.dont_track_primary" and value)
        warnings.append(f"{name}: {advice}")
    return warnings, custom, dont_track_primary
