"""VRRP adverts on the wire, pure: `Advert`, `parse_advert`/`build_advert` (the VRRP payload,
checksums included), `parse_packet`/`build_packet` (the IPv4/IPv6 packet around it), `pass_auth`.

What keepalived 2.2.7 puts on the wire (captured in the lab, tests/lab/test_vrrp_wire.py):

- IPv4: TOS 0xc0, TTL 255 (unicast too), no DF, IP id counting up per instance.
- IPv6: traffic class 0xc0, a kernel-chosen flow label, hop limit 255 to ff02::12 but the
  kernel default (64) to unicast peers. The source is the interface's link-local address, for
  unicast too, unless `unicast_src_ip` is set - and without it a unicast instance whose peers
  are global addresses never hears them (its receiving socket is bound to the link-local one).
- v2 over IPv4: 8 bytes of authentication data always follow the addresses (zeros without
  authentication; the PASS password truncated to 8 bytes and zero-padded); the checksum covers
  the VRRP message only.
- v3: the checksum includes the pseudo-header (RFC 5798 5.2.8) with the real destination, i.e.
  the unicast peer's address for unicast instances.
- v2 over IPv6 (keepalived only, not in any RFC, allowed unless `vrrp_strict`): no
  authentication data, and the kernel fills the checksum over the IPv6 pseudo-header, exactly
  as for v3.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from vipdrain.model import IPAddress

VRRP_PROTOCOL = 112
#: RFC 3768 5.2.3 / RFC 5798 5.1.1.3: adverts are sent, and multicast ones accepted, only with 255.
VRRP_TTL = 255
ADVERTISEMENT = 1
MULTICAST_V4 = ipaddress.IPv4Address("224.0.0.18")
MULTICAST_V6 = ipaddress.IPv6Address("ff02::12")

AUTH_NONE = 0
AUTH_PASS = 1
#: IPsec AH: the VRRP message then sits behind an AH header (IP protocol 51); not supported here.
AUTH_AH = 2
AUTH_DATA_LEN = 8

#: IP precedence "internetwork control", what keepalived sets on its adverts.
TOS_NETWORK_CONTROL = 0xC0

_HEADER = struct.Struct("!BBBBHH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
IPV6_HEADER = struct.Struct("!IHBB16s16s")

AddressLike = IPAddress | str


def as_address(value: AddressLike) -> IPAddress:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    return ipaddress.ip_address(value)


@dataclass(frozen=True)
class Advert:
    """One VRRP advertisement, as sent by a router for one virtual router (VRID).

    `advert_int` is in seconds: whole seconds for v2, centiseconds resolution for v3.
    `auth_type`/`auth_data` exist for v2 over IPv4 only; parsed adverts carry the 8 wire bytes.
    `checksum` is the value read from the wire (`None` for adverts built here: `build_advert`
    always computes it). `src`/`dst` are the IP addresses the advert travelled between, when
    known; `build_advert` uses them unless it is given others.
    """

    version: int
    vrid: int
    priority: int
    advert_int: float
    addresses: tuple[IPAddress, ...]
    auth_type: int = AUTH_NONE
    auth_data: bytes = b""
    checksum: int | None = None
    src: IPAddress | None = None
    dst: IPAddress | None = None


def pass_auth(password: str) -> bytes:
    """The 8 authentication bytes keepalived sends for `auth_type PASS` with this `auth_pass`.

    keepalived keeps only the first 8 bytes (it warns "Truncating auth_pass to 8 characters")
    and pads shorter passwords with zero bytes.
    """
    return password.encode()[:AUTH_DATA_LEN].ljust(AUTH_DATA_LEN, b"\0")


def _checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum: ones' complement of the ones' complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(src: IPAddress, dst: IPAddress, length: int) -> bytes:
    """The IPv4 (RFC 768 style) or IPv6 (RFC 8200 8.1) pseudo-header for protocol 112."""
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, VRRP_PROTOCOL, length)
    return src.packed + dst.packed + struct.pack("!I3xB", length, VRRP_PROTOCOL)


def _is_rfc3768(version: int, family: int) -> bool:
    """VRRPv2 over IPv4: 8 bytes of authentication data, checksum without pseudo-header.

    Everything else (v3, and keepalived's v2 over IPv6, whose checksum the kernel fills in)
    has no authentication data and checksums the pseudo-header too.
    """
    return version == 2 and family == 4


def build_advert(advert: Advert, src: AddressLike | None = None, dst: AddressLike | None = None) -> bytes:
    """The VRRP payload (what follows the IP header) for `advert`, with its checksum.

    `src`/`dst` (defaults: `advert.src`/`advert.dst`) pick the address family and, where a
    pseudo-header is used, enter the checksum: for a unicast peer, give that peer's address.
    Raises ValueError for anything that cannot go on the wire as given.
    """
    src_ip = as_address(src) if src is not None else advert.src
    dst_ip = as_address(dst) if dst is not None else advert.dst
    if src_ip is None or dst_ip is None:
        raise ValueError("build_advert needs the source and destination addresses")
    if src_ip.version != dst_ip.version:
        raise ValueError(f"source {src_ip} and destination {dst_ip} are of different IP versions")
    family = src_ip.version
    if advert.version not in (2, 3):
        raise ValueError(f"VRRP version must be 2 or 3, not {advert.version}")
    if not 1 <= advert.vrid <= 255:
        raise ValueError(f"virtual router id must be 1-255, not {advert.vrid}")
    if not 0 <= advert.priority <= 255:
        raise ValueError(f"priority must be 0-255, not {advert.priority}")
    if len(advert.addresses) > 255:
        raise ValueError(f"at most 255 addresses fit in an advert, not {len(advert.addresses)}")
    wrong = [a for a in advert.addresses if a.version != family]
    if wrong:
        raise ValueError(f"addresses {', '.join(map(str, wrong))} are not IPv{family} like {src_ip}")

    if advert.version == 2:
        interval = advert.advert_int
        if interval != int(interval) or not 1 <= interval <= 255:
            raise ValueError(f"a VRRPv2 advert interval is 1-255 whole seconds, not {interval}")
        if _is_rfc3768(2, family):
            if advert.auth_type not in (AUTH_NONE, AUTH_PASS):
                raise ValueError(f"authentication type {advert.auth_type} is not supported (0 or 1)")
            if len(advert.auth_data) > AUTH_DATA_LEN:
                raise ValueError(f"authentication data is {AUTH_DATA_LEN} bytes at most")
        second = (advert.auth_type << 8) | int(interval)
    else:
        centis = round(advert.advert_int * 100)
        if abs(centis - advert.advert_int * 100) > 1e-6 or not 1 <= centis <= 0x0FFF:
            raise ValueError(f"a VRRPv3 advert interval is 0.01-40.95 s in steps of 0.01 s, not {advert.advert_int}")
        second = centis  # the 4 reserved bits above it stay zero
    if not _is_rfc3768(advert.version, family) and (advert.auth_type or advert.auth_data):
        raise ValueError(f"VRRPv{advert.version} over IPv{family} carries no authentication")

    body = b"".join(a.packed for a in advert.addresses)
    if _is_rfc3768(advert.version, family):
        body += advert.auth_data.ljust(AUTH_DATA_LEN, b"\0")
    vers_type = (advert.version << 4) | ADVERTISEMENT
    unsummed = _HEADER.pack(vers_type, advert.vrid, advert.priority, len(advert.addresses), second, 0) + body
    prefix = _pseudo_header(src_ip, dst_ip, len(unsummed)) if not _is_rfc3768(advert.version, family) else b""
    checksum = _checksum(prefix + unsummed)
    return unsummed[:6] + struct.pack("!H", checksum) + unsummed[8:]


def parse_advert(payload: bytes, src: AddressLike, dst: AddressLike) -> Advert:
    """Parse and validate the VRRP payload of an IP packet from `src` to `dst`.

    Checks version (2 or 3), type (advertisement), the exact length for the address count, and
    the checksum (v3 and v2-over-IPv6 with the pseudo-header). Raises ValueError saying what is
    wrong. Authentication is returned, not judged: that is the receiver's policy.
    """
    src_ip, dst_ip = as_address(src), as_address(dst)
    if src_ip.version != dst_ip.version:
        raise ValueError(f"source {src_ip} and destination {dst_ip} are of different IP versions")
    family = src_ip.version
    if len(payload) < _HEADER.size:
        raise ValueError(f"VRRP packet of {len(payload)} bytes is shorter than its 8-byte header")
    vers_type, vrid, priority, count, second, checksum = _HEADER.unpack_from(payload)
    version, kind = vers_type >> 4, vers_type & 0x0F
    if version not in (2, 3):
        raise ValueError(f"unsupported VRRP version {version}")
    if kind != ADVERTISEMENT:
        raise ValueError(f"VRRP packet type {kind} is not an advertisement (1)")
    size = 4 if family == 4 else 16
    expected = _HEADER.size + count * size + (AUTH_DATA_LEN if _is_rfc3768(version, family) else 0)
    if len(payload) != expected:
        raise ValueError(
            f"VRRPv{version} packet with {count} IPv{family} addresses must be {expected} bytes, not {len(payload)}"
        )
    prefix = _pseudo_header(src_ip, dst_ip, len(payload)) if not _is_rfc3768(version, family) else b""
    if _checksum(prefix + payload):
        raise ValueError(f"bad VRRPv{version} checksum {checksum:#06x} in advert from {src_ip}")

    cls = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
    addresses = tuple(cls(payload[8 + i * size : 8 + (i + 1) * size]) for i in range(count))
    if version == 2:
        auth_type, advert_int = second >> 8, float(second & 0xFF)
        auth_data = payload[-AUTH_DATA_LEN:] if family == 4 else b""
    else:
        # RFC 5798 5.2.4: the 4 reserved bits are ignored on receipt.
        auth_type, advert_int, auth_data = AUTH_NONE, (second & 0x0FFF) / 100, b""
    return Advert(
        version=version,
        vrid=vrid,
        priority=priority,
        advert_int=advert_int,
        addresses=addresses,
        auth_type=auth_type,
        auth_data=auth_data,
        checksum=checksum,
        src=src_ip,
        dst=dst_ip,
    )


@dataclass(frozen=True)
class Packet:
    """An advert with the IP fields around it and, from `AdvertListener`, where and when it came.

    `ttl` is the IPv4 TTL or IPv6 hop limit, `tos` the IPv4 TOS or IPv6 traffic class.
    `received` is in `time.monotonic()` seconds, taken from the kernel's arrival timestamp
    (so a packet that waited in the socket queue is not mistaken for a fresh one).
    `outgoing` marks packets this host sent itself.
    """

    advert: Advert
    ttl: int
    tos: int
    raw: bytes = field(repr=False, default=b"")
    src_mac: str = ""
    received: float | None = None
    outgoing: bool = False


def _check_ttl(ttl: int, dst: IPAddress) -> None:
    # Like keepalived: the TTL/hop-limit 255 rule is enforced for multicast adverts only. Unicast
    # adverts may cross routers, and keepalived itself sends IPv6 unicast ones with hop limit 64.
    if dst.is_multicast and ttl != VRRP_TTL:
        raise ValueError(f"multicast VRRP advert to {dst} with TTL/hop limit {ttl}, not {VRRP_TTL}")


def parse_packet(data: bytes) -> Packet:
    """Parse an IPv4 or IPv6 packet carrying a VRRP advert (link-layer header already removed).

    Trailing link-layer padding is ignored. Raises ValueError for anything that is not a valid
    advert: IP header errors, fragments, another protocol, TTL/hop limit other than 255 to a
    multicast group, and every error `parse_advert` finds.
    """
    if not data:
        raise ValueError("empty packet")
    version = data[0] >> 4
    if version == 4:
        if len(data) < _IPV4.size:
            raise ValueError(f"IPv4 packet of {len(data)} bytes is shorter than its header")
        ver_ihl, tos, total, _ident, frag, ttl, proto, _csum, src, dst = _IPV4.unpack_from(data)
        header_len = (ver_ihl & 0x0F) * 4
        if header_len < _IPV4.size or not header_len <= total <= len(data):
            raise ValueError(f"IPv4 header length {header_len} / total length {total} do not fit")
        if _checksum(data[:header_len]):
            raise ValueError("bad IPv4 header checksum")
        if frag & 0x3FFF:
            raise ValueError("IPv4 fragment: VRRP adverts are never fragmented")
        payload = data[header_len:total]
        total_len = total
    elif version == 6:
        if len(data) < IPV6_HEADER.size:
            raise ValueError(f"IPv6 packet of {len(data)} bytes is shorter than its header")
        first, length, proto, ttl, src, dst = IPV6_HEADER.unpack_from(data)
        tos = (first >> 20) & 0xFF
        if IPV6_HEADER.size + length > len(data):
            raise ValueError(f"IPv6 payload length {length} exceeds the {len(data)}-byte packet")
        payload = data[IPV6_HEADER.size : IPV6_HEADER.size + length]
        total_len = IPV6_HEADER.size + length
    else:
        raise ValueError(f"IP version {version} is neither 4 nor 6")
    if proto != VRRP_PROTOCOL:
        raise ValueError(f"IP protocol / next header {proto} is not VRRP ({VRRP_PROTOCOL})")
    src_ip, dst_ip = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    _check_ttl(ttl, dst_ip)
    advert = parse_advert(payload, src_ip, dst_ip)
    return Packet(advert=advert, ttl=ttl, tos=tos, raw=bytes(data[:total_len]))


def build_packet(advert: Advert, src: AddressLike, dst: AddressLike, *, ident: int = 0) -> bytes:
    """The whole IP packet keepalived would send for `advert` from `src` to `dst`.

    TOS/traffic class 0xc0 as keepalived sets it, TTL/hop limit 255 (keepalived leaves IPv6
    unicast adverts at 64), no flow label. The IPv4 header checksum is filled in (Linux
    recomputes it anyway for raw sends); IPv4 `ident` 0 lets the kernel choose one.
    """
    src_ip, dst_ip = as_address(src), as_address(dst)
    payload = build_advert(advert, src_ip, dst_ip)
    if src_ip.version == 4:
        total = _IPV4.size + len(payload)
        header = _IPV4.pack(
            0x45,
            TOS_NETWORK_CONTROL,
            total,
            ident,
            0,
            VRRP_TTL,
            VRRP_PROTOCOL,
            0,
            src_ip.packed,
            dst_ip.packed,
        )
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        return header + payload
    first = (6 << 28) | (TOS_NETWORK_CONTROL << 20)
    return IPV6_HEADER.pack(first, len(payload), VRRP_PROTOCOL, VRRP_TTL, src_ip.packed, dst_ip.packed) + payload
