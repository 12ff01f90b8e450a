"""The BOSH job generator (moved from vipdrain/boshjob.py; the next commit splits it)."""

from vipdrain.boshjob.job import *  # noqa: F403
from vipdrain.boshjob.job import _retired_description  # noqa: F401
