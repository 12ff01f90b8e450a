@lab
Feature: A peer whose haproxy is down is never handed the VIP
  A peer that cannot serve must not be handed the VIP. Before it hands over, the drain asks the
  haproxy of the peer that will take over for an answer on the peer's own address
  (`vipdrain.drain.peer_check`); when no peer's haproxy answers, `no_peer_policy` applies at once
  (here `fail`: the deploy stops and the master serves on). With more peers see best_peer_dies.

  keepalived's health check (haproxy's pid file and a request its frontend must answer, every
  second, 2 failures) puts a VM whose haproxy is down in FAULT; a VM in FAULT neither advertises nor
  takes the VIP. Until the check has failed twice, though, the peer still looks healthy on the wire.

  Background:
    Given the job property vipdrain.drain.timeout is 2
    And the job property vipdrain.drain.no_peer_policy is "fail"

  Scenario: the peer's haproxy is down and keepalived has noticed (FAULT)
    Given a running group of 2 VMs with advert_int 0.2 s
    And vm1's haproxy is down and its keepalived reports FAULT
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to every VM with canaries 1 and max_in_flight 1
    Then the deploy stops at vm0's drain saying "handoff failed: no peer's haproxy answers"
    And no request failed
    And the VIP never moved

  Scenario: the peer's haproxy dies as the master begins to drain (before its health check fails)
    Given a running group of 2 VMs with advert_int 0.2 s
    And vm1's haproxy is killed (kill -9) as vm0's drain begins
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to every VM with canaries 1 and max_in_flight 1
    Then no request failed
    And the deploy stops at vm0's drain saying "handoff failed"
