@lab
Feature: Real timing at keepalived's default advert_int of 1 s
  The other scenarios use 0.2 s adverts to run fast. This one shows the timing operators get with
  the default: a backup would take over 3 x advert_int + skew after a silent master (about 3.3 s),
  but vipdrain's resign advert (priority 0) lets the best backup take over after its skew time,
  and the draining VM keeps the VIP until the new master is verified.

  Connection preservation is on (`vipdrain.drain.preserve_connections`, grace 1 s): without it a
  request whose connection is being opened at the instant of the ARP switch-over can be reset
  (measured with the defaults: one reset in about one deploy out of four, 2 VMs, 200 requests a
  second; with it: none in ten).

  Background:
    Given the job property vipdrain.drain.preserve_connections is true
    And the job property vipdrain.drain.preserve_grace is 1

  @slow
  Scenario: rolling deploy of 3 VMs at advert_int 1 s
    Given a running group of 3 VMs with advert_int 1 s
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to every VM with canaries 1 and max_in_flight 1
    Then the deploy completes
    And no request failed
    And the VIP moved at most 2 times
    And the VIP ends on vm0
    And no VM is held
