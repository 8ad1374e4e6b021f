#!/usr/bin/env python3
"""The ClientHello/SNI peek (tls/clienthello.py) that routes the HTTPS listener's
connections.

Input: byte 0's bit 0 picks raw bytes or fields, its other bits where to cut the bytes for
a prefix check. Raw: the rest is what a client sends first. Fields: the rest, split at NUL
bytes, is a server name and ALPN protocols, built into a well-formed ClientHello (the
nested lengths would keep a byte-level mutator from ever changing a name's length).

Checked: nothing raises, the answer is one of the four documented ones; once an answer
other than NeedMore is given, more bytes do not change it, and a prefix gives NeedMore or
the same kind of answer; a server name is non-empty, lower-case printable ASCII without a
trailing dot; a ClientHello built from the answer reads back the same.
"""

from __future__ import annotations

from fuzz_support import fuzz, instrumented

with instrumented():
    from tunnelgate.tls.clienthello import (
        ClientHello,
        Malformed,
        NeedMore,
        NotTLS,
        peek_client_hello,
    )


def _vector(length_bytes: int, body: bytes) -> bytes:
    return len(body).to_bytes(length_bytes, "big") + body


def build(server_name: bytes | None, alpn: tuple[bytes, ...]) -> bytes:
    """A minimal ClientHello in one record, with these extensions."""
    extensions = b""
    if server_name is not None:
        entry = b"\x00" + _vector(2, server_name)
        extensions += b"\x00\x00" + _vector(2, _vector(2, entry))
    if alpn:
        names = b"".join(_vector(1, p) for p in alpn)
        extensions += b"\x00\x10" + _vector(2, _vector(2, names))
    body = b"\x03\x03" + bytes(32) + b"\x00" + _vector(2, b"\x13\x01") + b"\x01\x00"
    body += _vector(2, extensions)
    message = b"\x01" + _vector(3, body)
    return b"\x16\x03\x01" + _vector(2, message)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    cut = data[0] >> 1
    if data[0] & 1:
        sent, *alpn = data[1:].split(b"\0")
        stream = build(sent, tuple(p[:255] for p in alpn))  # an ALPN name has a 1-byte length
    else:
        stream = data[1:]
    result = peek_client_hello(stream)
    assert isinstance(result, (NeedMore, NotTLS, Malformed, ClientHello)), repr(result)
    repr(result)
    if isinstance(result, NeedMore):
        return
    assert peek_client_hello(stream + b"\x16\x03\x01\x00") == result, "more bytes changed it"
    prefix = peek_client_hello(stream[: cut * len(stream) // 127])
    assert isinstance(prefix, (NeedMore, type(result))), f"{prefix!r} before {result!r}"
    if isinstance(result, ClientHello):
        name = result.server_name
        if name is not None:
            assert name, "an empty server name"
            assert name == name.lower() and not name.endswith("."), name
            assert all(0x21 <= ord(c) <= 0x7E for c in name), name
        protocols = tuple(p.encode("latin-1") for p in result.alpn)
        again = peek_client_hello(build(None if name is None else name.encode(), protocols))
        assert again == result, f"{result!r} read back as {again!r}"


if __name__ == "__main__":
    fuzz(test_one_input)
