@lab
Feature: A hung haproxy is never handed the VIP and leaves the election
  `kill -STOP` of haproxy (a hung process, a VM frozen by its hypervisor for a moment) leaves its
  listeners open: the kernel still completes every TCP handshake, but no request is answered. A
  check that only connects passes, the VM keeps its priority, takes the VIP and every request
  through it times out. vipdrain's health check and the drain's peer check send a request and need
  haproxy's answer within their timeout (`vipdrain.haproxy.probe`): keepalived's check fails
  (default: twice, a second apart) and puts the VM in FAULT, and the drain hands over to the next
  peer, never to the hung one.

  The check is the job's bin/healthcheck, a bash script that runs anew every second and starts no
  process: there is no long-lived checker whose death could leave a dead haproxy looking healthy.
  A dead haproxy (kill -9) fails it the same way: its pid file names no live process. Either way
  the check writes why into keepalived.log (keepalived itself discards a script's output).

  Connection preservation is on (grace 1 s): without it a request whose connection is being opened
  at the instant of the ARP switch-over can be reset (see rolling/).

  Background:
    Given the job property vipdrain.drain.preserve_connections is true
    And the job property vipdrain.drain.preserve_grace is 1

  Scenario: the best backup's haproxy hangs: the drain hands the VIP to the next VM
    Given a running group of 3 VMs with advert_int 0.2 s
    And vm1's haproxy hangs (SIGSTOP)
    And a load client sends 200 requests a second to each VIP
    When bosh deploys a new release to vm0 only
    Then vm0's drain handed every VIP to vm2
    And the VIP never went to vm1
    And no request failed
    And the VIP ends on vm0

  Scenario: the master's haproxy hangs: keepalived's health check fences it and a peer takes over
    Given a running group of 2 VMs with advert_int 0.2 s
    And a load client sends 200 requests a second to each VIP
    When vm0's haproxy hangs (SIGSTOP)
    Then within 8 s of the hang vm1 holds the VIP and answers the load client
    And vm0's keepalived log says why its health check failed: "accepted the connection but did not answer"

  Scenario: the master's haproxy dies: keepalived's health check fences it and a peer takes over
    Given a running group of 2 VMs with advert_int 0.2 s
    And a load client sends 200 requests a second to each VIP
    When vm0's haproxy dies (kill -9)
    Then within 8 s of the death vm1 holds the VIP and answers the load client
    And vm0's keepalived log says why its health check failed: "no process of pid file"
