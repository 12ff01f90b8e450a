"""VRRP on the wire: build and parse adverts (v2 and v3, IPv4 and IPv6), watch them, send them.

Pure part: `Advert`, `parse_advert`/`build_advert` (the VRRP payload, checksums included),
`parse_packet`/`build_packet` (the IPv4/IPv6 packet around it), `pass_auth`.
Edge part (Linux, root or CAP_NET_RAW): `AdvertListener`, `send_advert`, `who_has` (ARP and IPv6
neighbour solicitation), `arp_who_has`, `local_mac`.

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

import ctypes
import ipaddress
import logging
import math
import select
import socket
import struct
import time
from dataclasses import dataclass, field, replace

from vipdrain.model import IPAddress

log = logging.getLogger(__name__)

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

# Linux constants the socket module of Python 3.10/3.11 does not export.
_ETH_P_ALL = 0x0003
_ETH_P_IP = 0x0800
_ETH_P_ARP = 0x0806
_ETH_P_IPV6 = 0x86DD
_SO_ATTACH_FILTER = 26
_SO_TIMESTAMPNS = 35
#: struct timespec, as SCM_TIMESTAMPNS delivers it.
_TIMESPEC = struct.Struct("@ll")
_TIMESTAMP_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)

_HEADER = struct.Struct("!BBBBHH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_ARP = struct.Struct("!HHBBH6s4s6s4s")

AddressLike = IPAddress | str


def _address(value: AddressLike) -> IPAddress:
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
    src_ip = _address(src) if src is not None else advert.src
    dst_ip = _address(dst) if dst is not None else advert.dst
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
    src_ip, dst_ip = _address(src), _address(dst)
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
        if len(data) < _IPV6.size:
            raise ValueError(f"IPv6 packet of {len(data)} bytes is shorter than its header")
        first, length, proto, ttl, src, dst = _IPV6.unpack_from(data)
        tos = (first >> 20) & 0xFF
        if _IPV6.size + length > len(data):
            raise ValueError(f"IPv6 payload length {length} exceeds the {len(data)}-byte packet")
        payload = data[_IPV6.size : _IPV6.size + length]
        total_len = _IPV6.size + length
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
    src_ip, dst_ip = _address(src), _address(dst)
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
    return _IPV6.pack(first, len(payload), VRRP_PROTOCOL, VRRP_TTL, src_ip.packed, dst_ip.packed) + payload


def send_advert(advert: Advert, src: AddressLike, dst: AddressLike, interface: str) -> None:
    """Send `advert` once from `src` to `dst` out of `interface` (needs CAP_NET_RAW).

    The whole IP header is built here (`build_packet`; an IPPROTO_RAW socket implies
    IP_HDRINCL, for IPv6 too), so the source is exactly `src` whatever the routing table says,
    and TTL/hop limit is 255 as the RFCs require (keepalived sends IPv6 unicast adverts with 64;
    keepalived accepts both). Multicast loopback is off: the local keepalived must not hear its
    own instance's advert coming back. For a unicast instance call it once per peer, with the
    peer as `dst`. Link-scoped IPv6 destinations get `interface` as their scope.
    """
    src_ip, dst_ip = _address(src), _address(dst)
    packet = build_packet(advert, src_ip, dst_ip)
    family = socket.AF_INET if src_ip.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            sock.sendto(packet, (str(dst_ip), 0))
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            # inet_ntop drops any "%scope" suffix; the scope id is given explicitly.
            host = socket.inet_ntop(socket.AF_INET6, dst_ip.packed)
            sock.sendto(packet, (host, 0, 0, socket.if_nametoindex(interface)))


def send_advert_to_mac(advert: Advert, src: AddressLike, dst: AddressLike, interface: str, mac: str) -> None:
    """Send `advert` (IP destination `dst`, e.g. the multicast group) in a frame addressed to one
    station's `mac` only: every other VM's kernel drops the frame (not its MAC), so only that VM's
    keepalived sees the advert - as a multicast advert, which is what its instance expects."""
    src_ip, dst_ip = _address(src), _address(dst)
    packet = build_packet(advert, src_ip, dst_ip)
    proto = _ETH_P_IP if src_ip.version == 4 else _ETH_P_IPV6
    with socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(proto)) as sock:
        sock.sendto(packet, (interface, proto, 0, 0, bytes.fromhex(mac.replace(":", ""))))


def _vrrp_filter() -> bytes:
    """Classic BPF program passing only IPv4/IPv6 packets of protocol 112.

    On a packet socket of type SOCK_DGRAM offsets start at the network header, so the IP
    version nibble tells v4 from v6 without looking at the link layer. The kernel drops
    everything else, so a busy haproxy interface costs this process nothing.
    """
    ld_b, rsh, jeq, ja, ret = 0x30, 0x74, 0x15, 0x05, 0x06
    program = [
        (ld_b, 0, 0, 0),  # 0: A = first byte
        (rsh, 0, 0, 4),  # 1: A >>= 4 (IP version)
        (jeq, 0, 2, 4),  # 2: IPv4? -> 3 else 5
        (ld_b, 0, 0, 9),  # 3: A = IPv4 protocol
        (ja, 0, 0, 2),  # 4: -> 7
        (jeq, 0, 3, 6),  # 5: IPv6? -> 6 else 9
        (ld_b, 0, 0, 6),  # 6: A = IPv6 next header
        (jeq, 0, 1, VRRP_PROTOCOL),  # 7: VRRP? -> 8 else 9
        (ret, 0, 0, 0x40000),  # 8: accept (whole packet)
        (ret, 0, 0, 0),  # 9: drop
    ]
    return b"".join(struct.pack("=HBBI", *insn) for insn in program)


def _attach_filter(sock: socket.socket, program: bytes) -> None:
    # struct sock_fprog holds a pointer; the kernel copies the program during setsockopt.
    buffer = ctypes.create_string_buffer(program)
    fprog = struct.pack("@HP", len(program) // 8, ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw[:6])


class AdvertListener:
    """Receives the VRRP adverts crossing one interface of the current network namespace.

    A packet socket (AF_PACKET, all protocols) sees multicast and unicast adverts whether or not
    anything joined 224.0.0.18/ff02::12, and gives the sender's MAC; an in-kernel BPF filter
    lets only IP protocol 112 through. The socket also sees this host's own sends: they are
    skipped unless `include_outgoing`, and marked `Packet.outgoing`.

    Use as a context manager; `next(timeout)` returns the next valid advert or None when the
    timeout passes (0: only what is already queued). `fileno()` allows select/poll across
    several listeners. Invalid VRRP packets are skipped and counted in `rejected`, the last
    reason kept in `last_error`.
    """

    def __init__(self, interface: str, *, include_outgoing: bool = False, rcvbuf: int = 1 << 20) -> None:
        self.interface = interface
        self.include_outgoing = include_outgoing
        self.rejected = 0
        self.last_error = ""
        # Protocol 0 receives nothing until bind, so no unfiltered packet slips in before the filter.
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        try:
            _attach_filter(self._sock, _vrrp_filter())
            self._sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self._sock.bind((interface, _ETH_P_ALL))
            self._sock.setblocking(False)
            self._poll = select.poll()
            self._poll.register(self._sock, select.POLLIN)
        except BaseException:
            self._sock.close()
            raise

    def __enter__(self) -> AdvertListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket; idempotent."""
        self._sock.close()

    def fileno(self) -> int:
        """The socket's file descriptor, readable when packets are queued."""
        return self._sock.fileno()

    def next(self, timeout: float | None = None) -> Packet | None:
        """The next valid advert, waiting at most `timeout` seconds (None: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            packet = self._receive_one()
            if packet is not None:
                return packet
            if deadline is None:
                self._poll.poll()
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._poll.poll(max(1, math.ceil(left * 1000)))

    def _receive_one(self) -> Packet | None:
        """Drain the queue until one acceptable advert comes out; None once it is empty."""
        while True:
            try:
                data, ancdata, _flags, addr = self._sock.recvmsg(65535, _TIMESTAMP_SPACE)
            except BlockingIOError:
                return None
            now_mono, now_wall = time.monotonic(), time.time()
            outgoing = addr[2] == socket.PACKET_OUTGOING
            if outgoing and not self.include_outgoing:
                continue
            try:
                packet = parse_packet(data)
            except ValueError as error:
                self.rejected += 1
                self.last_error = f"{_mac(addr[4])}: {error}"
                log.debug("ignoring VRRP packet on %s from %s", self.interface, self.last_error)
                continue
            received = now_mono
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    # Wall-clock arrival -> monotonic: subtract how long it waited in the queue.
                    received = now_mono - max(0.0, now_wall - (sec + nsec / 1e9))
            return replace(packet, src_mac=_mac(addr[4]), received=received, outgoing=outgoing)


def local_mac(interface: str) -> str:
    """The hardware address of `interface` in the current network namespace, e.g. `02:00:5e:10:00:01`."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0) as sock:
        sock.bind((interface, 0))
        return _mac(sock.getsockname()[4])


