"""VRRP (moved from vipdrain/vrrp.py; the next commit splits it into wire, sockets, neighbours)."""

from vipdrain.vrrp.wire import *  # noqa: F403
from vipdrain.vrrp.wire import _attach_filter, _checksum, _pseudo_header, _vrrp_filter  # noqa: F401
