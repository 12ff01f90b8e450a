"""The lab: real keepalived and haproxy in Linux network namespaces, for tests, demos and benchmarks.

- `cluster`: `Lab` (bring-up the BOSH way, status, teardown by pid);
- `vm`: `VM`, one VM (its namespace, BOSH root, processes and lifecycle hooks);
- `plan`: the address plan and the job-property helpers both share;
- `client`: the load client (`python -m vipdrain.lab.client`) and `ClientRun`;
- `records`: what the load client wrote, read back and summarised (pure);
- `observer`: `VipObserver`, who holds each VIP over time (addresses and ARP);
- `faults`: crash/stop/freeze processes, cut links, partition VRRP, loss and delay;
- `cli`: `vipdrain lab up|status|down|exec`.

Deliberately empty of imports: `vipdrain.lab.client` and `vipdrain.lab.backend` run as small
processes inside namespaces and should load nothing they do not use.
"""
