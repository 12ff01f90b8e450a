@lab
Feature: A rebooted VM forgets its run, keeps its maintenance, and waits for its haproxy
  A reboot runs no BOSH hook: no drain before it, no pre-start or post-start after it. The VM's
  processes get SIGTERM, /var/vcap/sys/run (a tmpfs the BOSH agent mounts at boot) comes back
  empty, and monit starts keepalived and haproxy again - in no particular order; here haproxy
  answers only 2 s after keepalived started.

  What survives: maintenance set by hand (`vipdrain drain`), on the VM's disk. What does not:
  a drain in progress and a deploy's joining hold (tmpfs). What keeps a booted VM from taking a
  VIP before its haproxy answers: the health check starts failed (`init_fail`) and passes only
  once the frontend answers.

  Background:
    Given the job property vipdrain.drain.preserve_connections is true
    And the job property vipdrain.drain.preserve_grace is 1

  Scenario: reboot of the VIP holder
    Given a running group of 2 VMs with advert_int 0.2 s
    And a load client sends 200 requests a second to each VIP
    When vm0 reboots and its haproxy starts 2 s after its keepalived
    Then requests failed only in vm0's own loss, from its shutdown until vm1 held the VIP, and at most 3 when vm0 took it back
    And vm0 did not hold the VIP before its haproxy answered
    And the VIP ends on vm0
    And no VM is held
    # What the reboot lost (sysctls, the VIPs' copies on lo) comes back with the next pre-start;
    # the next deploy drains vm0 before that and still loses nothing.
    When bosh deploys a new release to every VM with canaries 1 and max_in_flight 1
    Then the deploy completes
    And no request failed during the deploy

  Scenario: reboot of a backup
    Given a running group of 3 VMs with advert_int 0.2 s
    And a load client sends 200 requests a second to each VIP
    When vm1 reboots and its haproxy starts 2 s after its keepalived
    Then no request failed
    And the VIP never moved
    And vm1 did not hold the VIP before its haproxy answered
    And no VM is held

  Scenario: reboot of a VM in maintenance
    Given a running group of 2 VMs with advert_int 0.2 s
    And the operator put vm0 in maintenance with "vipdrain drain"
    And a load client sends 200 requests a second to each VIP
    When vm0 reboots and its haproxy starts 2 s after its keepalived
    Then no request failed
    And the VIP never moved
    And vm0 is still in maintenance and advertises priority 1
