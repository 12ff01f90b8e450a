@lab
Feature: The peer that would take over loses its haproxy just before the drain
  The drain hands over to the peer that will really take over - the highest priority, as keepalived
  elects - not to "some peer that answers". When that peer's haproxy has just died, its keepalived
  is still BACKUP at its full priority until its health check has failed `fall` times: a resign
  advert now would give it the VIP, it would refuse every request and then go FAULT, leaving the VIP
  without a holder until the next peer takes it. So the drain waits until that peer answers again or
  its keepalived must have fenced it ((fall + 1) x interval + timeout of failed probes), and then
  hands over to the next peer; after the handoff it confirms that the holder keeps advertising and
  answering before it reports it.

  Connection preservation is on (grace 1 s): without it a request whose connection is being opened
  at the instant of the ARP switch-over can be reset (see rolling/).

  Background:
    Given the job property vipdrain.drain.preserve_connections is true
    And the job property vipdrain.drain.preserve_grace is 1

  Scenario: the best backup's haproxy dies as the master begins to drain: the next backup takes over
    Given a running group of 3 VMs with advert_int 0.2 s
    And vm1's haproxy is killed (kill -9) as vm0's drain begins
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to vm0 only
    Then the VIP never went to vm1
    And no request failed
    And vm0's drain handed every VIP to vm2
    And vm0's drain said "would take over but its haproxy does not answer"
