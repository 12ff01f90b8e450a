@lab
Feature: bosh delete-deployment drains every VM at once
  `bosh delete-deployment` drains all instances in parallel, then stops them. Nobody is left to
  take the VIP: the holder's drain waits until `vipdrain.drain.timeout` (a peer that is only
  draining cannot prove it holds the VIP above the holder's lowered priority), says so, and lets
  the VM stop (`no_peer_policy: proceed`). No drain hangs; the VIP is gone at the end.

  Scenario: delete-deployment completes within the drain deadline and the VIP is gone
    Given the job property vipdrain.drain.timeout is 2
    And a running group of 2 VMs with advert_int 0.2 s
    And a load client sends 200 requests a second to each VIP
    When bosh deletes the deployment
    Then the deploy completes
    And the drains ran at the same time
    And vm0's drain returned within 15 s
    And vm0's drain said "NO VERIFIED HANDOFF"
    And vm1's drain said "nothing to hand over"
    And every VM is stopped
    And the VIP has no holder
    And the load client saw failed requests
