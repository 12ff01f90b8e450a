"""VRRP packet code: vectors captured from keepalived 2.2.7, hand checks, round-trip properties."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vipdrain.vrrp import (
    AUTH_AH,
    AUTH_NONE,
    AUTH_PASS,
    MULTICAST_V4,
    MULTICAST_V6,
    Advert,
    build_advert,
    build_packet,
    parse_advert,
    parse_packet,
    pass_auth,
    sockets,
    wire,
)

ip = ipaddress.ip_address
A4 = ip("192.0.2.1")
B4 = ip("192.0.2.2")
A6_LL = ip("fe80::381e:1aff:feaf:4ad")
B6 = ip("2001:db8::2")


@dataclasses.dataclass(frozen=True)
class Capture:
    """A VRRP payload keepalived 2.2.7 sent in the lab (tcpdump -xx), with what it means."""

    name: str
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    hex: str
    advert: Advert

    @property
    def payload(self) -> bytes:
        return bytes.fromhex(self.hex.replace(" ", ""))


def _advert(version, vrid, interval, addresses, checksum, auth_type=AUTH_NONE, auth_data=b""):
    return Advert(
        version=version,
        vrid=vrid,
        priority=150,
        advert_int=interval,
        addresses=tuple(ip(a) for a in addresses),
        auth_type=auth_type,
        auth_data=auth_data,
        checksum=checksum,
    )


ZERO8 = b"\0" * 8
CAPTURES = [
    Capture(
        "v2 multicast",
        A4,
        MULTICAST_V4,
        "2115960100 0186d2 c0000215 0000000000000000",
        _advert(2, 21, 1.0, ["192.0.2.21"], 0x86D2, auth_data=ZERO8),
    ),
    Capture(
        "v2 PASS two VIPs",
        A4,
        MULTICAST_V4,
        "21169602 0101 eeaa c0000216 c000027a 7077313233000000",
        _advert(2, 22, 1.0, ["192.0.2.22", "192.0.2.122"], 0xEEAA, AUTH_PASS, b"pw123\0\0\0"),
    ),
    Capture(
        "v2 unicast",
        A4,
        B4,
        "21179601 0001 86ce c0000217 0000000000000000",
        _advert(2, 23, 1.0, ["192.0.2.23"], 0x86CE, auth_data=ZERO8),
    ),
    Capture(
        "v3 multicast, 0.5 s",
        A4,
        MULTICAST_V4,
        "311f9601 0032 d3fc c000021f",
        _advert(3, 31, 0.5, ["192.0.2.31"], 0xD3FC),
    ),
    Capture(
        "v3 unicast",
        A4,
        B4,
        "31209601 0064 f1d8 c0000220",
        _advert(3, 32, 1.0, ["192.0.2.32"], 0xF1D8),
    ),
    Capture(
        "v3 IPv6 multicast",
        A6_LL,
        MULTICAST_V6,
        "31249601 0064 b5ee 20010db8000000000000000000000036",
        _advert(3, 36, 1.0, ["2001:db8::36"], 0xB5EE),
    ),
    Capture(
        "v3 IPv6 unicast",
        A6_LL,
        B6,
        "31259601 0064 8746 20010db8000000000000000000000037",
        _advert(3, 37, 1.0, ["2001:db8::37"], 0x8746),
    ),
    Capture(
        "v2 IPv6 (keepalived only)",
        A6_LL,
        MULTICAST_V6,
        "211a9601 0001 c66b 20010db8000000000000000000000026",
        _advert(2, 26, 1.0, ["2001:db8::26"], 0xC66B),
    ),
]


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda c: c.name)
def test_parses_what_keepalived_sent(capture: Capture) -> None:
    parsed = parse_advert(capture.payload, capture.src, capture.dst)
    assert parsed == dataclasses.replace(capture.advert, src=capture.src, dst=capture.dst)


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda c: c.name)
def test_builds_byte_for_byte_what_keepalived_sent(capture: Capture) -> None:
    unsummed = dataclasses.replace(capture.advert, checksum=None)
    assert build_advert(unsummed, capture.src, capture.dst) == capture.payload


def test_v2_checksum_by_hand() -> None:
    # Words of the v2 capture with the checksum zeroed: 2115 9601 0001 0000 c000 0215 0000 x4.
    # Sum 0x1792c, folded 0x792c + 1 = 0x792d, complemented 0x86d2.
    words = [0x2115, 0x9601, 0x0001, 0xC000, 0x0215]
    total = sum(words)
    folded = (total & 0xFFFF) + (total >> 16)
    assert ~folded & 0xFFFF == 0x86D2
    assert build_advert(dataclasses.replace(CAPTURES[0].advert, checksum=None), A4, MULTICAST_V4)[6:8] == (b"\x86\xd2")


def test_v3_ipv4_checksum_by_hand() -> None:
    # Pseudo-header 192.0.2.1, 224.0.0.18, 0, 112, length 12 = c000 0201 e000 0012 0070 000c,
    # then the message with the checksum zeroed: 311f 9601 0032 0000 c000 021f.
    # Sum 0x32c00, folded 0x2c00 + 3 = 0x2c03, complemented 0xd3fc: what keepalived sent.
    words = [0xC000, 0x0201, 0xE000, 0x0012, 0x0070, 0x000C, 0x311F, 0x9601, 0x0032, 0xC000, 0x021F]
    total = sum(words)
    assert total == 0x32C00
    assert ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF == 0xD3FC


def test_resign_differs_only_in_priority_and_checksum() -> None:
    for capture in CAPTURES:
        resign = build_advert(dataclasses.replace(capture.advert, priority=0), capture.src, capture.dst)
        original = capture.payload
        differing = {i for i, (x, y) in enumerate(zip(resign, original, strict=True)) if x != y}
        assert differing <= {2, 6, 7}, capture.name
        assert resign[2] == 0
        assert parse_advert(resign, capture.src, capture.dst).priority == 0


def test_v3_unicast_checksum_covers_the_peer_address() -> None:
    unicast = next(c for c in CAPTURES if c.name == "v3 unicast")
    with pytest.raises(ValueError, match="bad VRRPv3 checksum"):
        parse_advert(unicast.payload, A4, MULTICAST_V4)
    # The compatibility mode of old keepalived (`old_unicast_checksum`) summed the multicast group.
    advert = dataclasses.replace(unicast.advert, checksum=None)
    assert build_advert(advert, A4, MULTICAST_V4) != unicast.payload


def test_v2_ipv6_checksum_includes_the_pseudo_header() -> None:
    v26 = next(c for c in CAPTURES if c.name.startswith("v2 IPv6"))
    payload = v26.payload
    zeroed = payload[:6] + b"\0\0" + payload[8:]
    assert wire._checksum(zeroed) != 0xC66B
    assert parse_advert(payload, v26.src, v26.dst).version == 2


def test_advert_src_dst_are_used_when_not_given() -> None:
    capture = CAPTURES[3]
    advert = dataclasses.replace(capture.advert, checksum=None, src=capture.src, dst=capture.dst)
    assert build_advert(advert) == capture.payload
    assert build_advert(advert, "192.0.2.9") != capture.payload


@pytest.mark.parametrize(
    ("password", "wire"),
    [("pw123", b"pw123\0\0\0"), ("12345678", b"12345678"), ("secretpassword", b"secretpa"), ("", ZERO8)],
)
def test_pass_auth_truncates_and_pads_like_keepalived(password: str, wire: bytes) -> None:
    assert pass_auth(password) == wire


V3 = CAPTURES[3]


@pytest.mark.parametrize(
    ("payload", "src", "dst", "message"),
    [
        (b"\x31\x1f\x96", A4, MULTICAST_V4, "shorter than its 8-byte header"),
        (bytes.fromhex("411f96010032d3fcc000021f"), A4, MULTICAST_V4, "unsupported VRRP version 4"),
        (bytes.fromhex("321f96010032d3fcc000021f"), A4, MULTICAST_V4, "type 2 is not an advertisement"),
        (bytes.fromhex("311f96020032d3fcc000021f"), A4, MULTICAST_V4, "2 IPv4 addresses must be 16 bytes, not 12"),
        (V3.payload + b"\0", A4, MULTICAST_V4, "must be 12 bytes, not 13"),
        (V3.payload, A4, MULTICAST_V6, "different IP versions"),
        (bytes.fromhex("311f97010032d3fcc000021f"), A4, MULTICAST_V4, "bad VRRPv3 checksum 0xd3fc"),
        (V3.payload, ip("192.0.2.3"), MULTICAST_V4, "bad VRRPv3 checksum"),
        (CAPTURES[0].payload[:-1] + b"\x01", A4, MULTICAST_V4, "bad VRRPv2 checksum"),
        (CAPTURES[0].payload[:-8], A4, MULTICAST_V4, "must be 20 bytes, not 12"),
    ],
)
def test_parse_rejects_with_a_clear_reason(payload: bytes, src, dst, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_advert(payload, src, dst)


def test_parse_ignores_the_v3_reserved_bits() -> None:
    # RFC 5798 5.2.4: reserved bits are ignored on receipt (the checksum still covers them).
    advert = dataclasses.replace(V3.advert, checksum=None)
    payload = bytearray(build_advert(advert, A4, MULTICAST_V4))
    payload[4] |= 0xF0
    payload[6:8] = b"\0\0"
    payload[6:8] = struct.pack("!H", wire._checksum(wire._pseudo_header(A4, MULTICAST_V4, 12) + payload))
    assert parse_advert(bytes(payload), A4, MULTICAST_V4).advert_int == 0.5


@pytest.mark.parametrize(
    ("changes", "src", "dst", "message"),
    [
        ({"version": 4}, A4, MULTICAST_V4, "version must be 2 or 3"),
        ({"vrid": 0}, A4, MULTICAST_V4, "virtual router id must be 1-255"),
        ({"priority": 256}, A4, MULTICAST_V4, "priority must be 0-255"),
        ({"advert_int": 0.001}, A4, MULTICAST_V4, "0.01-40.95 s in steps of 0.01 s"),
        ({"advert_int": 41.0}, A4, MULTICAST_V4, "0.01-40.95 s"),
        ({"version": 2, "advert_int": 0.5}, A4, MULTICAST_V4, "1-255 whole seconds"),
        ({"addresses": (ip("2001:db8::1"),)}, A4, MULTICAST_V4, "are not IPv4"),
        ({"addresses": (ip("192.0.2.1"),) * 256}, A4, MULTICAST_V4, "at most 255 addresses"),
        ({"auth_type": AUTH_PASS}, A4, MULTICAST_V4, "VRRPv3 over IPv4 carries no authentication"),
        ({"version": 2, "advert_int": 1, "auth_type": AUTH_AH}, A4, MULTICAST_V4, "type 2 is not supported"),
        ({"version": 2, "advert_int": 1, "auth_data": b"123456789"}, A4, MULTICAST_V4, "8 bytes at most"),
        (
            {"version": 2, "advert_int": 1, "auth_type": 1, "addresses": ()},
            A6_LL,
            MULTICAST_V6,
            "VRRPv2 over IPv6 carries no authentication",
        ),
        ({}, A4, MULTICAST_V6, "different IP versions"),
        ({}, None, None, "needs the source and destination"),
    ],
)
def test_build_refuses_what_cannot_go_on_the_wire(changes: dict, src, dst, message: str) -> None:
    advert = dataclasses.replace(V3.advert, checksum=None, **changes)
    with pytest.raises(ValueError, match=message):
        build_advert(advert, src, dst)


# keepalived's whole IP packets for two of the captures (tcpdump -xx without the Ethernet header).
V3_PACKET = bytes.fromhex("45c0 0020 0008 0000 ff 70 1892 c0000201 e0000012".replace(" ", "")) + V3.payload
V3_UNICAST6 = CAPTURES[6]
V3_UNICAST6_PACKET = (
    bytes.fromhex(
        "6c0cf677 0018 70 40 fe80000000000000381e1afffeaf04ad 20010db8000000000000000000000002".replace(" ", "")
    )
    + V3_UNICAST6.payload
)


def test_parse_packet_reads_keepalived_ipv4() -> None:
    packet = parse_packet(V3_PACKET)
    assert (packet.ttl, packet.tos) == (255, 0xC0)
    assert packet.advert.src == A4 and packet.advert.dst == MULTICAST_V4
    assert packet.advert.vrid == 31 and packet.raw == V3_PACKET


def test_parse_packet_drops_ethernet_padding() -> None:
    # A 32-byte packet is padded to the 46-byte minimum Ethernet payload.
    packet = parse_packet(V3_PACKET + b"\0" * 14)
    assert packet.raw == V3_PACKET


def test_parse_packet_accepts_ipv6_unicast_with_hop_limit_64() -> None:
    # keepalived 2.2.7 sends IPv6 unicast adverts with the default hop limit, and accepts them.
    packet = parse_packet(V3_UNICAST6_PACKET)
    assert (packet.ttl, packet.tos) == (64, 0xC0)
    assert packet.advert.src == A6_LL and packet.advert.dst == B6


def _with_ipv4_checksum(header: bytearray) -> bytes:
    header[10:12] = b"\0\0"
    header[10:12] = struct.pack("!H", wire._checksum(bytes(header[:20])))
    return bytes(header)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p[:10], "shorter than its header"),
        (lambda p: b"\x55" + p[1:], "IP version 5"),
        (lambda p: p[:11] + bytes([p[11] ^ 1]) + p[12:], "bad IPv4 header checksum"),
        (lambda p: _with_ipv4_checksum(bytearray(p[:6] + b"\x20\x00" + p[8:20])) + p[20:], "fragment"),
        (lambda p: _with_ipv4_checksum(bytearray(p[:8] + b"\xfe" + p[9:20])) + p[20:], "TTL/hop limit 254"),
        (lambda p: _with_ipv4_checksum(bytearray(p[:9] + b"\x06" + p[10:20])) + p[20:], "protocol / next header 6"),
        (lambda p: _with_ipv4_checksum(bytearray(p[:2] + b"\x00\x40" + p[4:20])) + p[20:], "do not fit"),
        (lambda p: p[:-1] + b"\x00", "bad VRRPv3 checksum"),
    ],
)
def test_parse_packet_rejects(mutate, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_packet(mutate(V3_PACKET))


def test_parse_packet_rejects_truncated_ipv6() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        parse_packet(V3_UNICAST6_PACKET[:-1])
    with pytest.raises(ValueError, match="shorter than its header"):
        parse_packet(V3_UNICAST6_PACKET[:39])
    with pytest.raises(ValueError, match="empty"):
        parse_packet(b"")


def test_build_packet_matches_keepalived_except_the_ip_id() -> None:
    built = build_packet(dataclasses.replace(V3.advert, checksum=None), A4, MULTICAST_V4, ident=8)
    assert built == V3_PACKET
    # With ident 0 the kernel picks the IP id; the header checksum follows.
    other = build_packet(dataclasses.replace(V3.advert, checksum=None), A4, MULTICAST_V4)
    assert other[:4] + other[6:10] + other[12:] == V3_PACKET[:4] + V3_PACKET[6:10] + V3_PACKET[12:]


def test_build_packet_ipv6_hop_limit_255_even_to_unicast_peers() -> None:
    built = build_packet(dataclasses.replace(V3_UNICAST6.advert, checksum=None), A6_LL, B6)
    # Same traffic class; no flow label (keepalived's comes from the kernel), hop limit 255.
    assert built[0] == 0x6C and built[1] >> 4 == 0x0
    assert built[1:4] == b"\x00\x00\x00" and built[7] == 255
    assert built[4:7] + built[8:] == V3_UNICAST6_PACKET[4:7] + V3_UNICAST6_PACKET[8:]


def _bpf_accepts(packet: bytes) -> bool:
    """Run the listener's BPF program in the kernel on a unix datagram socket (no root needed)."""
    receiver, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with receiver, sender:
        sockets._attach_filter(receiver, sockets._vrrp_filter())
        receiver.setblocking(False)
        sender.send(packet)
        try:
            return receiver.recv(65535) == packet
        except BlockingIOError:
            return False


