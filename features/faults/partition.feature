@lab
Feature: A network partition between the VMs during a deploy
  When VRRP between two VMs is dropped (nftables on both, every other packet still flows), each
  believes it is alone and both hold the VIP: a split brain. vipdrain cannot prevent it - VRRP
  is the only election - but it must not let it pass unnoticed: post-deploy fails the deploy and
  `vipdrain status` exits non-zero, both naming the split brain (seen through ARP and adverts,
  which still cross the partition in this lab, as on many real networks). When the partition
  ends, VRRP elects one holder again.

  Here the partition begins while vm1 is stopped for its update: vm1 rejoins unable to hear vm0
  and becomes a second master one master-down interval (3 x advert_int + skew) after keepalived
  starts. vm0's post-deploy, which waits for the group to settle, sees it. vm1's own post-deploy
  may run before that moment and pass.

  Scenario: split brain during a deploy is reported by post-deploy and status, and heals
    Given a running group of 2 VMs with advert_int 0.2 s
    And VRRP between vm0 and vm1 is dropped as vm1's update begins
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to every VM with canaries 1 and max_in_flight 1
    Then the deploy stops in post-deploy
    And post-deploy failed on vm0 saying "SPLIT BRAIN"
    And the observer saw two holders of the VIP for at least 1 s
    And "vipdrain status" on every VM exits 1 saying "SPLIT BRAIN"
    When the VRRP partition ends
    Then the VIP ends on vm0
    And "vipdrain status" on every VM exits 0 saying "[ok]"
    And the load client is answered again
