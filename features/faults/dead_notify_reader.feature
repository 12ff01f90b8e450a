@lab
Feature: keepalived's notify reader is dead
  keepalived reports every VRRP transition through its notify FIFO to one reader, `vipdrain
  notify-fifo`, which it starts once (when it starts or reloads) and never again: killed, the
  state files keep the last state read - MASTER on the master - while the VIP moves. The drain and
  `vipdrain status` judge this VM by what they see (the VIP on the interface, this VM's own adverts
  on the wire, keepalived alive), with keepalived's report only a hint; status says the
  reader is gone, and post-deploy starts a new one (the command keepalived runs, on the same
  FIFO).

  Scenario: a BOSH drain of the master hands over at once and the deploy goes on
    Connection preservation is on (grace 1 s), as in the other scenarios that count failed
    requests: without it a connection being opened at the instant of the ARP switch-over can be
    reset (features/faults/drain_killed.feature; seen here once in three runs).

    Given the job property vipdrain.drain.timeout is 10
    And the job property vipdrain.drain.preserve_connections is true
    And the job property vipdrain.drain.preserve_grace is 1
    And the job property vipdrain.drain.no_peer_policy is "fail"
    And a running group of 2 VMs with advert_int 0.2 s
    And vm0's notify reader is killed (kill -9)
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to vm0 only
    Then the deploy completes
    And vm0's drain returned within 5 s
    And no request failed
    And the VIP ends on vm0

  Scenario: maintenance by hand, then status shows what it sees and names the dead reader, and a BOSH drain finds nothing to hand over
    Given the job property vipdrain.drain.timeout is 10
    And a running group of 2 VMs with advert_int 0.2 s
    And vm0's notify reader is killed (kill -9)
    When the operator runs "vipdrain drain" on vm0
    Then the command exits 0 and says "handed over to"
    And the VIP ends on vm1
    When the operator runs "vipdrain status" on vm0
    Then the command exits 1 and says "notify reader (vipdrain notify-fifo) is not running"
    And the command does not say "here MASTER"
    When bosh deploys a new release to vm0 only
    Then the deploy completes
    And vm0's drain said "nothing to hand over"
    And vm0's drain did not say "resign advert"
    And vm0's drain returned within 5 s

  Scenario: post-deploy starts a new notify reader, which records the transitions again
    Given a running group of 2 VMs with advert_int 0.2 s
    And vm0's notify reader is killed (kill -9)
    When the operator runs "vipdrain post-deploy --timeout 10" on vm0
    Then the command exits 0 and says "started a new notify reader"
    When the operator runs "vipdrain drain" on vm0
    Then the command exits 0 and says "handed over to"
    When the operator runs "vipdrain status" on vm0
    Then the command exits 0 and says "here BACKUP"
