"""Read a TLS ClientHello without answering it: what a front end needs to choose a route.

    result = peek_client_hello(first_bytes)
    NeedMore      the ClientHello is not all here yet (feed more, up to MAX_CLIENT_HELLO)
    NotTLS        the first bytes are not a TLS handshake record (plain HTTP, junk)
    Malformed     a TLS record, but not a well-formed ClientHello (reason says what)
    ClientHello   its server name (SNI) and ALPN protocols

Sans-IO and pure: the caller keeps the bytes, which it then hands on whole to whoever
terminates the TLS (the gateway) or passes it through unopened (a TLS-passthrough tunnel).
Layout: RFC 8446 §4.1.2 (ClientHello), §5.1 (records); RFC 6066 §3 (server_name);
RFC 7301 §3.1 (ALPN). A ClientHello may span several handshake records; post-quantum key
shares make it a little over 1 KiB, so 16 KiB (one maximal record) bounds it generously.
"""

from __future__ import annotations

from typing import Final

RECORD_HANDSHAKE: Final = 0x16
HANDSHAKE_CLIENT_HELLO: Final = 0x01
EXT_SERVER_NAME: Final = 0
EXT_ALPN: Final = 16
SNI_HOST_NAME: Final = 0
MAX_CLIENT_HELLO: Final = 16 * 1024  # bytes of handshake message we are willing to read
_MAX_RECORD: Final = 16 * 1024 + 256  # TLSPlaintext.length may not exceed 2^14 (+ slack)


class NeedMore:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NeedMore"


class NotTLS:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NotTLS"


class Malformed:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Malformed({self.reason!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Malformed) and other.reason == self.reason

    __hash__ = None  # type: ignore[assignment]


class ClientHello:
    __slots__ = ("alpn", "server_name")

    def __init__(self, server_name: str | None, alpn: tuple[str, ...]) -> None:
        self.server_name = server_name  # lower-cased, trailing dot dropped; None: no SNI
        self.alpn = alpn

    def __repr__(self) -> str:
        return f"ClientHello(server_name={self.server_name!r}, alpn={self.alpn!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ClientHello)
            and other.server_name == self.server_name
            and other.alpn == self.alpn
        )

    __hash__ = None  # type: ignore[assignment]


NEED_MORE: Final = NeedMore()
NOT_TLS: Final = NotTLS()
PeekResult = NeedMore | NotTLS | Malformed | ClientHello


class _Bad(Exception):
    """A malformed field; the message is the reason."""


def peek_client_hello(data: bytes) -> PeekResult:
    """What the first bytes of a connection say (see the module docstring)."""
    if not data:
        return NEED_MORE
    if data[0] != RECORD_HANDSHAKE:
        return NOT_TLS
    if len(data) >= 2 and data[1] != 0x03:  # record version 3.x (TLS 1.0-1.3 all say 3.1+)
        return NOT_TLS
    message = _handshake_bytes(data)
    if isinstance(message, (NeedMore, Malformed)):
        return message
    try:
        return _parse_client_hello(message)
    except _Bad as exc:
        return Malformed(str(exc))


def _handshake_bytes(data: bytes) -> bytes | NeedMore | Malformed:
    """The handshake message, joined from as many handshake records as it spans."""
    message = bytearray()
    pos = 0
    while True:
        if len(data) - pos < 5:
            return NEED_MORE
        if data[pos] != RECORD_HANDSHAKE:
            return Malformed("a ClientHello interleaved with another record type")
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if length == 0 or length > _MAX_RECORD:
            return Malformed(f"a handshake record of {length} bytes")
        if len(data) - pos - 5 < length:
            # Not all here: still judge the handshake header as soon as it is, so a
            # client announcing a huge or wrong message is refused without waiting.
            header = bytes(message + data[pos + 5 : pos + 9])
            refused = _check_header(header)
            return refused if refused is not None else NEED_MORE
        message += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        refused = _check_header(bytes(message[:4]))
        if refused is not None:
            return refused
        if len(message) >= 4:
            size = int.from_bytes(message[1:4], "big")
            if len(message) >= 4 + size:
                return bytes(message[4 : 4 + size])


def _check_header(header: bytes) -> Malformed | None:
    """The handshake message header (type, 24-bit length), as far as it has arrived."""
    if header and header[0] != HANDSHAKE_CLIENT_HELLO:
        return Malformed("the first handshake message is not a ClientHello")
    if len(header) >= 4:
        size = int.from_bytes(header[1:4], "big")
        if size > MAX_CLIENT_HELLO:
            return Malformed(f"a ClientHello of {size} bytes")
    return None


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise _Bad(f"{what} runs past the end")
        piece = self.data[self.pos : end]
        self.pos = end
        return piece

    def uint(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "big")

    def vector(self, length_bytes: int, what: str) -> _Reader:
        return _Reader(self.take(self.uint(length_bytes, what), what))

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _parse_client_hello(body: bytes) -> ClientHello:
    hello = _Reader(body)
    hello.take(2, "legacy_version")
    hello.take(32, "random")
    if len(hello.vector(1, "legacy_session_id").data) > 32:
        raise _Bad("a session id over 32 bytes")
    suites = hello.vector(2, "cipher_suites")
    if not suites.data or len(suites.data) % 2:
        raise _Bad("an empty or odd cipher_suites list")
    if not hello.vector(1, "legacy_compression_methods").data:
        raise _Bad("no compression methods")
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    if hello.left:  # extensions are optional before TLS 1.3 (which needs them)
        extensions = hello.vector(2, "extensions")
        seen: set[int] = set()
        while extensions.left:
            kind = extensions.uint(2, "extension type")
            data = extensions.vector(2, "extension").data
            if kind in seen:
                raise _Bad(f"extension {kind} twice")  # RFC 8446 §4.2
            seen.add(kind)
            if kind == EXT_SERVER_NAME:
                server_name = _server_name(data)
            elif kind == EXT_ALPN:
                alpn = _alpn(data)
    if hello.left:
        raise _Bad("bytes after the extensions")
    return ClientHello(server_name, alpn)


def _server_name(data: bytes) -> str | None:
    names = _Reader(data).vector(2, "server_name_list")
    while names.left:
        kind = names.uint(1, "name type")
        name = names.vector(2, "host_name").data
        if kind == SNI_HOST_NAME:
            if not name or not all(0x21 <= b <= 0x7E for b in name):
                raise _Bad("a server name that is not printable ASCII")
            # RFC 6066 §3: no trailing dot. One is forgiven (dropped); "." or "a.." would
            # leave an empty name or another trailing dot (found by fuzz/fuzz_clienthello.py).
            host = name.decode("ascii").lower().removesuffix(".")
            if not host or host.endswith("."):
                raise _Bad("a server name with an empty label at its end")
            return host
    return None


def _alpn(data: bytes) -> tuple[str, ...]:
    protocols = _Reader(data).vector(2, "protocol_name_list")
    names = []
    while protocols.left:
        name = protocols.vector(1, "protocol name").data
        if not name:
            raise _Bad("an empty ALPN protocol name")
        names.append(name.decode("latin-1"))
    return tuple(names)
