@lab
Feature: The peer dies while the master drains
  The drain trusts only what it sees: a peer's adverts above its own lowered priority, the VIP
  gone from its interfaces, keepalived no longer MASTER here. When the only peer crashes
  (kill -9 of keepalived and its VRRP child: no priority-0 advert) as the master begins to
  drain, nobody can take the VIP: the master keeps it and keeps serving until the drain's
  deadline, then `no_peer_policy` applies.

  Scenario: no_peer_policy fail: the deploy stops and the master keeps the VIP
    Given the job property vipdrain.drain.timeout is 2
    And the job property vipdrain.drain.no_peer_policy is "fail"
    And a running group of 2 VMs with advert_int 0.2 s
    And vm1's keepalived is killed (kill -9) as vm0's drain begins
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to every VM with canaries 1 and max_in_flight 1
    Then the deploy stops at vm0's drain saying "handoff failed: no peer took over within"
    And no request failed
    And the VIP never moved

  Scenario: no_peer_policy proceed: the master serves until the deadline, then the downtime shows
    Given the job property vipdrain.drain.timeout is 2
    And the job property vipdrain.drain.no_peer_policy is "proceed"
    And a running group of 2 VMs with advert_int 0.2 s
    And vm1's keepalived is killed (kill -9) as vm0's drain begins
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to every VM with canaries 1 and max_in_flight 1
    Then the deploy completes
    And vm0's drain said "NO VERIFIED HANDOFF: no peer took over within"
    And no request failed before vm0 stopped
    And the load client saw failed requests
    And the VIP ends on vm0
    And no VM is held
