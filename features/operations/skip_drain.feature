@lab
Feature: bosh deploy --skip-drain: the contrast
  `--skip-drain` skips every drain script: `monit stop` stops keepalived on the VIP holder while
  the peer still believes it is a backup. keepalived's SIGTERM sends a priority-0 advert and
  removes the VIP at once; the peer takes over after its skew time. Break before make: for that
  moment no VM has the VIP on its interface.

  What clients see then depends on the silent copy of the VIP on `lo` that pre-start gives every
  VM (vipdrain.vipaddr): connection attempts still sent to the old VM's MAC are answered by its
  haproxy while it runs, so in this lab (haproxy stopped after keepalived) the gap often costs no
  request. Without that copy (measured before it existed: 2 VMs, 200 requests a second) it cost
  about 25 timeouts per deploy at advert_int 0.2 s and about 100 at 1 s. With haproxy stopped
  first (haproxy-boshrelease's order) requests are refused: see docs/BENCHMARKS.md (naive-stop).

  Scenario: a rolling deploy with --skip-drain loses requests
    Given a running group of 2 VMs with advert_int 0.2 s
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to every VM with --skip-drain
    Then the deploy completes
    And the observer saw the VIP without a holder
    And the VIP ends on vm0
