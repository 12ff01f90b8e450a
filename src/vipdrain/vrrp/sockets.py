"""VRRP adverts through raw sockets (Linux, root or CAP_NET_RAW): `AdvertListener` hears every
advert crossing an interface, `send_advert` and `FrameSender` send them, `local_mac`."""

from __future__ import annotations

import ctypes
import logging
import math
import select
import socket
import struct
import time
from dataclasses import replace

from vipdrain.vrrp.wire import VRRP_PROTOCOL, AddressLike, Advert, Packet, as_address, build_packet, parse_packet

log = logging.getLogger("vipdrain.vrrp")

# Linux constants the socket module of Python 3.10/3.11 does not export.
_ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
_SO_ATTACH_FILTER = 26
_SO_TIMESTAMPNS = 35
#: struct timespec, as SCM_TIMESTAMPNS delivers it.
_TIMESPEC = struct.Struct("@ll")
_TIMESTAMP_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


def send_advert(advert: Advert, src: AddressLike, dst: AddressLike, interface: str) -> None:
    """Send `advert` once from `src` to `dst` out of `interface` (needs CAP_NET_RAW).

    The whole IP header is built here (`build_packet`; an IPPROTO_RAW socket implies
    IP_HDRINCL, for IPv6 too), so the source is exactly `src` whatever the routing table says,
    and TTL/hop limit is 255 as the RFCs require (keepalived sends IPv6 unicast adverts with 64;
    keepalived accepts both). Multicast loopback is off: the local keepalived must not hear its
    own instance's advert coming back. For a unicast instance call it once per peer, with the
    peer as `dst`. Link-scoped IPv6 destinations get `interface` as their scope.
    """
    src_ip, dst_ip = as_address(src), as_address(dst)
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


class FrameSender:
    """Sends adverts in frames addressed to one station's MAC only (`send`), through one packet
    socket kept open until `close`.

    Kept open because closing a packet socket waits for an RCU grace period in the kernel
    (net/packet/af_packet.c `packet_release` calls `synchronize_net`): measured here, a drain of
    50 VIPs with a socket per resign advert spent 0.76 s of its 1.1 s of resigns closing them.
    Created with protocol 0, the socket receives nothing (with a protocol it
    would queue every IP packet of the namespace); each frame names its protocol when sent.
    """

    def __init__(self) -> None:
        self._sock: socket.socket | None = None

    def send(self, advert: Advert, src: AddressLike, dst: AddressLike, interface: str, mac: str) -> None:
        """Send `advert` (IP destination `dst`, e.g. the multicast group) in a frame for `mac`
        only: every other VM's kernel drops the frame (not its MAC), so only that VM's keepalived
        sees the advert - as a multicast advert, which is what its instance expects."""
        src_ip, dst_ip = as_address(src), as_address(dst)
        packet = build_packet(advert, src_ip, dst_ip)
        proto = ETH_P_IP if src_ip.version == 4 else ETH_P_IPV6
        if self._sock is None:
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        self._sock.sendto(packet, (interface, proto, 0, 0, bytes.fromhex(mac.replace(":", ""))))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


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


def mac_text(raw: bytes) -> str:
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
                self.last_error = f"{mac_text(addr[4])}: {error}"
                log.debug("ignoring VRRP packet on %s from %s", self.interface, self.last_error)
                continue
            received = now_mono
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    # Wall-clock arrival -> monotonic: subtract how long it waited in the queue.
                    received = now_mono - max(0.0, now_wall - (sec + nsec / 1e9))
            return replace(packet, src_mac=mac_text(addr[4]), received=received, outgoing=outgoing)


def local_mac(interface: str) -> str:
    """The hardware address of `interface` in the current network namespace, e.g. `02:00:5e:10:00:01`."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0) as sock:
        sock.bind((interface, 0))
        return mac_text(sock.getsockname()[4])