def test_kernel_filter_passes_vrrp_only() -> None:
    tcp4 = bytearray(V3_PACKET)
    tcp4[9] = 6
    udp6 = bytearray(V3_UNICAST6_PACKET)
    udp6[6] = 17
    assert _bpf_accepts(V3_PACKET)
    assert _bpf_accepts(V3_UNICAST6_PACKET)
    assert not _bpf_accepts(bytes(tcp4))
    assert not _bpf_accepts(bytes(udp6))
    assert not _bpf_accepts(b"\x00" * 40)


# Properties ------------------------------------------------------------------------------------

ipv4s = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6s = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


@st.composite
def adverts(draw) -> Advert:
    """Any advert `build_advert` accepts, with its addresses."""
    family = draw(st.sampled_from([4, 6]))
    version = draw(st.sampled_from([2, 3]))
    addr = ipv4s if family == 4 else ipv6s
    auth_type, auth_data = AUTH_NONE, b""
    if version == 2:
        interval = float(draw(st.integers(1, 255)))
        if family == 4:
            auth_type = draw(st.sampled_from([AUTH_NONE, AUTH_PASS]))
            auth_data = draw(st.binary(min_size=8, max_size=8))
    else:
        interval = draw(st.integers(1, 0x0FFF)) / 100
    return Advert(
        version=version,
        vrid=draw(st.integers(1, 255)),
        priority=draw(st.integers(0, 255)),
        advert_int=interval,
        addresses=tuple(draw(st.lists(addr, max_size=12))),
        auth_type=auth_type,
        auth_data=auth_data,
        src=draw(addr),
        dst=draw(addr),
    )


