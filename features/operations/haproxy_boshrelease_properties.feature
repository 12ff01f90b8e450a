@lab
Feature: A manifest written for haproxy-boshrelease's keepalived job deploys unchanged
  haproxy-boshrelease's keepalived job (jobs/keepalived/spec at 09a45399) has six properties:
  keepalived.vip, interface (auto) and virtual_router_id (1) mean the same here; healthcheck_name
  (check_haproxy) is ignored, healthcheck_command (killall -0 haproxy) becomes the check keepalived
  runs (its default keeps vipdrain's probe, which covers it), dont_track_primary (false) maps to
  keepalived's option. pre-start accepts them and says once per property what to set instead.
  (The lab's VIPs stay in keepalived.vips: the VIP itself is not what this is about.)

  Background:
    Given the job property vipdrain.drain.preserve_connections is true
    And the job property vipdrain.drain.preserve_grace is 1

  Scenario: haproxy-boshrelease's properties, defaults spelled out, dont_track_primary on
    Given a running group of 2 VMs with advert_int 0.2 s
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a release with these job properties to every VM:
      """
      keepalived:
        healthcheck_name: check_haproxy
        healthcheck_command: killall -0 haproxy
        interface: auto
        virtual_router_id: 1
        dont_track_primary: true
      """
    Then the deploy completes
    And vm0's pre-start warned once about keepalived.healthcheck_name, keepalived.healthcheck_command and keepalived.dont_track_primary
    And no request failed
    And the VIP ends on vm0
