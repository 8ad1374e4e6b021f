"""The ClientHello peek: real ClientHellos from OpenSSL, every split, and garbage."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelgate.tls.clienthello import (
    NEED_MORE,
    NOT_TLS,
    ClientHello,
    Malformed,
    peek_client_hello,
)


def client_hello(server_name: str | None, alpn: list[str] | None = None) -> bytes:
    """The first flight of a real TLS client (Python's OpenSSL)."""
    context = ssl.create_default_context()
    if alpn:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


HELLO = client_hello("App.Example.COM", ["h2", "http/1.1"])


def test_a_real_client_hello_gives_its_server_name_and_alpn() -> None:
    assert peek_client_hello(HELLO) == ClientHello("app.example.com", ("h2", "http/1.1"))


def test_no_sni_no_alpn() -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    assert peek_client_hello(outgoing.read()) == ClientHello(None, ())


@pytest.mark.parametrize("cut", range(0, 200, 7))
def test_any_prefix_asks_for_more(cut: int) -> None:
    assert peek_client_hello(HELLO[:cut]) is NEED_MORE
    assert peek_client_hello(HELLO[: len(HELLO) - 1]) is NEED_MORE


def test_a_client_hello_split_over_records_is_joined() -> None:
    body = HELLO[5:]
    split = HELLO[:3] + (40).to_bytes(2, "big") + body[:40]
    split += HELLO[:3] + (len(body) - 40).to_bytes(2, "big") + body[40:]
    assert peek_client_hello(split) == peek_client_hello(HELLO)


def test_bytes_after_the_hello_do_not_matter() -> None:
    assert peek_client_hello(HELLO + b"\x17\x03\x03junk") == peek_client_hello(HELLO)


@pytest.mark.parametrize(
    "first",
    [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"PRI * HTTP/2.0\r\n", b"\x00\x01", b"SSH-2.0-x"],
)
def test_plaintext_and_junk_are_not_tls(first: bytes) -> None:
    assert peek_client_hello(first) is NOT_TLS


def test_a_tls_record_that_is_not_a_hello_is_malformed() -> None:
    finished = b"\x16\x03\x03\x00\x05\x14\x00\x00\x01\x00"
    assert isinstance(peek_client_hello(finished), Malformed)


def test_a_huge_client_hello_is_refused_before_it_is_all_here() -> None:
    header = b"\x16\x03\x01\x40\x00" + b"\x01" + (1 << 20).to_bytes(3, "big")
    result = peek_client_hello(header + bytes(100))
    assert isinstance(result, Malformed)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_never_raises(data: bytes) -> None:
    peek_client_hello(b"\x16\x03\x01" + data)
    peek_client_hello(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(HELLO) - 1), st.integers(0, 255))
def test_a_damaged_hello_is_malformed_or_still_a_hello(where: int, value: int) -> None:
    damaged = bytearray(HELLO)
    damaged[where] = value
    result = peek_client_hello(bytes(damaged))
    assert isinstance(result, ClientHello | Malformed) or result in (NEED_MORE, NOT_TLS)


def hello_with_server_name(name: bytes) -> bytes:
    """A minimal well-formed ClientHello in one record whose SNI is `name`, as sent."""

    def vector(size: int, body: bytes) -> bytes:
        return len(body).to_bytes(size, "big") + body

    sni = b"\x00\x00" + vector(2, vector(2, b"\x00" + vector(2, name)))
    body = b"\x03\x03" + bytes(32) + b"\x00" + vector(2, b"\x13\x01") + b"\x01\x00"
    return b"\x16\x03\x01" + vector(2, b"\x01" + vector(3, body + vector(2, sni)))


@pytest.mark.parametrize(
    ("sent", "read"),
    [(b"App.Example.COM", "app.example.com"), (b"app.example.com.", "app.example.com")],
)
def test_a_server_name_is_lower_cased_and_one_trailing_dot_dropped(sent: bytes, read: str) -> None:
    assert peek_client_hello(hello_with_server_name(sent)) == ClientHello(read, ())


# Found by fuzz/fuzz_clienthello.py: "." came back as the server name "", and "a.." as "a.".
@pytest.mark.parametrize("sent", [b".", b"..", b"app.example.com..", b"A.."])
def test_a_server_name_left_empty_or_dotted_by_the_dot_rule_is_malformed(sent: bytes) -> None:
    result = peek_client_hello(hello_with_server_name(sent))
    assert result == Malformed("a server name with an empty label at its end")