@given(adverts())
def test_round_trip(advert: Advert) -> None:
    payload = build_advert(advert)
    parsed = parse_advert(payload, advert.src, advert.dst)
    assert dataclasses.replace(parsed, checksum=None) == advert
    assert parsed.checksum == struct.unpack("!H", payload[6:8])[0]


@given(adverts())
def test_packet_round_trip(advert: Advert) -> None:
    packet = parse_packet(build_packet(advert, advert.src, advert.dst))
    assert dataclasses.replace(packet.advert, checksum=None) == advert
    assert packet.ttl == 255 and packet.tos == 0xC0


@given(adverts(), st.data())
def test_any_single_bit_flip_is_rejected(advert: Advert, data) -> None:
    payload = bytearray(build_advert(advert))
    bit = data.draw(st.integers(0, len(payload) * 8 - 1))
    payload[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ValueError):
        parse_advert(bytes(payload), advert.src, advert.dst)


@given(st.binary(max_size=120), st.sampled_from([(A4, MULTICAST_V4), (A6_LL, MULTICAST_V6)]))
def test_parse_advert_fails_only_with_value_error(payload: bytes, addresses) -> None:
    with contextlib.suppress(ValueError):
        parse_advert(payload, *addresses)


@given(adverts(), st.data())
def test_damaged_packets_fail_only_with_value_error(advert: Advert, data) -> None:
    packet = bytearray(build_packet(advert, advert.src, advert.dst))
    for _ in range(data.draw(st.integers(1, 3))):
        packet[data.draw(st.integers(0, len(packet) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(packet)))
    with contextlib.suppress(ValueError):
        parse_packet(bytes(packet[:cut]))
