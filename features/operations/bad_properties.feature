@lab
Feature: A release with bad properties stops at the canary
  pre-start validates the job's properties before it touches anything and reports every problem
  at once. BOSH stops the deploy at the canary; the VMs not yet updated keep serving - the canary
  handed its VIP over in its drain before it stopped. (A wrong type, or a value outside its choices
  or range, fails earlier on BOSH, while the director renders the templates; the lab's deploy
  simulator does not render them, and these two mistakes are found by pre-start anyway.)

  Connection preservation is on (`vipdrain.drain.preserve_connections`, grace 1 s): without it a
  request whose connection is being opened at the instant of the ARP switch-over can be reset
  (measured with the defaults: one reset in about one deploy out of four, 2 VMs, 200 requests a
  second; with it: none in ten).

  Background:
    Given the job property vipdrain.drain.preserve_connections is true
    And the job property vipdrain.drain.preserve_grace is 1

  Scenario: pre-start fails the canary with the validation messages; the old VMs keep the VIP
    Given a running group of 3 VMs with advert_int 0.2 s
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a release with these job properties to every VM:
      """
      keepalived:
        advert_int: 0
        notify:
          master: claim
      """
    Then the deploy stops at vm0's pre-start saying "keepalived.notify.master: 'claim' must start with the absolute path"
    And the deploy stops at vm0's pre-start saying "keepalived.advert_int: 0 is out of range"
    And vm1 and vm2 were not touched
    And no request failed
    And the VIP ends on vm1

  Scenario: the deploy after a failed pre-start drains the failed canary, without --skip-drain
    The failed pre-start left the new job applied on vm0, keepalived stopped. The next deploy runs
    that job's drain first: its config cannot be loaded, keepalived is not running, so there is
    nothing to hand over and the drain returns 0 (saying why in vipdrain.log) instead of failing
    the deploy. (A mistake in a value's type, choices or range fails earlier, while BOSH renders
    the templates; this one is only found by pre-start.)

    Given a running group of 3 VMs with advert_int 0.2 s
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a release with these job properties to every VM:
      """
      keepalived:
        extra:
          global_defs: [vrrp_higher_prio_send_advert false]
      """
    Then the deploy stops at vm0's pre-start saying "sets vrrp_higher_prio_send_advert, which vipdrain manages"
    And vm1 and vm2 were not touched
    When bosh deploys a release with these job properties to every VM:
      """
      keepalived:
        extra:
          global_defs: []
      """
    Then the deploy completes
    And vm0's drain said "keepalived is not running, so this VM holds no VIP to hand over: returning 0"
    And no request failed
    And the VIP ends on vm0
