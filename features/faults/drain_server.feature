@lab
Feature: the drain server is dead or frozen
  keepalived_ctl starts a drain server next to keepalived (`vipdrain drain-server`): it has the
  drain loaded, so BOSH's drain starts its work in milliseconds. When it cannot answer - killed,
  leaving its socket file behind, or frozen, so the kernel still accepts the connection but nobody
  says READY - the drain runs in a process of its own, as it did before the server existed: a
  tenth of a second later, the same handoff. The next start of keepalived starts a new server.

  Scenario Outline: a deploy of the master whose drain server is <fault>
    Given a running group of 2 VMs with advert_int 0.2 s
    And vm0's drain server is <fault>
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to vm0 only
    Then the deploy completes
    And vm0's drain returned within 5 s
    And vm0's drain did not say "drain server child"
    And no request failed
    And the VIP ends on vm0

    Examples:
      | fault            |
      | killed (kill -9) |
      | frozen (SIGSTOP) |
