@lab
Feature: max_in_flight as large as the group: every VM drains at once
  With `max_in_flight` equal to the group size (and no canary) BOSH drains every VM at the same
  time. The VIP holder's drain finds no peer to hand over to: the others are draining too (held at
  priority 1, below nothing) or stopped for their update. It does not hang: it waits until
  `vipdrain.drain.timeout` for a peer that can take the VIP, then does what
  `vipdrain.drain.no_peer_policy` promises and says so in its log:

  - `proceed`: the drain prints 0, the VM stops, the VIP is down until a VM holds it again. The
    load client and the VIP observer show the downtime; nothing hides it.
  - `fail`: the drain fails with the reason, BOSH stops the deploy, and no VM stays held.

  Where the VIP is while both drain is a race (the holder's resign advert can hand it to the
  other draining VM), so these scenarios assert only what the policy promises.

  Scenario: no_peer_policy proceed: the deploy completes and the downtime shows
    Given the job property vipdrain.drain.timeout is 0.5
    And the job property vipdrain.drain.no_peer_policy is "proceed"
    And a running group of 2 VMs with advert_int 0.2 s
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to every VM with canaries 0 and max_in_flight 2
    Then the deploy completes
    And the drains ran at the same time
    And vm0's drain said "NO VERIFIED HANDOFF: no peer took over within"
    And the load client saw failed requests
    And the observer saw the VIP without a holder
    And the VIP ends on vm0
    And no VM is held

  Scenario: no_peer_policy fail: the deploy stops with the reason and nobody stays held
    Given the job property vipdrain.drain.timeout is 0.5
    And the job property vipdrain.drain.no_peer_policy is "fail"
    And a running group of 2 VMs with advert_int 0.2 s
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to every VM with canaries 0 and max_in_flight 2
    Then the deploy stops at vm0's drain saying "handoff failed: no peer took over within"
    And the drains ran at the same time
    And the VIP ends on vm0
    And no VM is held
    And vm0's drain said "no_peer_policy is 'fail'"
