"""Which public address a connection or failed login counts against.

An IPv4 address is one key. An IPv6 host usually holds a whole /64 (SLAAC, privacy
addresses), so per-address limits key IPv6 sources by their /64, as nginx's and
Cloudflare's rate limits do: otherwise one host could take 2^64 keys.
"""

from __future__ import annotations

import ipaddress


def address_key(ip: str) -> str:
    """The limit key of a peer IP (`"203.0.113.7"`, `"2001:db8::1"` -> `"2001:db8::/64"`).
    Anything that does not parse as an address (a Unix socket, "?") is its own key."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if address.version == 6:
        mapped = address.ipv4_mapped
        if mapped is not None:
            return str(mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
