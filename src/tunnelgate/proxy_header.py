"""The PROXY protocol header, versions 1 and 2 (HAProxy's proxy-protocol.txt): encode.

Sans-IO: two endpoints in, bytes out. The client writes one before the first byte of a
TCP or TLS-passthrough connection to the local service (`--proxy-protocol v1|v2`), so the
service sees the public client's address instead of the tunnel client's.

    encode("v2", parse_endpoint("203.0.113.9:4000"), (IPv4Address("127.0.0.1"), 5432))

Only what a proxy sends is here: command PROXY for TCP over IPv4 or IPv6 (`PROXY TCP4|TCP6`
in v1; families 0x11 and 0x21 in v2), and UNKNOWN (v1) or AF_UNSPEC (v2) when an address
cannot be told, which the spec tells the receiver to take as "use the connection's own
addresses". Both addresses of a header are of one family: an IPv4-mapped IPv6 address is
read as the IPv4 address it carries, and if the two still differ the IPv4 one is written as
IPv4-mapped IPv6 (what HAProxy does). No TLVs are sent.

A reader of both versions, written apart from this module from the spec, is
`tunnelgate.testing.proxy_header`: the tests compare two readings of the spec, not one.
"""

from __future__ import annotations

import re
import struct
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Final, Literal

ProxyVersion = Literal["v1", "v2"]
Endpoint = tuple[IPv4Address | IPv6Address, int]

# proxy-protocol.txt §2.2: the twelve bytes no other protocol starts with.
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_PROXY: Final = 0x21  # version 2 (high nibble), command PROXY (low nibble)
_V2_UNSPEC: Final = 0x00  # AF_UNSPEC, UNSPEC: no addresses follow
_V2_TCP4: Final = 0x11  # AF_INET, STREAM
_V2_TCP6: Final = 0x21  # AF_INET6, STREAM
_V2_FIXED: Final = struct.Struct("!12sBBH")  # signature, version/command, family, length
_V2_TCP4_ADDRESSES: Final = struct.Struct("!4s4sHH")  # src, dst, src port, dst port
_V2_TCP6_ADDRESSES: Final = struct.Struct("!16s16sHH")
V1_MAX_LENGTH: Final = 107  # the longest v1 line, CRLF included (§2.1)
_PORT: Final = re.compile(r"[0-9]{1,5}\Z")


def parse_endpoint(text: str) -> Endpoint | None:
    """`ip:port` as the OPEN metadata carries the public client's address (an IPv6
    address bare or in brackets, split at the last colon); None if it is not one."""
    host, colon, port_text = text.rpartition(":")
    if not colon or not _PORT.match(port_text) or int(port_text) > 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return _endpoint(host, int(port_text))


def sockaddr_endpoint(sockaddr: object) -> Endpoint | None:
    """A socket address as asyncio's `peername` gives it: (host, port) for IPv4, (host,
    port, flowinfo, scope_id) for IPv6; None for anything else (a Unix socket's path)."""
    if not isinstance(sockaddr, tuple) or len(sockaddr) < 2:
        return None
    host, port = sockaddr[0], sockaddr[1]
    if not isinstance(host, str) or not isinstance(port, int) or not 0 <= port <= 65535:
        return None
    return _endpoint(host, port)


def _endpoint(host: str, port: int) -> Endpoint | None:
    # A scope id ("fe80::1%eth0") means something on this host only: not sent.
    try:
        return ip_address(host.partition("%")[0]), port
    except ValueError:
        return None


def encode(version: ProxyVersion, source: Endpoint | None, destination: Endpoint | None) -> bytes:
    """The header for a connection from `source` to `destination`."""
    return encode_v1(source, destination) if version == "v1" else encode_v2(source, destination)


def encode_v1(source: Endpoint | None, destination: Endpoint | None) -> bytes:
    """`PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n`, or `PROXY UNKNOWN\\r\\n`."""
    pair = _same_family(source, destination)
    if pair is None:
        return b"PROXY UNKNOWN\r\n"
    (src, sport), (dst, dport) = pair
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {_text(src)} {_text(dst)} {sport} {dport}\r\n".encode("ascii")


def _text(addr: IPv4Address | IPv6Address) -> str:
    """The address as v1 writes it; a mapped IPv4 address as ::ffff:a.b.c.d (RFC 4291
    §2.5.5.2's form, which Python before 3.13 does not print)."""
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        return f"::ffff:{addr.ipv4_mapped}"
    return str(addr)


def encode_v2(source: Endpoint | None, destination: Endpoint | None) -> bytes:
    """The binary header: signature, PROXY command, TCP4 or TCP6 (or UNSPEC) addresses."""
    pair = _same_family(source, destination)
    if pair is None:
        return _V2_FIXED.pack(V2_SIGNATURE, _V2_PROXY, _V2_UNSPEC, 0)
    (src, sport), (dst, dport) = pair
    layout, family = (
        (_V2_TCP4_ADDRESSES, _V2_TCP4) if src.version == 4 else (_V2_TCP6_ADDRESSES, _V2_TCP6)
    )
    fixed = _V2_FIXED.pack(V2_SIGNATURE, _V2_PROXY, family, layout.size)
    return fixed + layout.pack(src.packed, dst.packed, sport, dport)


def _same_family(
    source: Endpoint | None, destination: Endpoint | None
) -> tuple[Endpoint, Endpoint] | None:
    """Both endpoints in one family, or None if either is unknown."""
    if source is None or destination is None:
        return None
    src, dst = _unmapped(source), _unmapped(destination)
    if src[0].version == dst[0].version:
        return src, dst
    return _mapped(src), _mapped(dst)


def _unmapped(endpoint: Endpoint) -> Endpoint:
    addr, port = endpoint
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped, port
    return endpoint


def _mapped(endpoint: Endpoint) -> Endpoint:
    addr, port = endpoint
    if isinstance(addr, IPv4Address):
        return IPv6Address(b"\x00" * 10 + b"\xff\xff" + addr.packed), port
    return endpoint
