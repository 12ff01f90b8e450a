"""vipdrain: hand a keepalived virtual IP over, verifiably, before haproxy stops.

Kept import-light on purpose: `vipdrain probe` (the health check as a command; keepalived's
default check is the job's bash `bin/healthcheck`) imports `vipdrain.probe`, and the drain's
start-up counts, so nothing heavy may load here.
"""

__version__ = "0.1.0"
