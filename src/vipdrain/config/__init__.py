"""The job's config (moved from vipdrain/config.py; the next commit splits it by job)."""

from vipdrain.config.checks import *  # noqa: F403
from vipdrain.config.checks import INTERFACE_NAME, LEGACY, LEGACY_TYPES  # noqa: F401
