@lab
Feature: A drain stopped while it holds the drain lock does not hang the deploy
  One drain runs at a time on a VM (a lock). An operator's `vipdrain drain` stopped with Ctrl-Z
  keeps holding it; BOSH's drain waits for the lock at most `vipdrain.drain.timeout`, then changes
  nothing and follows `no_peer_policy` (here `fail`: nothing on stdout, exit 1, the reason and the
  stopped drain's pid on stderr). Before, it waited until the agent killed it, printing nothing.

  Scenario: no_peer_policy fail: the deploy stops at the drain within its deadline
    Given the job property vipdrain.drain.timeout is 3
    And the job property vipdrain.drain.no_peer_policy is "fail"
    And a running group of 2 VMs with advert_int 0.2 s
    And an operator's drain on vm0 is stopped (Ctrl-Z) holding the drain lock
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to vm0 only
    Then the deploy stops at vm0's drain saying "another drain holds the drain lock"
    And vm0's drain returned within 8 s
    And no request failed
