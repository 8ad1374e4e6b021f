"""proxy_header.py: PROXY protocol headers, checked against bytes written out by hand from
HAProxy's proxy-protocol.txt and read back by the independent reader in testing/."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunnelgate.proxy_header import (
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    Endpoint,
    ProxyVersion,
    encode,
    encode_v1,
    encode_v2,
    parse_endpoint,
    sockaddr_endpoint,
)
from tunnelgate.testing.proxy_header import parse_proxy_header


def ep(text: str, port: int) -> Endpoint:
    return ip_address(text), port


# --- v1 ---------------------------------------------------------------------------------
def test_v1_tcp4_is_the_spec_example() -> None:
    header = encode_v1(ep("192.168.0.1", 56324), ep("192.168.0.11", 443))
    assert header == b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"  # §2.1


def test_v1_tcp6() -> None:
    header = encode_v1(ep("2001:db8::1", 65535), ep("::1", 0))
    assert header == b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n"


def test_v1_mixed_families_write_ipv4_as_mapped_ipv6() -> None:
    header = encode_v1(ep("203.0.113.9", 4000), ep("::1", 5432))
    assert header == b"PROXY TCP6 ::ffff:203.0.113.9 ::1 4000 5432\r\n"


def test_v1_mapped_addresses_on_both_ends_are_read_as_ipv4() -> None:
    header = encode_v1(ep("::ffff:203.0.113.9", 4000), ep("127.0.0.1", 5432))
    assert header == b"PROXY TCP4 203.0.113.9 127.0.0.1 4000 5432\r\n"


@pytest.mark.parametrize("missing", ["source", "destination"])
def test_v1_unknown(missing: str) -> None:
    known = ep("192.0.2.1", 1)
    source = None if missing == "source" else known
    destination = None if missing == "destination" else known
    assert encode_v1(source, destination) == b"PROXY UNKNOWN\r\n"


def test_v1_longest_line_fits_the_limit() -> None:
    longest = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    header = encode_v1(ep(longest, 65535), ep(longest, 65535))
    # 107 is this line with "UNKNOWN" in place of "TCP6" (§2.1): receivers read that much.
    assert len(header) == V1_MAX_LENGTH - 3


# --- v2 ---------------------------------------------------------------------------------
def test_v2_tcp4_bytes() -> None:
    header = encode_v2(ep("192.168.0.1", 56324), ep("192.168.0.11", 443))
    assert header == (
        b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"  # signature (§2.2)
        b"\x21"  # version 2, PROXY
        b"\x11"  # AF_INET, STREAM
        b"\x00\x0c"  # 12 bytes of addresses follow
        b"\xc0\xa8\x00\x01"  # 192.168.0.1
        b"\xc0\xa8\x00\x0b"  # 192.168.0.11
        b"\xdc\x04"  # 56324
        b"\x01\xbb"  # 443
    )


def test_v2_tcp6_bytes() -> None:
    header = encode_v2(ep("2001:db8::1", 4000), ep("::1", 5432))
    assert header[:16] == V2_SIGNATURE + b"\x21\x21\x00\x24"  # AF_INET6, STREAM; 36 bytes
    assert header[16:32] == IPv6Address("2001:db8::1").packed
    assert header[32:48] == IPv6Address("::1").packed
    assert header[48:] == b"\x0f\xa0\x15\x38"
    assert len(header) == 16 + 36


def test_v2_mixed_families() -> None:
    header = encode_v2(ep("203.0.113.9", 4000), ep("::1", 5432))
    assert header[13] == 0x21
    assert header[16:32] == IPv6Address("::ffff:203.0.113.9").packed


def test_v2_unknown_source_is_unspec_with_no_addresses() -> None:
    header = encode_v2(None, ep("127.0.0.1", 5432))
    assert header == V2_SIGNATURE + b"\x21\x00\x00\x00"


def test_encode_picks_the_version() -> None:
    source, destination = ep("192.0.2.1", 1), ep("192.0.2.2", 2)
    assert encode("v1", source, destination) == encode_v1(source, destination)
    assert encode("v2", source, destination) == encode_v2(source, destination)


# --- addresses in -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.9:4000", ("203.0.113.9", 4000)),
        ("2001:db8::7:4000", ("2001:db8::7", 4000)),  # IPv6 unbracketed: the last colon
        ("[2001:db8::7]:4000", ("2001:db8::7", 4000)),
        ("fe80::1%eth0:22", ("fe80::1", 22)),  # the scope means nothing elsewhere
        ("::ffff:192.0.2.1:0", ("::ffff:192.0.2.1", 0)),
    ],
)
def test_parse_endpoint(text: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(text) == (ip_address(expected[0]), expected[1])


@pytest.mark.parametrize(
    "text",
    ["", "203.0.113.9", "203.0.113.9:", "203.0.113.9:65536", "host:80", "1.2.3.4:-1", ":80"],
)
def test_parse_endpoint_refuses(text: str) -> None:
    assert parse_endpoint(text) is None


@pytest.mark.parametrize(
    ("sockaddr", "expected"),
    [
        (("127.0.0.1", 5432), (IPv4Address("127.0.0.1"), 5432)),
        (("::1", 5432, 0, 0), (IPv6Address("::1"), 5432)),
        ("/run/app.sock", None),
        (None, None),
        (("localhost", 5432), None),
        (("127.0.0.1", 70000), None),
    ],
)
def test_sockaddr_endpoint(sockaddr: object, expected: Endpoint | None) -> None:
    assert sockaddr_endpoint(sockaddr) == expected


# --- read back by the independent reader ------------------------------------------------
_v4 = st.ip_addresses(v=4)
_v6 = st.ip_addresses(v=6)
_port = st.integers(0, 65535)


@given(
    version=st.sampled_from(["v1", "v2"]),
    source=st.tuples(_v4 | _v6, _port),
    destination=st.tuples(_v4 | _v6, _port),
    rest=st.binary(max_size=32),
)
def test_any_header_reads_back(
    version: ProxyVersion, source: Endpoint, destination: Endpoint, rest: bytes
) -> None:
    header = encode(version, source, destination)
    parsed = parse_proxy_header(header + rest)
    assert parsed is not None
    found, used = parsed
    assert used == len(header)
    assert found.version == int(version[1])
    assert found.command == "PROXY"
    assert found.source is not None
    assert found.destination is not None
    assert _same(found.source, source)
    assert _same(found.destination, destination)
    # Every proper prefix asks for more bytes rather than failing.
    assert all(parse_proxy_header(header[:n]) is None for n in range(len(header)))


def _same(found: tuple[str, int], sent: Endpoint) -> bool:
    """The same endpoint, across IPv4 and IPv4-mapped IPv6."""

    def plain(addr: IPv4Address | IPv6Address) -> IPv4Address | IPv6Address:
        mapped = addr.ipv4_mapped if isinstance(addr, IPv6Address) else None
        return mapped if mapped is not None else addr

    return (plain(ip_address(found[0])), found[1]) == (plain(sent[0]), sent[1])
