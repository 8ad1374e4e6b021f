"""Which public address a connection or failed login counts against.

An IPv4 address is one key. An IPv6 host usually holds a whole /64 (SLAAC, privacy
addresses), so per-address limits key IPv6 sources by their /64, as nginx's and
Cloudflare's rate limits do: otherwise one host could take 2^64 keys.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Final

_V4_MAPPED: Final = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96
_HOST_BITS: Final = bytes(8)


def address_key(ip: str) -> str:
    """The limit key of a peer IP (`"203.0.113.7"`, `"2001:db8::1"` -> `"2001:db8::/64"`).
    Anything that does not parse as an address (a Unix socket, "?") is its own key."""
    # This runs on every accepted IPv6 connection (gateway/caps.py): the socket module's
    # parser and printer take under 1 us where ipaddress's network objects took 30.
    # inet_ntop compresses zeros as ipaddress does (RFC 5952; tests/gateway/test_addresses.py).
    try:
        packed = socket.inet_pton(socket.AF_INET6, ip.split("%", 1)[0])
    except OSError:
        return _ipv4_key(ip)
    if packed[:12] == _V4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return socket.inet_ntop(socket.AF_INET6, packed[:8] + _HOST_BITS) + "/64"


def _ipv4_key(ip: str) -> str:
    try:
        return str(ipaddress.IPv4Address(ip))
    except ValueError:
        return ip