def arp_who_has(
    interface: str, target_ip: AddressLike, sender_ip: AddressLike, timeout: float
) -> list[tuple[str, ipaddress.IPv4Address]]:
    """Broadcast one ARP request for `target_ip` and collect who claims it within `timeout` s.

    Returns `(mac, ip)` per distinct MAC in arrival order: ARP replies for the target and
    gratuitous ARPs announcing it (keepalived sends those on becoming master). More than one
    MAC means more than one holder. This host never answers its own request, so a VIP held
    locally is not listed. `sender_ip` is what peers may learn about us: use this host's own
    address (or 0.0.0.0 for an RFC 5227 probe), never the VIP.
    """
    target, sender = _address(target_ip), _address(sender_ip)
    if target.version != 4 or sender.version != 4:
        raise ValueError("ARP is IPv4 only")
    found = who_has(interface, [target], sender, timeout)
    return [(mac, target) for mac in found[target]]  # type: ignore[misc]


_ETH_P_IPV6 = 0x86DD
_ICMPV6 = 58
_NEIGHBOUR_SOLICITATION = 135
_NEIGHBOUR_ADVERTISEMENT = 136
#: RFC 4861 7.1: neighbour discovery messages travel with hop limit 255 only.
_ND_HOP_LIMIT = 255


