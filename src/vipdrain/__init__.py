"""vipdrain: hand a keepalived virtual IP over, verifiably, before haproxy stops.

Kept import-light on purpose: the keepalived health check imports `vipdrain.probe`
every few seconds, so nothing heavy may load here.
"""

__version__ = "0.1.0"
