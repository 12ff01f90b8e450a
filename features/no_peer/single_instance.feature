@lab
Feature: A single-instance deployment has nobody to hand the VIP to
  With one VM there is no peer. The drain sees that at once (the job's link has no other
  instance), says so, and applies `no_peer_policy` without waiting for the deadline. With the
  default `proceed` the deploy completes and the VIP is down while the VM restarts: the load
  client reports every failed request - the scenario asserts that the downtime is reported,
  not that there is none (measured: about 3 s without an answer, all timeouts).

  Scenario: the drain returns at once and the downtime is reported
    Given a running group of 1 VMs with advert_int 0.2 s
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to every VM with canaries 1 and max_in_flight 1
    Then the deploy completes
    And vm0's drain returned within 10 s
    And vm0's drain said "the job has no peer (single instance)"
    And vm0's drain said "NO VERIFIED HANDOFF"
    And the load client saw failed requests
    And the observer saw the VIP without a holder
    And the VIP ends on vm0
    And no VM is held
