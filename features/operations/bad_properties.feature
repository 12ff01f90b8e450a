@lab
Feature: A release with bad properties stops at the canary
  pre-start validates the job's properties before it touches anything and reports every problem
  at once. BOSH stops the deploy at the canary; the VMs not yet updated keep serving - the canary
  handed its VIP over in its drain before it stopped.

  Connection preservation is on (`vipdrain.drain.preserve_connections`, grace 1 s): without it a
  request whose connection is being opened at the instant of the ARP switch-over can be reset
  (measured with the defaults: one reset in about one deploy out of four, 2 VMs, 200 requests a
  second; with it: none in ten).

  Background:
    Given the job property vipdrain.drain.preserve_connections is true
    And the job property vipdrain.drain.preserve_grace is 1

  Scenario: pre-start fails the canary with the validation messages; the old VMs keep the VIP
    Given a running group of 3 VMs with advert_int 0.2 s
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a release with these job properties to every VM:
      """
      vipdrain:
        placement: nearest
      keepalived:
        advert_int: 0
      """
    Then the deploy stops at vm0's pre-start saying "vipdrain.placement: 'nearest' must be one of preferred, sticky"
    And the deploy stops at vm0's pre-start saying "keepalived.advert_int: 0 is out of range"
    And vm1 and vm2 were not touched
    And no request failed
    And the VIP ends on vm1
