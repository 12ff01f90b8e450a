@lab
Feature: Several VIPs are handed over together
  A job with several VIPs (`keepalived.vips`, one VRRP instance each) hands all of them over in
  one drain: the drain lowers the priority once (one track file), sends a resign advert for every
  instance, and waits until every VIP is verified on a peer.

  Connection preservation is on (`vipdrain.drain.preserve_connections`, grace 1 s): without it a
  request whose connection is being opened at the instant of the ARP switch-over can be reset
  (measured with the defaults: one reset in about one deploy out of four, 2 VMs, 200 requests a
  second; with it: none in ten).

  Background:
    Given the job property vipdrain.drain.preserve_connections is true
    And the job property vipdrain.drain.preserve_grace is 1

  Scenario: a rolling deploy of 2 VMs holding 3 VIPs
    Given a running group of 2 VMs with 3 VIPs and advert_int 0.2 s
    And a load client sends 100 requests a second to each VIP
    When bosh deploys a new release to every VM with canaries 1 and max_in_flight 1
    Then the deploy completes
    And no request failed
    And every VIP left vm0 during its drain
    And the VIP moved at most 2 times
    And the VIP ends on vm0
    And no VM is held
