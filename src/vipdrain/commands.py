"""Registry of command groups that live outside `vipdrain.cli` (lab, lifecycle, ...).

Each registrar is `register(subparsers, add_config_options) -> None`.
"""

from __future__ import annotations

from collections.abc import Callable

from vipdrain.boshjob import register as register_boshjob

REGISTRARS: list[Callable[..., None]] = []
REGISTRARS.append(register_boshjob)
