"""Connection-preserving handoff (moved from vipdrain/preserve.py; the next commit splits it)."""

from vipdrain.preserve.nft import *  # noqa: F403
