@lab
Feature: Manual maintenance: vipdrain drain and vipdrain undrain
  An operator can take a VM out of service by hand: `vipdrain drain` (no arguments) puts the
  `maintenance` hold on and hands the VIP over with the same verification as a BOSH drain,
  printing its progress; `vipdrain undrain` takes the hold off. The hold survives restarts and
  deploys until undrained (pre-start warns about it).

  Connection preservation is on (`vipdrain.drain.preserve_connections`, grace 1 s): without it a
  request whose connection is being opened at the instant of the ARP switch-over can be reset
  (measured with the defaults: one reset in about one deploy out of four, 2 VMs, 200 requests a
  second; with it: none in ten). The VIP's way back to vm0 after `undrain` is no drain but a
  preemption (placement `preferred`): `undrain` arms vm0's forwarding towards vm1 before it
  releases the hold, so that move keeps vm1's connections too.

  Background:
    Given the job property vipdrain.drain.preserve_connections is true
    And the job property vipdrain.drain.preserve_grace is 1

  Scenario: drain the master by hand, then undrain it
    Given a running group of 2 VMs with advert_int 0.2 s
    And a load client sends 200 requests a second to each VIP
    When the operator runs "vipdrain drain" on vm0
    Then the command exits 0 and says "maintenance on"
    And the VIP ends on vm1
    And "vipdrain status --json" on vm0 shows maintenance on
    When the operator runs "vipdrain undrain" on vm0
    Then the command exits 0 and says "maintenance off"
    And the VIP ends on vm0
    And no VM is held
    And no request failed
    And the VIP moved at most 2 times
