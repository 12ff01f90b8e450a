@lab
Feature: A rolling bosh deploy keeps every request answered
  Operators ask one question: what happens to my traffic during `bosh deploy`? With vipdrain each
  VM hands its VIP to a healthy peer, verifiably, before haproxy and keepalived stop; a VM that
  comes back joins held (priority 1) until its haproxy answers.

  The load client opens a new connection for every request (200 a second); the VIP observer
  watches the VIP's address on every VM. Short adverts (VRRPv3, 0.2 s) where timing is not the point.

  Placement `preferred` gives the VIP back to the bootstrap VM (vm0) after its update: at most two
  moves. Placement `sticky` leaves it where it is: one move per deploy - unless the holder is the
  first VM updated (the canary), when two moves cannot be avoided by any placement (its peers are
  all still to be updated when it hands over).

  Connection preservation is on (`vipdrain.drain.preserve_connections`, grace 1 s): without it a
  request whose connection is being opened at the instant of the ARP switch-over can be reset
  (measured with the defaults: one reset in about one deploy out of four, 2 VMs, 200 requests a
  second; with it: none in ten).

  Background:
    Given the job property vipdrain.drain.preserve_connections is true
    And the job property vipdrain.drain.preserve_grace is 1

  Scenario Outline: rolling deploy of <count> VMs, placement <placement>, VIP on <holder>
    Given the job property vipdrain.placement is "<placement>"
    And a running group of <count> VMs with advert_int 0.2 s
    And the VIP is on <holder>
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to every VM with canaries 1 and max_in_flight 1
    Then the deploy completes
    And no request failed
    And the VIP moved at most <moves> times
    And the VIP ends on <end>
    And no VM is held

    Examples:
      | count | placement | holder | moves | end |
      | 2     | preferred | vm0    | 2     | vm0 |
      | 3     | preferred | vm0    | 2     | vm0 |
      | 2     | sticky    | vm1    | 1     | vm0 |
      | 3     | sticky    | vm2    | 1     | vm0 |
      | 2     | sticky    | vm0    | 2     | vm0 |

  Scenario: a deploy that changes only a backup never moves the VIP
    Given a running group of 3 VMs with advert_int 0.2 s
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to vm2 only
    Then the deploy completes
    And no request failed
    And the VIP never moved
    And vm0 and vm1 only ran post-deploy
    And no VM is held
