"""The project's exception types and the error-as-value used by validation.

Library modules raise these; only `vipdrain.cli` turns them into exit codes and messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_INVALID_CONFIG = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the job's configuration.

    `path` is the property path as an operator writes it in a manifest
    (`keepalived.vips[1].virtual_router_id`), `value` what was given, `message`
    a sentence saying what is allowed.
    """

    path: str
    value: Any
    message: str

    def __str__(self) -> str:
        if self.value is MISSING:
            return f"{self.path}: {self.message}"
        return f"{self.path}: {self.value!r} {self.message}"


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


#: Marker for a `Problem` about a value that is absent (there is nothing to quote).
MISSING: Any = _Missing()


class VipdrainError(Exception):
    """Base of every error vipdrain raises on purpose."""

    exit_code = EXIT_RUNTIME


class ConfigInvalid(VipdrainError):
    """The job's configuration is invalid; carries every problem found, not just the first."""

    exit_code = EXIT_INVALID_CONFIG

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class RuntimeFailure(VipdrainError):
    """Something on the machine did not behave (keepalived missing, a command failed...)."""