def solicited_node(target: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """RFC 4291 2.7.1: the multicast group a neighbour solicitation for `target` goes to."""
    return ipaddress.IPv6Address(ipaddress.IPv6Address("ff02::1:ff00:0").packed[:13] + target.packed[13:])


def build_neighbour_solicitation(target: ipaddress.IPv6Address, mac: bytes) -> bytes:
    """The ICMPv6 message (RFC 4861 4.3) asking who has `target`, with our link-layer address
    option; checksum 0: the kernel fills it in for ICMPv6 raw sockets (RFC 3542 3.1)."""
    return struct.pack("!BBHI", _NEIGHBOUR_SOLICITATION, 0, 0, 0) + target.packed + bytes([1, 1]) + mac[:6]


def parse_neighbour_advert(packet: bytes) -> ipaddress.IPv6Address | None:
    """The target of a neighbour advertisement (an IPv6 packet, no extension headers), else None.

    Solicited answers and unsolicited ones (keepalived sends those on becoming master) alike.
    """
    if len(packet) < _IPV6.size + 24 or packet[0] >> 4 != 6:
        return None
    _first, _length, proto, hops, _src, _dst = _IPV6.unpack_from(packet)
    icmp = packet[_IPV6.size:]
    if proto != _ICMPV6 or hops != _ND_HOP_LIMIT or icmp[0] != _NEIGHBOUR_ADVERTISEMENT or icmp[1] != 0:
        return None
    return ipaddress.IPv6Address(icmp[8:24])


def _send_neighbour_solicitation(interface: str, target: ipaddress.IPv6Address, mac: bytes) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, _ND_HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        group = str(solicited_node(target))
        sock.sendto(build_neighbour_solicitation(target, mac), (group, 0, 0, socket.if_nametoindex(interface)))


def who_has(
    interface: str, targets: list[IPAddress], sender_ip: AddressLike | None, timeout: float
) -> dict[IPAddress, list[str]]:
    """Ask the link who has each address - ARP for IPv4, neighbour solicitation for IPv6 - all at
    once, and collect the MACs that claim each within `timeout` s (arrival order, distinct).

    Answers and unsolicited announcements (gratuitous ARP, unsolicited neighbour adverts) count
    alike; this host's own packets never do, so an address held here is not listed. `sender_ip`
    is the IPv4 address ARP requests carry (this host's own, never the VIP; needed only with
    IPv4 targets). IPv6 solicitations go from the interface's link-local address, chosen by the
    kernel. One more MAC than expected means one more holder.
    """
    v4 = {t.packed: t for t in targets if t.version == 4}
    v6 = {t: t for t in targets if t.version == 6}
    found: dict[IPAddress, dict[str, None]] = {t: {} for t in targets}
    sockets: list[tuple[socket.socket, int]] = []
    try:
        # Protocol 0 until bind: nothing from other interfaces gets queued meanwhile.
        if v4:
            sender = _address(sender_ip) if sender_ip is not None else None
            if sender is None or sender.version != 4:
                raise ValueError("ARP needs this host's IPv4 address as the sender")
            if sender.packed in v4:
                raise ValueError(f"asking for {sender} as {sender} would announce it, not probe it")
            arp = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
            sockets.append((arp, _ETH_P_ARP))
            arp.bind((interface, _ETH_P_ARP))
            mac = arp.getsockname()[4][:6]
            for packed in v4:
                request = _ARP.pack(1, _ETH_P_IP, 6, 4, 1, mac, sender.packed, b"\0" * 6, packed)
                arp.sendto(request, (interface, _ETH_P_ARP, 0, 0, b"\xff" * 6))
        if v6:
            nd = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
            sockets.append((nd, _ETH_P_IPV6))
            nd.bind((interface, _ETH_P_IPV6))
            mac = nd.getsockname()[4][:6]
            for target in v6:
                _send_neighbour_solicitation(interface, target, mac)  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout
        while sockets and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([s for s, _ in sockets], [], [], left)
            if not ready:
                break
            for sock in ready:
                data, addr = sock.recvfrom(65535)
                if addr[2] == socket.PACKET_OUTGOING:
                    continue
                claimed: IPAddress | None = None
                claimer = addr[4]  # the frame's source; ARP names its own sender
                if addr[1] == _ETH_P_ARP and len(data) >= _ARP.size:
                    htype, ptype, _hlen, _plen, op, sha, spa, _tha, tpa = _ARP.unpack_from(data)
                    if htype == 1 and ptype == _ETH_P_IP and spa in v4 and (op == 2 or (op == 1 and tpa == spa)):
                        claimed, claimer = v4[spa], sha
                elif addr[1] == _ETH_P_IPV6:
                    target = parse_neighbour_advert(data)
                    claimed = v6.get(target) if target is not None else None  # type: ignore[call-overload]
                if claimed is not None:
                    found[claimed].setdefault(_mac(claimer), None)
    finally:
        for sock, _ in sockets:
            sock.close()
    return {t: list(macs) for t, macs in found.items()}
