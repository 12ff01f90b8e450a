@lab
Feature: Migrating from haproxy-boshrelease's keepalived job without a split brain
  Operators come from haproxy-boshrelease's keepalived job: VRRPv2, virtual_router_id 1, multicast
  to 224.0.0.18, the bootstrap VM `state MASTER` at priority 101 and the others 100, a health
  check every 2 s with weight 2, advert_int 1, and no drain (`monit stop` is keepalived's SIGTERM).
  Their first vipdrain deploy replaces that job VM by VM (the ops file swaps the jobs), so for a
  while old and new VMs share the VIP. They must be one VRRP group: same VRID, same version.

  The lab's VMs start on the old job, rendered as its template renders it (the lab's health check
  asks whether this VM's own haproxy lives instead of `killall -0 haproxy`: lab VMs share one PID
  namespace). Keepalived's own timing (advert_int 1 s) throughout, as the old job has it fixed.

  The first VM updated (the canary, vm0) is the old master. It has no drain: its `monit stop`
  removes the VIP and a peer takes it over after its VRRP skew time. That break is the one the
  old job costs on every deploy; the migration pays it once, on that VM, and never again. With 3
  VMs it can last about 5 s: the old template gives both other VMs priority 100, both become
  master, one steps down, and when its gratuitous ARP reached the clients last they send to it
  until the winner's second ARP burst (keepalived's garp_master_delay). The break ends when the
  clients are answered again.

  When vm0 comes back on vipdrain it takes the VIP back (make-before-break, it outranks the old
  VMs): a connection whose first packets reached the old VM and whose next ones reach vm0 cannot
  be sent back, because a VM on the old job keeps no copy of the VIP once it is a backup. That
  costs the connections in flight at that instant (0 or 1 at 200 requests a second so far), and
  nothing after vm0's update.

  Background:
    Given the job property vipdrain.drain.preserve_connections is true
    And the job property vipdrain.drain.preserve_grace is 1

  Scenario Outline: rolling migration of <count> VMs with the ops file's settings
    Given the keepalived properties of manifests/operations/add-vipdrain.yml with vrid 1
    And a running group of <count> VMs on haproxy-boshrelease's keepalived job
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to every VM with canaries 1 and max_in_flight 1
    Then the deploy completes
    And the VIP never had two holders for longer than 1 s
    And requests failed only in vm0's break, when its old keepalived stopped, and at most 3 when vm0 took the VIP back
    And no request failed after vm0's post-start
    And the VIP ends on vm0
    And every VM runs vipdrain and none is held

    Examples:
      | count |
      | 2     |
      | 3     |

  Scenario Outline: migration with settings of another VRRP group (<what>) stops at the canary
    Given the job property keepalived.vrrp_version is <version>
    And the job property keepalived.virtual_router_id is <vrid>
    And a running group of <count> VMs on haproxy-boshrelease's keepalived job
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to every VM with canaries 1 and max_in_flight 1
    Then the deploy stops at vm0's pre-start saying "refusing to start keepalived"
    And it names the old group as vrid 1, VRRPv2 from a peer, and its own as vrid <vrid>, VRRPv<version>
    And vm0's keepalived is not running
    And one VM still on the old job holds the VIP
    And <others> were not touched
    And requests failed only in vm0's break, when its old keepalived stopped

    Examples:
      | what     | count | version | vrid | others     |
      | VRRPv3   | 2     | 3       | 1    | vm1        |
      | vrid 51  | 3     | 2       | 51   | vm1 and vm2 |

  Scenario: the follow-up deploy from VRRPv2 to VRRPv3 is refused before it can split the group
    Given the job property keepalived.vrrp_version is 2
    And a running group of 2 VMs with advert_int 1 s
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a release with these job properties to every VM:
      """
      keepalived:
        vrrp_version: 3
      """
    Then the deploy stops at vm0's pre-start saying "refusing to start keepalived"
    And it names the old group as vrid 1, VRRPv2 from a peer, and its own as vrid 1, VRRPv3
    And vm0's keepalived is not running
    And the VIP ends on vm1
    And no request failed
