"""Registry of command groups that live outside `vipdrain.cli` (lab, lifecycle, ...).

Each registrar is `register(subparsers, add_config_options) -> None`.
"""

from __future__ import annotations

from collections.abc import Callable

from vipdrain.boshjob import register as register_boshjob
from vipdrain.lab.cli import register as register_lab
from vipdrain.lab.demo import register as register_demo

REGISTRARS: list[Callable[..., None]] = [register_boshjob, register_lab, register_demo]
