"""Read a PROXY protocol header (HAProxy's proxy-protocol.txt, v1 and v2), as a server does.

For the tests and the TCP test app (`tcp_app.py`), which must tell what address a tunnel
handed the local service. It is written from the spec, apart from the encoder the client
uses (`tunnelgate.proxy_header`), so that a test compares two readings of the spec:

    header, used = parse_proxy_header(first_bytes)   # None: not all of it is here yet
    header.source == ("203.0.113.9", 4000); first_bytes[used:] is the connection's own

It is strict where the spec says a receiver must be: a v1 line longer than 107 bytes, an
unknown v2 version or command, an address of the wrong family or a port out of range is a
`ProxyHeaderError`, as is a connection that does not start with a header at all.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX = 107  # bytes of a v1 line, CRLF included
V2_SIGNATURE = b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"
_V2_HEAD = struct.Struct("!12sBBH")
# v2 family byte -> (name, bytes of one address)
_V2_FAMILIES = {0x00: ("UNSPEC", 0), 0x11: ("TCP4", 4), 0x21: ("TCP6", 16)}
_V1_PORT = re.compile(rb"(?:0|[1-9][0-9]{0,4})\Z")  # no leading zeros


class ProxyHeaderError(ValueError):
    """The bytes are not a well-formed PROXY header."""


@dataclass(frozen=True)
class ProxyHeader:
    version: int  # 1 or 2
    command: str  # "PROXY" (or "LOCAL", v2 only: a health check, addresses to be ignored)
    family: str  # "TCP4", "TCP6", or "UNKNOWN" (v1) / "UNSPEC" (v2): no addresses
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None
    tlvs: bytes = b""  # v2: what follows the addresses, unparsed

    def as_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "command": self.command,
            "family": self.family,
            "source": list(self.source) if self.source else None,
            "destination": list(self.destination) if self.destination else None,
        }


def parse_proxy_header(data: bytes) -> tuple[ProxyHeader, int] | None:
    """The header `data` starts with and its length in bytes; None if `data` is a
    proper prefix of one (read more). Raises ProxyHeaderError."""
    if data[:12] == V2_SIGNATURE[: len(data)] and len(data) < 16:
        return None  # v2, or the start of one
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if V1_PREFIX.startswith(data[:6]) and len(data) < 6:
        return None
    if data.startswith(V1_PREFIX):
        return _parse_v1(data)
    raise ProxyHeaderError(f"no PROXY header: the connection starts {data[:16]!r}")


def _parse_v1(data: bytes) -> tuple[ProxyHeader, int] | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError("a v1 line longer than 107 bytes")
        return None
    fields = data[:end].split(b" ")
    if fields[1:2] == [b"UNKNOWN"]:
        return ProxyHeader(1, "PROXY", "UNKNOWN"), end + 2  # the rest of the line is ignored
    if len(fields) != 6 or fields[1] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError(f"malformed v1 line {data[:end]!r}")
    family = fields[1].decode()
    version = 4 if family == "TCP4" else 6
    source = (_v1_address(fields[2], version), _v1_port(fields[4]))
    destination = (_v1_address(fields[3], version), _v1_port(fields[5]))
    return ProxyHeader(1, "PROXY", family, source, destination), end + 2


def _v1_address(text: bytes, version: int) -> str:
    try:
        addr = ipaddress.ip_address(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyHeaderError(f"not an IP address: {text!r}") from None
    if addr.version != version:
        raise ProxyHeaderError(f"{text!r} is not an IPv{version} address")
    return str(addr)


def _v1_port(text: bytes) -> int:
    if not _V1_PORT.match(text) or int(text) > 65535:
        raise ProxyHeaderError(f"not a port: {text!r}")
    return int(text)


def _parse_v2(data: bytes) -> tuple[ProxyHeader, int] | None:
    _, version_command, family_byte, length = _V2_HEAD.unpack_from(data)
    if version_command >> 4 != 2:
        raise ProxyHeaderError(f"v2 header of version {version_command >> 4}")
    command = {0: "LOCAL", 1: "PROXY"}.get(version_command & 0x0F)
    if command is None:
        raise ProxyHeaderError(f"unknown v2 command {version_command & 0x0F}")
    known = _V2_FAMILIES.get(family_byte)
    if known is None:
        raise ProxyHeaderError(f"v2 family {family_byte:#04x} is not TCP4, TCP6 or UNSPEC")
    total = _V2_HEAD.size + length
    if len(data) < total:
        return None
    family, size = known
    block = data[_V2_HEAD.size : total]
    if len(block) < 2 * size + (4 if size else 0):
        raise ProxyHeaderError(f"v2 {family} addresses in {length} bytes")
    if not size:
        return ProxyHeader(2, command, family, tlvs=block), total
    src = str(ipaddress.ip_address(block[:size]))
    dst = str(ipaddress.ip_address(block[size : 2 * size]))
    sport, dport = struct.unpack_from("!HH", block, 2 * size)
    tlvs = block[2 * size + 4 :]
    return ProxyHeader(2, command, family, (src, sport), (dst, dport), tlvs), total
