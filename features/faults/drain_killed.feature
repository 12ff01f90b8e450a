@lab
Feature: The drain is killed mid-way and BOSH retries
  A drain can die: the agent times out, the VM is under pressure, someone kills it. The hold it
  put on stays (it is a file keepalived reads), so keepalived keeps handing the VIP over; the next
  `bosh deploy` drains again (a drain is re-entrant), and post-deploy clears every leftover hold.

  Connection preservation is on (`vipdrain.drain.preserve_connections`, grace 1 s): without it a
  request whose connection is being opened at the instant of the ARP switch-over can be reset
  (measured with the defaults: one reset in about one deploy out of four, 2 VMs, 200 requests a
  second; with it: none in ten).

  Background:
    Given the job property vipdrain.drain.preserve_connections is true
    And the job property vipdrain.drain.preserve_grace is 1

  Scenario: SIGKILL of the drain, then bosh deploy again: the cluster converges and nobody stays held
    Given a running group of 2 VMs with advert_int 0.2 s
    And vm0's drain process is killed (SIGKILL) once its hold is on
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to every VM with canaries 1 and max_in_flight 1
    Then the deploy stops at vm0's drain saying "drain exit -9"
    When bosh retries the deploy
    Then the deploy completes
    And no request failed
    And the VIP ends on vm0
    And no VM is held
