@lab
Feature: A stopped keepalived is reported, not taken for a healthy backup
  keepalived's last report on a VM whose keepalived stopped is whatever it said before (BACKUP,
  STOP): no report says it is gone. `vipdrain status` and post-deploy on that VM look at the
  process itself: it is not running, so the VM is silent on the wire and cannot take over - a
  problem, exit 1. The other VMs cannot tell a silent backup from a stopped one (VRRP backups
  never advertise): their status lists the member as not heard, without failing.

  Scenario: status and post-deploy on the VM whose keepalived stopped fail and say why
    Given a running group of 2 VMs with advert_int 0.2 s
    And vm1's keepalived is stopped as monit stops it
    When the operator runs "vipdrain status" on vm1
    Then the command exits 1 and says "keepalived is not running here"
    And the command does not say "here BACKUP"
    When the operator runs "vipdrain post-deploy --timeout 3" on vm1
    Then the command exits 1 and says "keepalived is not running here"
    When the operator runs "vipdrain status" on vm0
    Then the command exits 0 and says "not heard on the wire: haproxy/1 (192.0.2.11)"
