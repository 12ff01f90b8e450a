"""Property values by dotted name (the `Props` accessor), and the problems found so far."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from vipdrain.config.compat import LEGACY
from vipdrain.config.schema import BY_NAME, NO_DEFAULT, static_problem
from vipdrain.config.values import command_problem
from vipdrain.errors import Problem

#: Every proper prefix of a property name (`keepalived`, `keepalived.healthcheck`, ...).
_PREFIXES = {name.rsplit(".", i)[0] for name in BY_NAME for i in range(1, name.count(".") + 1)}


class Report:
    """Problems found so far, in the order found."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, value: Any, message: str) -> None:
        self.problems.append(Problem(path, value, message))


class Props:
    """Property values by dotted name: given values type-checked against the schema, defaults
    for the rest. A rejected value reads as its default, and `ok()` says whether it was valid."""

    def __init__(self, given: dict[str, Any], report: Report) -> None:
        self._given = given
        self._bad: set[str] = set()
        self.report = report
        for name, value in given.items():
            why = static_problem(BY_NAME[name], value)
            if why:
                self.reject(name, value, why)

    def is_set(self, name: str) -> bool:
        return name in self._given and name not in self._bad

    def get(self, name: str) -> Any:
        if self.is_set(name):
            return self._given[name]
        default = BY_NAME[name].default
        return None if default is NO_DEFAULT else default

    def ok(self, *names: str) -> bool:
        return not self._bad.intersection(names)

    def reject(self, name: str, value: Any, message: str) -> None:
        self._bad.add(name)
        self.report.add(name, value, message)

    def reject_item(self, name: str, path: str, value: Any, message: str) -> None:
        """A problem with one element of property `name` (a list entry or map key at `path`)."""
        self._bad.add(name)
        self.report.add(path, value, message)

    def problem_count(self) -> int:
        return len(self.report.problems)

    def integer(self, name: str) -> int:
        """An integer property; its type and limits were checked against the schema."""
        return int(self.get(name))

    def number(self, name: str) -> float:
        return float(self.get(name))

    def choice(self, name: str) -> str:
        return str(self.get(name))

    def command(self, name: str, absolute: bool = False) -> str:
        """An operator command, or "" when unset; `absolute`: its program must be an absolute path."""
        value = self.get(name) or ""
        reason = command_problem(value, absolute) if value else None
        if reason:
            self.reject(name, value, reason)
            return ""
        return value


def flatten(raw: Any, report: Report, legacy: dict[str, Any]) -> dict[str, Any]:
    """Nested (or dotted) property maps -> {dotted name: value}; unknown names are problems.

    null, and "" for an optional string without default, mean "not set" and are left out.
    haproxy-boshrelease's names (LEGACY) that are set go to `legacy` instead.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        report.add("properties", raw, "must be a map of the job's properties (keepalived, vipdrain)")
        return {}
    out: dict[str, Any] = {}
    _walk(raw, "", out, report, legacy)
    return out


def _walk(node: Mapping[Any, Any], prefix: str, out: dict[str, Any], report: Report,
          legacy: dict[str, Any]) -> None:
    for key, value in node.items():
        name = f"{prefix}{key}"
        if name in LEGACY:
            if value is not None:
                legacy[name] = value
        elif name in BY_NAME:
            if value is not None and not (value == "" and BY_NAME[name].type == "string"
                                          and not BY_NAME[name].has_default):
                out[name] = value
        elif name in _PREFIXES:
            if isinstance(value, Mapping):
                _walk(value, f"{name}.", out, report, legacy)
            elif value is not None:
                report.add(name, value, f"must be a map with the keys {', '.join(_children(name))}")
        else:
            report.add(name, value, unknown_property_message(name))


def _children(prefix: str) -> list[str]:
    return sorted({n[len(prefix) + 1 :].split(".", 1)[0] for n in BY_NAME if n.startswith(prefix + ".")})


def unknown_property_message(name: str) -> str:
    """`is not a known property (did you mean ...?)`."""
    close = difflib.get_close_matches(name, [*BY_NAME, *_PREFIXES], n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"is not a known property{hint}"
