"""Writes the seed corpora (fuzz/corpus/<target>/seed-*): valid samples like the tests'.

    python fuzz/seeds.py [target ...]    (default: all; OpenSSL's ClientHellos differ each run)

Each target's first bytes are its settings (see the target's docstring); the seeds use
the plain ones (fed whole) and a few cut ones. Run again after changing a target's input
layout; the corpus grown by `make fuzz FUZZ_MERGE=1` sits beside the seeds.
"""

from __future__ import annotations

import hashlib
import ssl
import sys
from pathlib import Path

from tunnelgate.proto.codes import RejectReason, StreamKind
from tunnelgate.proto.frames import FLAG_FIN, FrameType, encode_frame
from tunnelgate.proto.link import LinkKind, Preamble, encode_preamble
from tunnelgate.proto.messages import (
    ControlMessage,
    OpenInfo,
    Register,
    Registered,
    Rejected,
    encode_control,
)

CORPUS = Path(__file__).resolve().parent / "corpus"


def frames() -> list[bytes]:
    wire = b"".join(
        [
            encode_frame(FrameType.CONTROL, 0, encode_control(Register(1, "http", "app"))),
            encode_frame(FrameType.OPEN, 2, OpenInfo(1, "192.0.2.1:5000").encode()),
            encode_frame(FrameType.DATA, 2, b"GET / HTTP/1.1\r\n\r\n"),
            encode_frame(FrameType.DATA, 2, b"", FLAG_FIN),
            encode_frame(FrameType.WINDOW, 2, (65536).to_bytes(4, "big")),
            encode_frame(FrameType.BLOCKED, 2),
            encode_frame(FrameType.RESET, 2, (8).to_bytes(4, "big")),
            encode_frame(FrameType.PING, 0, bytes(8)),
            encode_frame(FrameType.PONG, 0, bytes(8)),
            encode_frame(FrameType.GOAWAY, 0, (0).to_bytes(4, "big") + b"bye"),
        ]
    )
    return [b"\x00\x00" + wire, b"\x02\x07" + wire, b"\x01\x01" + wire[:40]]


def mux() -> list[bytes]:
    """The frames' seeds, each side: byte 0 says which, and whether streams are open."""
    wires = [seed[2:] for seed in frames()]
    return [bytes([side, 0]) + wire for side in (0, 1, 2, 3) for wire in wires[:2]]


def control() -> list[bytes]:
    messages: list[ControlMessage] = [
        Register(1, "http", "app", client_id="c0ffee"),
        Register(2, "tcp", port=20000),
        Register(3, "tls", "secure", host_header="localhost"),
        Registered(1, "https://app.tunnels.example.com", "app"),
        Rejected(2, RejectReason.INTERNAL, "no"),
    ]
    opens = [
        OpenInfo(1, "192.0.2.1:5000", StreamKind.HTTP, b"GET", b"/path?q=1"),
        OpenInfo(7, "[2001:db8::1]:443", StreamKind.TCP),
        OpenInfo(2, "198.51.100.2:1", StreamKind.HTTP, b"POST", b"/", "1.0"),
    ]
    return [b"\x00" + encode_control(m) for m in messages] + [b"\x01" + o.encode() for o in opens]


REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: app.tunnels.example.com\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /up HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    b"\x81\x00",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET http://app.example/x HTTP/1.1\r\nHost: other\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a.example\r\nExpect: 100-continue\r\n\r\n",
    b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
]


def http_request() -> list[bytes]:
    return [b"\x00\x00" + r for r in REQUESTS] + [b"\x01\x03" + REQUESTS[2]]


RESPONSES = [
    (0x00, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"),
    (0x00, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"),
    (0x01, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),  # to HEAD
    (0x00, b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n"),
    (0x00, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    (0x00, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00"),
    (0x00, b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nuntil the app closes"),
    (0x03, b"HTTP/1.1 200 Connection Established\r\n\r\ntunnelled"),
]


def http_response() -> list[bytes]:
    seeds = [bytes([methods, 0]) + r for methods, r in RESPONSES]
    return [*seeds, b"\x00\x05" + RESPONSES[1][1]]


def hosts() -> list[bytes]:
    return [
        b"\x04app.tunnels.example.com",
        b"\x05App.Tunnels.Example.Com:8080",
        b"\x0ctunnels.example.com",
        b"\x04[::1]:80",
        b"\x04a.b.tunnels.example.com",
        b"\x00my-app",
        b"\x00-bad-",
    ]


def _openssl_hello(server_name: str | None, alpn: list[str]) -> bytes:
    context = ssl.create_default_context()
    if server_name is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def clienthello() -> list[bytes]:
    hello = _openssl_hello("App.Tunnels.Example.COM", ["h2", "http/1.1"])
    body = hello[5:]
    split = hello[:3] + (40).to_bytes(2, "big") + body[:40]
    split += hello[:3] + (len(body) - 40).to_bytes(2, "big") + body[40:]
    raw = [b"\x80" + hello, b"\x10" + _openssl_hello(None, []), b"\xf0" + split]
    return [*raw, b"\x41app.tunnels.example.com\x00h2\x00http/1.1", b"\x01Localhost."]


def link() -> list[bytes]:
    preamble = Preamble(LinkKind.HTTP, "web", "203.0.113.7:5000", "10.0.0.2:7000",
                        1_800_000_000_000, bytes(range(16)))  # fmt: skip
    wire = encode_preamble(preamble, b"fuzz-secret-of-thirty-two-bytes!")
    signed = wire[:-32]  # fuzz_link signs what follows a set bit 0 itself
    return [b"\x00" + wire, b"\x00" + wire[:20], b"\x01" + signed, b"\x00GET / HTTP/1.1\r\n"]


def main() -> None:
    wanted = set(sys.argv[1:])
    for target, make in [
        ("frames", frames),
        ("control", control),
        ("mux", mux),
        ("http_request", http_request),
        ("http_response", http_response),
        ("hosts", hosts),
        ("clienthello", clienthello),
        ("link", link),
    ]:
        if wanted and target not in wanted:
            continue
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed-*"):
            old.unlink()
        for seed in make():
            (folder / f"seed-{hashlib.sha1(seed).hexdigest()[:12]}").write_bytes(seed)


if __name__ == "__main__":
    main()
