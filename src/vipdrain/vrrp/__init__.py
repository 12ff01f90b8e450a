"""VRRP: build and parse adverts (v2 and v3, IPv4 and IPv6), watch them, send them, and ask the link
who holds an address.

- `wire`: pure; `Advert`, `Packet`, `parse_advert`/`build_advert`, `parse_packet`/`build_packet`,
  `pass_auth`, and what keepalived 2.2.7 puts on the wire.
- `sockets`: raw sockets (Linux, root or CAP_NET_RAW); `AdvertListener`, `send_advert`,
  `FrameSender`, `local_mac`.
- `neighbours`: `who_has` (ARP and IPv6 neighbour solicitation), `arp_who_has`, `confirmed_mac`
  (the kernel's neighbour table).

The public names of all three are importable from `vipdrain.vrrp`.
"""

from vipdrain.vrrp.neighbours import (
    arp_who_has,
    build_neighbour_solicitation,
    confirmed_mac,
    parse_neighbour_advert,
    solicited_node,
    who_has,
)
from vipdrain.vrrp.sockets import AdvertListener, FrameSender, local_mac, send_advert
from vipdrain.vrrp.wire import (
    ADVERTISEMENT,
    AUTH_AH,
    AUTH_DATA_LEN,
    AUTH_NONE,
    AUTH_PASS,
    MULTICAST_V4,
    MULTICAST_V6,
    TOS_NETWORK_CONTROL,
    VRRP_PROTOCOL,
    VRRP_TTL,
    AddressLike,
    Advert,
    Packet,
    build_advert,
    build_packet,
    parse_advert,
    parse_packet,
    pass_auth,
)

__all__ = [
    "ADVERTISEMENT",
    "AUTH_AH",
    "AUTH_DATA_LEN",
    "AUTH_NONE",
    "AUTH_PASS",
    "MULTICAST_V4",
    "MULTICAST_V6",
    "TOS_NETWORK_CONTROL",
    "VRRP_PROTOCOL",
    "VRRP_TTL",
    "AddressLike",
    "Advert",
    "AdvertListener",
    "FrameSender",
    "Packet",
    "arp_who_has",
    "build_advert",
    "build_neighbour_solicitation",
    "build_packet",
    "confirmed_mac",
    "local_mac",
    "parse_advert",
    "parse_neighbour_advert",
    "parse_packet",
    "pass_auth",
    "send_advert",
    "solicited_node",
    "who_has",
]
