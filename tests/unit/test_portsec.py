"""The lab switch's port security (vipdrain.lab.portsec), as a script: what each port may send."""

from __future__ import annotations

from vipdrain.lab.portsec import Port, link_local, port_security_ruleset


def test_the_link_local_address_is_the_modified_eui64_of_the_mac() -> None:
    # OVN's own example: port security "00:00:00:00:00:01 ..." allows fe80::200:ff:fe00:1.
    assert link_local("00:00:00:00:00:01") == "fe80::200:ff:fe00:1"
    assert link_local("02:76:64:c0:00:0b") == "fe80::76:64ff:fec0:b"


def test_a_port_sends_only_from_its_mac_and_its_addresses_or_allowed_pairs() -> None:
    vm = Port("vm0", "02:00:00:00:00:0a", ("192.0.2.10", "192.0.2.100"), ("2001:db8::10", "2001:db8::100"))
    client = Port("c0", "02:00:00:00:00:c0", ("192.0.2.200",))
    lines = [ln.strip() for ln in port_security_ruleset([vm, client]).splitlines()]
    assert "type filter hook forward priority 0; policy accept;" in lines
    assert 'iifname "vm0" ether saddr != 02:00:00:00:00:0a drop' in lines
    assert 'iifname "vm0" ether type ip ip saddr != { 192.0.2.10, 192.0.2.100 } drop' in lines
    assert 'iifname "vm0" ether type arp arp saddr ether != 02:00:00:00:00:0a drop' in lines
    assert 'iifname "vm0" ether type arp arp saddr ip != { 192.0.2.10, 192.0.2.100 } drop' in lines
    assert ('iifname "vm0" ether type ip6 ip6 saddr != { ::, fe80::ff:fe00:a, 2001:db8::10, 2001:db8::100 } drop'
            in lines)
    # A client has no allowed pair: a packet from it with a VIP's address is dropped.
    assert 'iifname "c0" ether type ip ip saddr != { 192.0.2.200 } drop' in lines
