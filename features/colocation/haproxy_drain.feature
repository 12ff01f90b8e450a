@lab
Feature: haproxy's own drain runs in parallel with vipdrain's
  BOSH runs the drain scripts of all jobs on a VM at the same time. haproxy-boshrelease's drain
  (`ha_proxy.drain_enable`) takes its health frontends down, waits
  `ha_proxy.drain_frontend_grace_time`, then soft-stops haproxy (SIGUSR1: the listeners close).
  If the grace time is shorter than the VIP handoff, haproxy closes its listeners while this VM
  still holds the VIP, and clients are refused. Tell vipdrain the grace time
  (`vipdrain.haproxy.drain_grace_time`): pre-start warns when it is shorter than
  `vipdrain.drain.timeout`. BOSH stops the job only after both drains returned.

  Background:
    Given the job property vipdrain.drain.timeout is 2
    And the job property vipdrain.drain.preserve_connections is true
    And the job property vipdrain.drain.preserve_grace is 1

  Scenario: a grace time as long as the drain deadline: no request fails
    Given the job property vipdrain.haproxy.drain_grace_time is 2
    And a running group of 2 VMs with advert_int 0.2 s
    And the colocated haproxy job drains in parallel with a grace time of 2 s
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to every VM with canaries 1 and max_in_flight 1
    Then the deploy completes
    And no request failed
    And no VM's log mentions "drain_grace_time"
    And the VIP ends on vm0

  Scenario: a grace time too short: haproxy closes while the VM still holds the VIP
    Given the job property vipdrain.haproxy.drain_grace_time is 0
    And a running group of 2 VMs with advert_int 0.2 s
    And the colocated haproxy job drains in parallel with a grace time of 0 s
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to every VM with canaries 1 and max_in_flight 1
    Then the deploy completes
    And the load client saw failed requests
    And pre-start on every VM warned "vipdrain.haproxy.drain_grace_time is 0 s, shorter than vipdrain.drain.timeout (2 s)"
    And the VIP ends on vm0
